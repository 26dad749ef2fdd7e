#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <weft/common/spawn.h>
#include <weft/common/util.h>

#include <cstring>
#include <string>
#include <vector>
#include <memory>

#include "protocol.h"

namespace weft::auditor {
namespace {

void Send(int fd, const std::string& message) {
  // The runner may be gone; then nobody is listening and that is fine.
  while (send(fd, message.data(), message.size(), MSG_NOSIGNAL) < 0 &&
         errno == EINTR) {
  }
}

constexpr size_t kMaxMessage = 1 << 20;

// A worker: one auditor after another in one process, each job's output
// the pipe that came with its request ("TMPDIR\0" + the runner's message),
// its start reported as "G", its end as "D <exit code>". A stop signal
// pending when a job comes was sent for the job before (the runner signals
// a job until it hears of its end, and the next comes after that): it is
// dropped, and then "G" lets the server tell the runner the job's pid, so
// that every signal sent for the job comes after the drop.
[[noreturn]] void Work(int sock) {
  // Each job's buffers (its streams', its writer's: a few hundred KiB) come
  // from the heap and go back to it, for the next job to reuse, rather than
  // from fresh mmap()s the kernel must zero and fault in, job after job. A
  // job that needed much more (a huge line) gives it back when it ends.
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
  mallopt(M_TRIM_THRESHOLD, 16 << 20);
  sigset_t stops = JobStopSignals();  // blocked for good (see start())
  int pending = signalfd(-1, &stops, SFD_NONBLOCK | SFD_CLOEXEC);
  int null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
  std::unique_ptr<char[]> buf(new char[kMaxMessage]);
  for (;;) {
    int fd = -1;
    ssize_t n = RecvWithFd(sock, buf.get(), kMaxMessage, &fd);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) _exit(0);  // the server is done
    std::string_view m(buf.get(), static_cast<size_t>(n));
    size_t nul = m.find('\0');
    Options o;
    if (fd < 0 || nul == std::string_view::npos || !DecodeJob(m.substr(nul + 1), &o)) {
      if (fd >= 0) close(fd);
      Send(sock, "D 3");  // the auditor failed
      continue;
    }
    o.tmpdir = std::string(m.substr(0, nul));
    struct signalfd_siginfo si;
    while (pending >= 0 && read(pending, &si, sizeof si) > 0) {
    }
    Send(sock, "G");
    if (dup2(fd, STDOUT_FILENO) < 0) _exit(3);
    close(fd);
    o.lifeline_fd = fcntl(3, F_DUPFD_CLOEXEC, 4);  // the job's to close
    bool reusable = false;
    int rc = Run(o, &reusable);
    // The job's pipe ends here: the runner reads its EOF.
    if (null_fd >= 0) dup2(null_fd, STDOUT_FILENO);
    Send(sock, fmt::format("D {}", rc));
    if (!reusable) _exit(0);  // something of the job is still open
  }
}

}  // namespace

