#include "guard.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>
#include <fmt/format.h>
#include <weft/common/spawn.h>
#include <weft/common/util.h>

#include <chrono>
#include <vector>

namespace weft::auditor {

int Guard(const Options& o) {
  sigset_t stops = JobStopSignals();
  sigprocmask(SIG_BLOCK, &stops, nullptr);
  int sig_fd = signalfd(-1, &stops, SFD_CLOEXEC | SFD_NONBLOCK);
  // Our runner's death, however it dies, reaches us as a SIGTERM too.
  pid_t parent = getppid();
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent) kill(getpid(), SIGTERM);

  const std::vector<std::string>& env_entries = o.env;
  pid_t pid = fork();
  if (pid < 0) {
    Error("weft-auditor", fmt::format("fork: {}", strerror(errno)));
    return 127;
  }
  if (pid == 0) {
    setpgid(0, 0);
    // The service's own mask: nothing blocked (ours came with the stop
    // signals blocked, for our signalfd).
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    if (o.lifeline_fd >= 0) close(o.lifeline_fd);
    if (!o.cwd.empty() && chdir(o.cwd.c_str()) != 0) {
      fmt::print(stderr, "weft-auditor: error: cannot enter {}: {}\n", o.cwd, strerror(errno));
      _exit(127);
    }
    for (const auto& e : env_entries) {
      size_t eq = e.find('=');
      if (eq != std::string::npos) setenv(e.substr(0, eq).c_str(), e.c_str() + eq + 1, 1);
    }
    std::vector<char*> argv;
    for (const auto& a : o.argv) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    fmt::print(stderr, "weft-auditor: error: cannot run {}: {}\n", o.argv[0], strerror(errno));
    _exit(127);
  }
  setpgid(pid, pid);  // (both sides: no race with a signal to the group)
  int child_fd = PidfdOpen(pid);
  bool stopping = false;
  int lifeline = o.lifeline_fd;
  auto deadline = std::chrono::steady_clock::time_point::max();
  auto stop = [&](bool now) {
    if (!stopping) {
      stopping = true;
      kill(-pid, SIGTERM);
      deadline = std::chrono::steady_clock::now() +
                 std::chrono::milliseconds(static_cast<int64_t>(o.limits.kill_grace_s * 1000));
    }
    if (now) {
      kill(-pid, SIGKILL);
      deadline = std::chrono::steady_clock::time_point::max();
    }
  };
  int status = 0;
  for (;;) {
    int timeout = -1;
    if (deadline != std::chrono::steady_clock::time_point::max()) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      timeout = static_cast<int>(std::max<int64_t>(0, left.count()));
    }
    struct pollfd p[3] = {{child_fd, POLLIN, 0}, {sig_fd, POLLIN, 0}, {lifeline, POLLIN, 0}};
    int n = poll(p, 3, child_fd < 0 ? std::min(timeout < 0 ? 100 : timeout, 100) : timeout);
    if (n < 0 && errno != EINTR) break;
    pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (n == 0 && timeout == 0) stop(true);  // the grace is over
    if (n > 0 && p[1].revents) {
      struct signalfd_siginfo si;
      int got = 0;
      while (read(sig_fd, &si, sizeof si) == sizeof si) ++got;
      if (got) stop(stopping);  // a second signal: at once
    }
    if (n > 0 && p[2].revents) {
      char c;
      if (read(lifeline, &c, 1) <= 0) {
        stop(true);  // the runner is gone: nobody waits for a grace
        lifeline = -1;
      }
    }
  }
  // What it left in its group goes with it.
  kill(-pid, SIGKILL);
  if (WIFSIGNALED(status)) {
    // Killed by a signal: so are we, by the same one, so that our parent
    // reads the service's own wait status (no core file of ours).
    int sig = WTERMSIG(status);
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
    prctl(PR_SET_PDEATHSIG, 0);
    signal(sig, SIG_DFL);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    sigprocmask(SIG_UNBLOCK, &one, nullptr);
    raise(sig);
    return 128 + sig;  // (a signal that does not end a process)
  }
  return WEXITSTATUS(status);
}

}  // namespace weft::auditor
