#include "chain.h"

#include <errno.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace weft::cli {

ChainResult RunChain(const std::vector<std::vector<std::string>>& commands,
                     size_t runner_index, const ChainFds& extra) {
  ChainResult result;
  size_t n = commands.size();
  result.codes.assign(n, -1);
  result.signaled.assign(n, false);

  // Signals are taken synchronously (sigwaitinfo) so we can tell a
  // terminal's signal (sent to the whole foreground group, the chain
  // included) from one sent to us alone (which we pass to the runner).
  sigset_t wait_set, old_set;
  sigemptyset(&wait_set);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGCHLD}) sigaddset(&wait_set, s);
  sigprocmask(SIG_BLOCK, &wait_set, &old_set);

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // The chain's processes start with the stop signals blocked and unblock
  // them once their handlers are in place (InstallStopCounter, the
  // runner's signal handles): a Ctrl-C during their start-up waits for
  // them instead of killing one and failing the run.
  sigset_t stops, defaults;
  sigemptyset(&stops);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&stops, s);
  sigemptyset(&defaults);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGCHLD, SIGPIPE})
    sigaddset(&defaults, s);
  posix_spawnattr_setsigmask(&attr, &stops);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<pid_t> pids(n, -1);
  int prev_read = -1;
  for (size_t i = 0; i < n && result.error.empty(); ++i) {
    int fds[2] = {-1, -1};
    if (i + 1 < n && pipe2(fds, O_CLOEXEC) != 0) {
      result.error = fmt::format("pipe: {}", strerror(errno));
      break;
    }
    // 1 MiB instead of 64 KiB between the chain's processes: each wakes
    // for more lines at a time (best effort; the system may cap it).
    if (fds[1] >= 0) fcntl(fds[1], F_SETPIPE_SZ, 1 << 20);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (prev_read >= 0) posix_spawn_file_actions_adddup2(&fa, prev_read, 0);
    if (fds[1] >= 0) posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    if (i < extra.size())
      for (auto [ours, theirs] : extra[i]) posix_spawn_file_actions_adddup2(&fa, ours, theirs);
    std::vector<char*> argv;
    for (const auto& a : commands[i]) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    int rc = posix_spawn(&pids[i], argv[0], &fa, &attr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
      result.error = fmt::format("cannot start {}: {}", argv[0], strerror(rc));
      pids[i] = -1;
    }
    if (prev_read >= 0) close(prev_read);
    if (fds[1] >= 0) close(fds[1]);
    prev_read = fds[0];
  }
  if (prev_read >= 0) close(prev_read);
  posix_spawnattr_destroy(&attr);

  pid_t runner = runner_index < n ? pids[runner_index] : -1;
  if (!result.error.empty() && runner > 0) kill(runner, SIGTERM);

  size_t alive = 0;
  for (pid_t p : pids) alive += p > 0;
  bool stop_sent = false;
  while (alive > 0) {
    siginfo_t info;
    int sig = sigwaitinfo(&wait_set, &info);
    if (sig < 0) continue;
    if (sig != SIGCHLD) {
      result.interrupted = true;
      ++result.stop_signals;
      // From the terminal, the runner got it too; from a process, only we
      // did: pass it on.
      if (info.si_code != SI_KERNEL && runner > 0) kill(runner, sig);
      continue;
    }
    for (;;) {
      int status;
      pid_t pid = waitpid(-1, &status, WNOHANG);
      if (pid <= 0) break;
      for (size_t i = 0; i < n; ++i) {
        if (pids[i] != pid) continue;
        pids[i] = -1;
        --alive;
        bool abnormal;
        if (WIFSIGNALED(status)) {
          result.signaled[i] = true;
          result.codes[i] = 128 + WTERMSIG(status);
          abnormal = true;
        } else {
          result.codes[i] = WEXITSTATUS(status);
          abnormal = result.codes[i] == 3;
        }
        if (i == runner_index) runner = -1;
        if (abnormal && runner > 0 && !stop_sent) {
          // A part of the chain is gone: stop the run in order.
          stop_sent = true;
          kill(runner, SIGTERM);
        }
      }
    }
  }
  sigprocmask(SIG_SETMASK, &old_set, nullptr);
  return result;
}

}  // namespace weft::cli
