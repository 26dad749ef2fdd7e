#include "weft/common/spawn.h"
#include "weft/common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <pthread.h>
#include <unistd.h>

extern char** environ;

namespace weft {

sigset_t JobStopSignals() {
  sigset_t stops;
  sigemptyset(&stops);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR1}) sigaddset(&stops, sig);
  return stops;
}

// The signals we ignore, read once: weft's processes set their
// dispositions at start-up and never change which signals they ignore
// afterwards. A fork server calls this before forking, so its children do
// not each pay 64 sigaction calls.
const sigset_t& IgnoredSignals() {
  static const sigset_t ignored = [] {
    sigset_t set;
    sigemptyset(&set);
    for (int sig = 1; sig < NSIG; ++sig) {
      struct sigaction sa;
      if (sig != SIGKILL && sig != SIGSTOP && sigaction(sig, nullptr, &sa) == 0 &&
          sa.sa_handler == SIG_IGN)
        sigaddset(&set, sig);
    }
    return set;
  }();
  return ignored;
}

namespace {

// vfork + exec for a process that installs no signal handlers (it takes
// its signals from a signalfd): glibc's posix_spawn child walks all 64
// signals to reset handlers (two sigaction calls each) because the child
// shares the parent's memory; with no handlers installed only the ignored
// signals need resetting. The child writes exec's errno into our memory
// (vfork shares it) before it exits.
struct ChildPlan {
  const SpawnRequest* req;
  char* const* argv;
  char* const* envp;
  const sigset_t* ignored;
  int null_fd;
};

// Runs in the vfork child: shares our memory, so it only makes system
// calls and writes *err before it exits.
[[noreturn]] __attribute__((noinline)) void ChildAfterVfork(
    const ChildPlan* plan, volatile int* err) {
  const SpawnRequest& req = *plan->req;
  for (int sig = 1; sig < NSIG; ++sig)
    if (sigismember(plan->ignored, sig)) signal(sig, SIG_DFL);
  if (req.new_session) setsid();
  if (req.new_group) setpgid(0, 0);
  auto move = [](int from, int to) {
    if (from == to) return fcntl(from, F_SETFD, 0) == 0;
    return dup2(from, to) == to;
  };
  bool ok = move(req.stdin_fd >= 0 ? req.stdin_fd : plan->null_fd, 0) &&
            (req.stdout_fd < 0 || move(req.stdout_fd, 1)) &&
            (req.stderr_fd < 0 || move(req.stderr_fd, 2));
  for (auto [from, to] : req.extra_fds) ok = ok && move(from, to);
  if (ok && req.cwd && chdir(req.cwd) != 0) ok = false;
  if (ok) {
    sigset_t mask = JobStopSignals();
    if (!req.block_stop_signals) sigemptyset(&mask);
    sigprocmask(SIG_SETMASK, &mask, nullptr);
    execvpe(plan->argv[0], plan->argv, plan->envp);
  }
  *err = errno ? errno : EINVAL;
  _exit(127);
}

int SpawnNoHandlers(const SpawnRequest& req, pid_t* pid_out) {
  std::vector<char*> argv;
  for (const auto& a : req.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  ChildPlan plan{&req, argv.data(), req.envp ? req.envp : environ,
                 &IgnoredSignals(),
                 req.stdin_fd >= 0 ? -1 : open("/dev/null", O_RDONLY | O_CLOEXEC)};
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  volatile int child_errno = 0;
  pid_t pid = vfork();
  if (pid == 0) ChildAfterVfork(&plan, &child_errno);
  int fork_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (plan.null_fd >= 0) close(plan.null_fd);
  if (pid < 0) return fork_errno;
  if (child_errno != 0) {
    while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    return child_errno;
  }
  *pid_out = pid;
  return 0;
}

}  // namespace

int Spawn(const SpawnRequest& req, pid_t* pid) {
  if (req.no_handlers) return SpawnNoHandlers(req, pid);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (req.stdin_fd >= 0)
    posix_spawn_file_actions_adddup2(&fa, req.stdin_fd, 0);
  else
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  if (req.stdout_fd >= 0) posix_spawn_file_actions_adddup2(&fa, req.stdout_fd, 1);
  if (req.stderr_fd >= 0) posix_spawn_file_actions_adddup2(&fa, req.stderr_fd, 2);
  for (auto [from, to] : req.extra_fds)
    posix_spawn_file_actions_adddup2(&fa, from, to);
  if (req.cwd) posix_spawn_file_actions_addchdir_np(&fa, req.cwd);

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // exec resets caught signals by itself; only ignored ones survive it, so
  // only those need resetting (64 sigaction calls per spawn otherwise).
  const sigset_t& ignored = IgnoredSignals();
  sigset_t mask = JobStopSignals();
  if (!req.block_stop_signals) sigemptyset(&mask);
  posix_spawnattr_setsigmask(&attr, &mask);
  posix_spawnattr_setsigdefault(&attr, &ignored);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (req.new_session) flags |= POSIX_SPAWN_SETSID;
  if (req.new_group) {
    posix_spawnattr_setpgroup(&attr, 0);
    flags |= POSIX_SPAWN_SETPGROUP;
  }
  posix_spawnattr_setflags(&attr, flags);

  std::vector<char*> argv;
  for (const auto& a : req.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  int rc = posix_spawnp(pid, argv[0], &fa, &attr, argv.data(),
                        req.envp ? req.envp : environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
  return rc;
}

ChildWatch::~ChildWatch() {
  if (pidfd_ >= 0) close(pidfd_);
}

int ChildWatch::Start(uv_loop_t* loop, pid_t pid, Callback cb) {
  pid_ = pid;
  cb_ = std::move(cb);
  active_ = true;
  pidfd_ = PidfdOpen(pid);
  if (pidfd_ >= 0) {
    use_poll_ = true;
    poll_.data = this;
    int rc = uv_poll_init(loop, &poll_, pidfd_);
    if (rc == 0) rc = uv_poll_start(&poll_, UV_READABLE, OnPoll);
    return rc;
  }
  // No pidfd (an old kernel): SIGCHLD, then a non-blocking wait for ours.
  sig_.data = this;
  int rc = uv_signal_init(loop, &sig_);
  if (rc == 0) rc = uv_signal_start(&sig_, OnSigchld, SIGCHLD);
  if (rc == 0) Check();  // it may have exited already
  return rc;
}

void ChildWatch::Check() {
  if (done_) return;
  int status = 0;
  struct rusage usage = {};
  pid_t r;
  do {
    r = wait4(pid_, &status, WNOHANG, &usage);
  } while (r < 0 && errno == EINTR);
  if (r != pid_) return;
  done_ = true;
  if (use_poll_) uv_poll_stop(&poll_);
  cb_(status, usage);
}

void ChildWatch::OnPoll(uv_poll_t* h, int, int) {
  static_cast<ChildWatch*>(h->data)->Check();
}

void ChildWatch::OnSigchld(uv_signal_t* h, int) {
  static_cast<ChildWatch*>(h->data)->Check();
}

void ChildWatch::Close() {
  if (!active_) return;
  active_ = false;
  auto* handle = use_poll_ ? reinterpret_cast<uv_handle_t*>(&poll_)
                           : reinterpret_cast<uv_handle_t*>(&sig_);
  if (!uv_is_closing(handle)) uv_close(handle, nullptr);
}

}  // namespace weft

namespace weft {

void FlushTimer::Init(uv_loop_t* loop, std::function<void()> flush) {
  flush_ = std::move(flush);
  uv_timer_init(loop, &timer_);
  timer_.data = this;
  open_ = true;
}

void FlushTimer::Kick() {
  if (open_ && !uv_is_active(reinterpret_cast<uv_handle_t*>(&timer_)))
    uv_timer_start(&timer_, OnTimer, kDelayMs, 0);
}

void FlushTimer::OnTimer(uv_timer_t* t) {
  static_cast<FlushTimer*>(t->data)->flush_();
}

void FlushTimer::Close() {
  if (!open_) return;
  open_ = false;
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
}

}  // namespace weft