int Serve(int control) {
  IgnoredSignals();  // once here, not in every worker
  sigset_t chld, old;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, &old);
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) {
    Error("weft-auditor", fmt::format("signalfd: {}", strerror(errno)));
    return 3;
  }
  std::unique_ptr<char[]> buf(new char[kMaxMessage]);
  // The workers: as many as jobs ran at once, each reused for job after
  // job (a fork per job cost more than the test itself; see
  // docs/performance.md).
  struct Worker {
    pid_t pid = -1;
    int sock = -1;
    int64_t job = -1;     // the job it runs; -1: idle
    bool told = false;    // the runner knows the job's pid ("S")
    std::string tmpdir;   // that job's
    bool reuse_dir = false;
  };
  std::vector<Worker> workers;
  // TMPDIRs: one made per job only when none is free; a passing job's
  // (emptied by its auditor) serves the next, sparing a mkdir and an
  // rmdir per job. A failed job's is kept for the user.
  std::vector<std::string> free_dirs;
  auto finished = [&](Worker& w, int status) {
    Send(control, fmt::format("E {} {}", w.job, status));
    if (w.reuse_dir && WIFEXITED(status) && WEXITSTATUS(status) == 0)
      free_dirs.push_back(std::move(w.tmpdir));
    w.tmpdir.clear();
    w.job = -1;
  };
  // A worker's "G" and "D <code>" messages; false when it has closed its
  // socket.
  auto hear = [&](Worker& w) {
    char m[64];
    for (;;) {
      ssize_t n = recv(w.sock, m, sizeof m - 1, MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno == EAGAIN;
      if (n == 0) return false;
      m[n] = '\0';
      int code = 0;
      if (w.job >= 0 && m[0] == 'G' && !w.told) {
        w.told = true;
        Send(control, fmt::format("S {} {}", w.job, w.pid));
      } else if (w.job >= 0 && sscanf(m, "D %d", &code) == 1) {
        finished(w, W_EXITCODE(code, 0));
      }
    }
  };
  auto drop = [&](size_t i) {
    close(workers[i].sock);
    workers.erase(workers.begin() + static_cast<std::ptrdiff_t>(i));
  };
  // Starts a worker (that does not keep "job_fd", the pipe of the job it
  // is started for, which comes to it again with the job); nullptr when it
  // cannot (errno set).
  auto start = [&](int job_fd) -> Worker* {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return nullptr;
    pid_t pid = fork();
    if (pid == 0) {
      // Stop signals stay blocked (see Work); SIGCHLD comes as it did to
      // the runner's auditors.
      sigset_t mask, stops = JobStopSignals();
      sigorset(&mask, &old, &stops);
      sigprocmask(SIG_SETMASK, &mask, nullptr);
      // Keep fds 0-2 occupied (the control socket may be fd 0), so no
      // pipe of an auditor's lands there.
      int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (null_fd >= 0 && dup2(null_fd, STDIN_FILENO) >= 0 && null_fd != STDIN_FILENO)
        close(null_fd);
      if (control != STDIN_FILENO) close(control);
      close(sfd);
      close(job_fd);
      for (const Worker& w : workers) close(w.sock);
      close(sv[0]);
      Work(sv[1]);
    }
    int e = errno;
    close(sv[1]);
    if (pid < 0) {
      close(sv[0]);
      errno = e;
      return nullptr;
    }
    Worker w;
    w.pid = pid;
    w.sock = sv[0];
    workers.push_back(std::move(w));
    return &workers.back();
  };

  std::vector<struct pollfd> p;
  for (;;) {
    p.assign({{control, POLLIN, 0}, {sfd, POLLIN, 0}});
    for (const Worker& w : workers) p.push_back({w.sock, POLLIN, 0});
    if (poll(p.data(), p.size(), -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    // What workers said first: a job's end comes before its worker's exit.
    for (size_t i = workers.size(); i-- > 0;)
      if (p[2 + i].revents && !hear(workers[i]) && workers[i].job < 0) {
        // Gone between jobs (it could not be reused): reaped below.
        drop(i);
      }
    if (p[1].revents) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) > 0) {
      }
      int status;
      pid_t pid;
      while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (size_t i = 0; i < workers.size(); ++i) {
          if (workers[i].pid != pid) continue;
          hear(workers[i]);
          // Died in the middle of a job: the runner learns how.
          if (workers[i].job >= 0) finished(workers[i], status);
          drop(i);
          break;
        }
      }
    }
    if (!p[0].revents) continue;
    int fd = -1;
    ssize_t n = RecvWithFd(control, buf.get(), kMaxMessage, &fd);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) break;  // the runner is done (or gone)
    std::string_view message(buf.get(), static_cast<size_t>(n));
    Options o;
    if (fd < 0 || !DecodeJob(message, &o)) {
      if (fd >= 0) close(fd);
      Send(control, fmt::format("F {} {}", o.job, EINVAL));
      continue;
    }
    Worker* w = nullptr;
    for (Worker& x : workers)
      if (x.job < 0) w = &x;
    if (!w) w = start(fd);
    if (!w) {
      int e = errno;
      close(fd);
      Send(control, fmt::format("F {} {}", o.job, e));
      continue;
    }
    if (free_dirs.empty()) {
      if (std::string dir = MakeTmpdir(o.run); !dir.empty())
        free_dirs.push_back(std::move(dir));
    }
    std::string tmpdir;
    if (!free_dirs.empty()) {
      tmpdir = std::move(free_dirs.back());
      free_dirs.pop_back();
    }
    std::string request = tmpdir;
    request.push_back('\0');
    request.append(message);
    ssize_t sent;
    while ((sent = SendWithFd(w->sock, request, fd)) < 0 && errno == EINTR) {
    }
    int e = errno;
    close(fd);
    if (sent < 0) {
      if (!tmpdir.empty()) free_dirs.push_back(std::move(tmpdir));
      kill(w->pid, SIGKILL);  // reaped below, with no job to report
      drop(static_cast<size_t>(w - workers.data()));
      Send(control, fmt::format("F {} {}", o.job, e));
      continue;
    }
    w->job = o.job;
    w->told = false;  // "S" when the worker says "G"
    w->tmpdir = std::move(tmpdir);
    w->reuse_dir = !w->tmpdir.empty() && !o.limits.keep_tmpdir;
  }
  // Idle workers end at their socket's EOF; a busy one finishes its job
  // (or stops it, when the runner is gone) first. They are waited for, so
  // that their time counts in ours (and in the runner's, for GNU time).
  for (const Worker& w : workers) close(w.sock);
  for (const Worker& w : workers)
    while (waitpid(w.pid, nullptr, 0) < 0 && errno == EINTR) {
    }
  close(sfd);
  for (const auto& dir : free_dirs) rmdir(dir.c_str());
  return 0;
}

}  // namespace weft::auditor
