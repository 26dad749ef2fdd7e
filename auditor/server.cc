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
// the pipe that came with its request, its start reported as "G", its end
// as "D <exit code>" ("D <code> last" when it cannot take another). A stop
// signal pending when a job comes was sent for the job before (the runner
// signals a job until it hears of its end, and the next comes after that):
// it is dropped before "G", and the runner signals the job only after "G".
[[noreturn]] void Work(int sock) {
  // Each job's buffers (its streams', its writer's: a few hundred KiB) come
  // from the heap and go back to it, for the next job to reuse, rather than
  // from fresh mmap()s the kernel must zero and fault in, job after job. A
  // job that needed much more (a huge line) gives it back when it ends.
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
  mallopt(M_TRIM_THRESHOLD, 16 << 20);
  sigset_t stops = JobStopSignals();  // blocked for good (see Serve)
  int pending = signalfd(-1, &stops, SFD_NONBLOCK | SFD_CLOEXEC);
  int null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
  Send(sock, fmt::format("H {}", getpid()));
  // The job's TMPDIR: made when a job needs one, and kept for the next
  // when the job passed (its auditor emptied it), sparing a mkdir and an
  // rmdir per job. A failed job's is kept for the user.
  std::string tmpdir;
  std::unique_ptr<char[]> buf(new char[kMaxMessage]);
  for (;;) {
    int fd = -1;
    ssize_t n = RecvWithFd(sock, buf.get(), kMaxMessage, &fd);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {  // the runner is done (or gone)
      if (!tmpdir.empty()) rmdir(tmpdir.c_str());
      _exit(0);
    }
    Options o;
    if (fd < 0 || !DecodeJob(std::string_view(buf.get(), static_cast<size_t>(n)), &o)) {
      if (fd >= 0) close(fd);
      Send(sock, "D 3");  // the auditor failed
      continue;
    }
    struct signalfd_siginfo si;
    while (pending >= 0 && read(pending, &si, sizeof si) > 0) {
    }
    Send(sock, "G");
    if (tmpdir.empty()) tmpdir = MakeTmpdir(o.run);
    o.tmpdir = tmpdir;
    if (dup2(fd, STDOUT_FILENO) < 0) _exit(3);
    close(fd);
    o.lifeline_fd = fcntl(3, F_DUPFD_CLOEXEC, 4);  // the job's to close
    bool reusable = false;
    int rc = Run(o, &reusable);
    if (rc != 0 || o.limits.keep_tmpdir) tmpdir.clear();
    // The job's pipe ends here: the runner reads its EOF.
    if (null_fd >= 0) dup2(null_fd, STDOUT_FILENO);
    if (!reusable) {  // something of the job is still open
      Send(sock, fmt::format("D {} last", rc));
      if (!tmpdir.empty()) rmdir(tmpdir.c_str());
      _exit(0);
    }
    Send(sock, fmt::format("D {}", rc));
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
  // The workers, forked on the runner's request and reaped here; the
  // runner talks to each through the socket it sent with the request. We
  // keep a copy of each worker's end until we have said on it how the
  // worker ended ("X"), so the runner reads that after all the worker
  // said, and the socket's end after that.
  struct Worker {
    pid_t pid;
    int sock;
  };
  std::vector<Worker> workers;
  char m[64];
  bool listening = true;
  while (listening || !workers.empty()) {
    struct pollfd p[2] = {{sfd, POLLIN, 0}, {listening ? control : -1, POLLIN, 0}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p[0].revents) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) > 0) {
      }
      int status;
      pid_t pid;
      while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (size_t i = 0; i < workers.size(); ++i) {
          if (workers[i].pid != pid) continue;
          // How it ended, for the job it may have had.
          Send(workers[i].sock, fmt::format("X {}", status));
          close(workers[i].sock);
          workers.erase(workers.begin() + static_cast<std::ptrdiff_t>(i));
          break;
        }
      }
    }
    if (!listening || !p[1].revents) continue;
    int sock = -1;
    ssize_t n = RecvWithFd(control, m, sizeof m, &sock);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) {
      // The runner is done (or gone). Idle workers end at their socket's
      // EOF; a busy one finishes its job (or stops it, when the runner is
      // gone) first. They are waited for, so that their time counts in
      // ours (and in the runner's, for GNU time).
      listening = false;
      continue;
    }
    if (sock < 0 || m[0] != 'W') {
      if (sock >= 0) close(sock);
      continue;
    }
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
      for (const Worker& w : workers) close(w.sock);  // the others'
      Work(sock);
    }
    if (pid < 0) {
      Send(sock, fmt::format("F {}", errno));  // read by the runner
      close(sock);
    } else {
      workers.push_back({pid, sock});
    }
  }
  close(sfd);
  return 0;
}

}  // namespace weft::auditor
