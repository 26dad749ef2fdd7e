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
    pid_t pid = fork();
    if (pid == 0) {
      // The auditor for this job: its stdout is the job's pipe.
      sigprocmask(SIG_SETMASK, &old, nullptr);
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
      Send(control, fmt::format("F {} {}", o.job, e));
      continue;
    }
    jobs[pid] = o.job;
    Send(control, fmt::format("S {} {}", o.job, pid));
  }
  close(sfd);
  return 0;
}

}  // namespace weft::auditor
