#include "server.h"

#include <errno.h>
#include <fcntl.h>
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
#include <map>
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

}  // namespace

int Serve(int control) {
  IgnoredSignals();  // once here, not in every forked auditor
  sigset_t chld, old;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, &old);
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) {
    Error("weft-auditor", fmt::format("signalfd: {}", strerror(errno)));
    return 3;
  }
  constexpr size_t kMax = 1 << 20;
  std::unique_ptr<char[]> buf(new char[kMax]);
  std::map<pid_t, int64_t> jobs;
  // TMPDIRs: one made per job only when none is free; a passing job's
  // (emptied by its auditor) serves the next, sparing a mkdir and an
  // rmdir per job. A failed job's is kept for the user.
  std::vector<std::string> free_dirs;
  std::map<pid_t, std::pair<std::string, bool>> dir_of;  // pid -> dir, reusable

  for (;;) {
    struct pollfd p[2] = {{control, POLLIN, 0}, {sfd, POLLIN, 0}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p[1].revents) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) > 0) {
      }
      int status;
      pid_t pid;
      while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        auto it = jobs.find(pid);
        if (it == jobs.end()) continue;
        Send(control, fmt::format("E {} {}", it->second, status));
        jobs.erase(it);
        auto d = dir_of.find(pid);
        if (d != dir_of.end()) {
          if (d->second.second && WIFEXITED(status) && WEXITSTATUS(status) == 0)
            free_dirs.push_back(std::move(d->second.first));
          dir_of.erase(d);
        }
      }
    }
    if (!p[0].revents) continue;
    int fd = -1;
    ssize_t n = RecvWithFd(control, buf.get(), kMax, &fd);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) break;  // the runner is done (or gone)
    Options o;
    if (fd < 0 || !DecodeJob(std::string_view(buf.get(), static_cast<size_t>(n)), &o)) {
      if (fd >= 0) close(fd);
      Send(control, fmt::format("F {} {}", o.job, EINVAL));
      continue;
    }
    if (free_dirs.empty()) {
      if (std::string dir = MakeTmpdir(o.run); !dir.empty())
        free_dirs.push_back(std::move(dir));
    }
    if (!free_dirs.empty()) {
      o.tmpdir = std::move(free_dirs.back());
      free_dirs.pop_back();
    }
    // The stop signals are blocked across the fork: the runner may send
    // one as soon as it learns the pid, before the child could block them.
    sigset_t stops, before;
    sigemptyset(&stops);
    for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR1}) sigaddset(&stops, sig);
    sigprocmask(SIG_BLOCK, &stops, &before);
    pid_t pid = fork();
    if (pid != 0) sigprocmask(SIG_SETMASK, &before, nullptr);
    if (pid == 0) {
      // The auditor for this job: its stdout is the job's pipe. The signals
      // that stop a job stay blocked from here on (the auditor reads them
      // from a signalfd), so one sent right away is not lost or fatal.
      sigset_t mask = old;
      for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR1}) sigaddset(&mask, sig);
      sigprocmask(SIG_SETMASK, &mask, nullptr);
      // Keep fds 0-2 occupied (the control socket may be fd 0), so no
      // pipe of the auditor's lands there.
      int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (null_fd >= 0 && dup2(null_fd, STDIN_FILENO) >= 0 && null_fd != STDIN_FILENO)
        close(null_fd);
      if (control != STDIN_FILENO) close(control);
      close(sfd);
      if (dup2(fd, STDOUT_FILENO) < 0) _exit(3);
      close(fd);
      o.lifeline_fd = 3;
      o.exit_when_done = true;
      _exit(Run(o));
    }
    int e = errno;
    close(fd);
    if (pid < 0) {
      if (!o.tmpdir.empty()) free_dirs.push_back(o.tmpdir);
      Send(control, fmt::format("F {} {}", o.job, e));
      continue;
    }
    jobs[pid] = o.job;
    if (!o.tmpdir.empty()) dir_of[pid] = {o.tmpdir, !o.limits.keep_tmpdir};
    Send(control, fmt::format("S {} {}", o.job, pid));
  }
  close(sfd);
  for (const auto& dir : free_dirs) rmdir(dir.c_str());
  return 0;
}

}  // namespace weft::auditor
