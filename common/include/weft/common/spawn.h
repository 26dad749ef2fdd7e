// Starting child processes cheaply (posix_spawn: vfork semantics, no page
// tables copied) and learning of their exit inside a libuv loop.
#pragma once

#include <signal.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <uv.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace weft {

struct SpawnRequest {
  std::vector<std::string> argv;       // argv[0] is looked up in PATH
  char** envp = nullptr;               // nullptr: our environment
  int stdin_fd = -1;                   // -1: /dev/null
  int stdout_fd = -1;                  // -1: ours
  int stderr_fd = -1;                  // -1: ours
  std::vector<std::pair<int, int>> extra_fds;  // {our fd, child's fd}
  bool new_session = false;            // setsid(): own session and group
  bool new_group = false;              // setpgid(0, 0): own process group
  const char* cwd = nullptr;           // chdir() here first; nullptr: ours
  // We install no signal handlers (signals come through a signalfd): a
  // cheaper vfork-based spawn that resets only ignored signals is safe.
  bool no_handlers = false;
  // The child starts with SIGTERM, SIGINT, SIGHUP and SIGUSR1 blocked (a
  // weft-auditor, which reads them from a signalfd): one sent before it
  // is ready waits for it instead of killing it.
  bool block_stop_signals = false;
};

// Starts the child with every signal at its default disposition and an
// empty mask (but see block_stop_signals) (whatever we ignore, it does not inherit). Returns 0, or the
// errno that stopped it (exec failures included: ENOENT, EACCES, …).
int Spawn(const SpawnRequest& req, pid_t* pid);

// The signals that stop a job: SIGTERM, SIGINT, SIGHUP, and SIGUSR1 (its
// run bailed out). An auditor, a fork server's worker and a guard keep them
// blocked and read them from a signalfd; a child spawned with
// block_stop_signals starts with them blocked. (By value: it is also used
// between vfork and exec.)
sigset_t JobStopSignals();

// The set of signals Spawn() resets in children (those we ignore), read
// once per process; call it before forking to share that work.
const sigset_t& IgnoredSignals();

// Calls back once when "pid" (our child) exits, with its wait status, and
// reaps it. Uses a pidfd polled by libuv; falls back to SIGCHLD. Owns libuv
// handles: Close() before the loop ends; the object must outlive the close.
class ChildWatch {
 public:
  // The wait status, and the child's resource usage (wait4).
  using Callback = std::function<void(int wait_status, const struct rusage& usage)>;
  ChildWatch() = default;
  ChildWatch(const ChildWatch&) = delete;
  ChildWatch& operator=(const ChildWatch&) = delete;
  ~ChildWatch();

  // Returns 0 or a libuv error code.
  int Start(uv_loop_t* loop, pid_t pid, Callback cb);
  void Close();

 private:
  static void OnPoll(uv_poll_t* h, int status, int events);
  static void OnSigchld(uv_signal_t* h, int);
  void Check();

  pid_t pid_ = -1;
  int pidfd_ = -1;
  bool use_poll_ = false;
  bool active_ = false;
  bool done_ = false;
  uv_poll_t poll_;
  uv_signal_t sig_;
  Callback cb_;
};

}  // namespace weft

namespace weft {

// Coalesces writes of a batch: Kick() after adding to it, and the flush
// callback runs once, kDelayMs later, for everything added meanwhile. Fewer
// writes mean fewer wake-ups of the processes downstream (a tiny test's
// events go out in one write instead of four). Owns a libuv timer: Close()
// before the loop ends.
class FlushTimer {
 public:
  static constexpr uint64_t kDelayMs = 5;
  FlushTimer() = default;
  FlushTimer(const FlushTimer&) = delete;
  FlushTimer& operator=(const FlushTimer&) = delete;

  void Init(uv_loop_t* loop, std::function<void()> flush);
  void Kick();
  void Close();

 private:
  static void OnTimer(uv_timer_t* t);
  uv_timer_t timer_;
  std::function<void()> flush_;
  bool open_ = false;
};

}  // namespace weft
