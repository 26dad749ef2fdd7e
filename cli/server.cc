#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <linux/close_range.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <weft/common/cli.h>
#include <weft/common/util.h>
#include <weft/events/event.h>
#include <weft/events/writer.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "chain.h"

extern char** environ;

namespace weft::cli {
namespace {

constexpr const char* kProg = "weft";
constexpr const char* kDir = ".weft";
constexpr const char* kControl = ".weft/control";
constexpr const char* kLock = ".weft/server.lock";
constexpr const char* kPid = ".weft/server.pid";
constexpr const char* kLog = ".weft/server.log";


// The supervisor's pid when a runner serves this project (its lock is
// held), else 0.
pid_t ServingPid() {
  int fd = open(kLock, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  bool held = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  close(fd);
  if (!held) return 0;
  std::ifstream in(kPid);
  long pid = 0;
  in >> pid;
  return pid > 0 ? static_cast<pid_t>(pid) : 0;
}

std::string Tail(const std::string& path, size_t lines) {
  std::ifstream in(path);
  std::vector<std::string> all;
  for (std::string line; std::getline(in, line);) all.push_back(line);
  std::string out;
  for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i)
    out += "  " + all[i] + "\n";
  return out;
}

// One control line to the runner (a line shorter than PIPE_BUF arrives
// whole, never mixed with another client's).
bool SendControl(const std::string& line, std::string* err) {
  int fd = open(kControl, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    *err = fmt::format("cannot open {}: {}", kControl,
                       errno == ENXIO ? "the runner does not read it" : strerror(errno));
    return false;
  }
  bool ok = events::WriteAll(fd, line + "\n");
  if (!ok) *err = fmt::format("cannot write to {}: {}", kControl, strerror(errno));
  close(fd);
  return ok;
}

std::string Json(const std::function<void(events::JsonWriter&)>& body) {
  rapidjson::StringBuffer buf;
  events::JsonWriter w(buf);
  w.StartObject();
  body(w);
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}

}  // namespace

std::string RunRequest(const std::string& run, const std::string& cwd,
                       const std::vector<std::string>& args,
                       const std::vector<std::string>& changed) {
  return Json([&](events::JsonWriter& w) {
    events::Key(w, "type");
    events::String(w, "run");
    if (!run.empty()) {
      events::Key(w, "run");
      events::String(w, run);
    }
    events::WriteText(w, "cwd", cwd);
    events::Key(w, "args");
    w.StartArray();
    for (const auto& a : args) events::TextValue(w, a);
    w.EndArray();
    if (!changed.empty()) {
      events::Key(w, "changed");
      w.StartArray();
      for (const auto& f : changed) events::TextValue(w, f);
      w.EndArray();
      events::Key(w, "coalesce");
      w.Bool(true);
    }
  });
}

int ServerStart(const std::vector<std::string>& runner_args, bool zstd) {
  if (mkdir(kDir, 0777) != 0 && errno != EEXIST) {
    Error(kProg, fmt::format("cannot create {}: {}", kDir, strerror(errno)));
    return kExitHarness;
  }
  int lock = open(kLock, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (lock < 0) {
    Error(kProg, fmt::format("cannot open {}: {}", kLock, strerror(errno)));
    return kExitHarness;
  }
  if (flock(lock, LOCK_EX | LOCK_NB) != 0) {
    pid_t pid = ServingPid();
    Error(kProg, fmt::format("a weft runner already serves this project (pid {}); "
                             "weft stop stops it",
                             pid));
    close(lock);
    return kExitUsage;
  }
  // Ours now: what a runner that died left behind goes.
  unlink(kControl);
  if (mkfifo(kControl, 0600) != 0) {
    Error(kProg, fmt::format("cannot make {}: {}", kControl, strerror(errno)));
    return kExitHarness;
  }
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0) {
    Error(kProg, fmt::format("pipe: {}", strerror(errno)));
    return kExitHarness;
  }
  pid_t pid = fork();
  if (pid < 0) {
    Error(kProg, fmt::format("fork: {}", strerror(errno)));
    return kExitHarness;
  }
  if (pid == 0) {
    // The supervisor: in its own session, away from the terminal; it
    // holds the lock (inherited) until the chain has ended.
    close(ready[0]);
    setsid();
    // Nothing of our caller's stays open in the supervisor (a pipe held
    // here would keep a `$(weft start)` waiting) but the lock and ready.
    int keep_lo = std::min(lock, ready[1]), keep_hi = std::max(lock, ready[1]);
    if (keep_lo > 3) close_range(3, static_cast<unsigned>(keep_lo) - 1, 0);
    if (keep_hi > keep_lo + 1)
      close_range(static_cast<unsigned>(keep_lo) + 1, static_cast<unsigned>(keep_hi) - 1, 0);
    close_range(static_cast<unsigned>(keep_hi) + 1, ~0U, 0);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    int log = open(kLog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    dup2(null, STDIN_FILENO);
    dup2(null, STDOUT_FILENO);
    dup2(log >= 0 ? log : null, STDERR_FILENO);
    {
      std::ofstream out(kPid, std::ios::trunc);
      out << getpid() << "\n";
    }
    std::string dir = SelfDir();
    std::vector<std::string> runner = {dir + "/weft-runner", "--serve",
                                       std::string("--control=") + kControl, "--ready-fd=3",
                                       fmt::format("--parent-pid={}", getpid())};
    runner.insert(runner.end(), runner_args.begin(), runner_args.end());
    std::vector<std::string> logger = {dir + "/weft-logger"};
    if (zstd) logger.push_back("--zstd");
    fmt::print(stderr, "weft: runner started (pid {})\n", getpid());
    auto r = RunChain({runner, {dir + "/weft-overlord", "--serve"}, logger}, 0,
                      {{{ready[1], 3}}});
    close(ready[1]);
    if (!r.error.empty()) fmt::print(stderr, "weft: error: {}\n", r.error);
    const char* names[] = {"weft-runner", "weft-overlord", "weft-logger"};
    for (size_t i = 0; i < r.codes.size(); ++i)
      if (r.codes[i] != 0)
        fmt::print(stderr, "weft: {} ended with {}\n", names[i],
                   r.signaled[i] ? SignalName(r.codes[i] - 128)
                                 : fmt::format("exit code {}", r.codes[i]));
    unlink(kControl);
    unlink(kPid);
    fmt::print(stderr, "weft: runner stopped (pid {})\n", getpid());
    _exit(r.error.empty() ? 0 : kExitHarness);
  }
  close(ready[1]);
  close(lock);
  // Ready when the runner says so; its end without a word is a failure.
  std::string said;
  char buf[64];
  while (said.find('\n') == std::string::npos) {
    ssize_t n = read(ready[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    said.append(buf, static_cast<size_t>(n));
  }
  close(ready[0]);
  if (said != "ready\n") {
    Error(kProg, fmt::format("the runner did not start; the end of {}:\n{}", kLog,
                             Tail(kLog, 10)));
    return kExitHarness;
  }
  fmt::print("weft: runner started (pid {}); `weft run [PATHS]` runs tests on it, "
             "`weft stop` stops it\n",
             pid);
  return 0;
}

void EnterServedRoot() {
  if (access(kLock, F_OK) == 0) return;
  std::error_code ec;
  std::filesystem::path dir = std::filesystem::current_path(ec);
  while (!ec && dir.has_parent_path() && dir != dir.parent_path()) {
    dir = dir.parent_path();
    if (access((dir / kLock).c_str(), F_OK) == 0) {
      if (chdir(dir.c_str()) != 0) return;
      return;
    }
  }
}

int ServerRun(const std::vector<std::string>& args, const std::string& cwd,
              const std::vector<std::string>& render) {
  pid_t server = ServingPid();
  if (server <= 0) {
    Error(kProg, "no weft runner serves this project; `weft start` starts one (or "
                 "`weft test` runs tests without one)");
    return kExitUsage;
  }
  int server_fd = PidfdOpen(server);
  if (server_fd < 0) {
    Error(kProg, fmt::format("cannot watch the runner (pid {}): {}", server, strerror(errno)));
    return kExitHarness;
  }
  // Our signals come through a signalfd: a Ctrl-C stops our run only.
  sigset_t stops, old;
  sigemptyset(&stops);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&stops, s);
  sigprocmask(SIG_BLOCK, &stops, &old);
  int sig_fd = signalfd(-1, &stops, SFD_CLOEXEC | SFD_NONBLOCK);

  std::string run = NewRunId();
  mkdir(kDir, 0777);
  mkdir(".weft/runs", 0777);
  int watch = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (watch >= 0) inotify_add_watch(watch, ".weft/runs", IN_CREATE | IN_MOVED_TO);

  std::string request = RunRequest(run, cwd, args);
  std::string err;
  if (!SendControl(request, &err)) {
    Error(kProg, err);
    return kExitHarness;
  }
  auto stop_run = [&] {
    std::string ignored;
    SendControl(Json([&](events::JsonWriter& w) {
                  events::Key(w, "type");
                  events::String(w, "stop");
                  events::Key(w, "run");
                  events::String(w, run);
                }),
                &ignored);
  };
  auto signalled = [&] {
    struct signalfd_siginfo si;
    bool any = false;
    while (read(sig_fd, &si, sizeof si) == sizeof si) any = true;
    return any;
  };

  // Its log appears when the runner starts it (after any run before it).
  std::string log;
  int64_t waited_ms = 0;
  bool said_waiting = false;
  for (;;) {
    for (const char* ext : {".jsonl", ".jsonl.zst"}) {
      std::string path = fmt::format(".weft/runs/{}{}", run, ext);
      if (access(path.c_str(), F_OK) == 0) log = path;
    }
    if (!log.empty()) break;
    struct pollfd p[3] = {{watch, POLLIN, 0}, {server_fd, POLLIN, 0}, {sig_fd, POLLIN, 0}};
    int n = poll(p, 3, 1000);
    if (n == 0) {
      waited_ms += 1000;
      if (!said_waiting && isatty(STDERR_FILENO)) {
        said_waiting = true;
        fmt::print(stderr, "weft: waiting for the runner: its current run ends first\n");
      }
      continue;
    }
    if (p[0].revents) {
      char buf[4096];
      while (read(watch, buf, sizeof buf) > 0) {
      }
    }
    if (p[2].revents && signalled()) {
      stop_run();
      return kExitInterrupted;
    }
    if (p[1].revents) {
      Error(kProg, fmt::format("the weft runner (pid {}) went away before run {} started; "
                               "see {}",
                               server, run, kLog));
      return kExitHarness;
    }
  }
  if (watch >= 0) close(watch);

  std::vector<std::string> argv = {SelfDir() + "/weft-render-term", "--follow",
                                   "--follow-to-end", std::string("--control=") + kControl};
  argv.insert(argv.end(), render.begin(), render.end());
  argv.push_back(log);
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setsigmask(&attr, &old);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  pid_t renderer = -1;
  int rc = posix_spawn(&renderer, cargv[0], nullptr, &attr, cargv.data(), environ);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    Error(kProg, fmt::format("cannot run {}: {}", argv[0], strerror(rc)));
    stop_run();
    return kExitHarness;
  }
  int renderer_fd = PidfdOpen(renderer);
  bool interrupted = false;
  bool server_gone = false;
  for (;;) {
    struct pollfd p[3] = {{renderer_fd, POLLIN, 0}, {server_fd, POLLIN, 0}, {sig_fd, POLLIN, 0}};
    // Once the runner is gone, its run's end may still be on its way to
    // the renderer: a moment for it, then it is stopped.
    int n = poll(p, server_gone ? 1 : 3, server_gone ? 2000 : -1);
    if (n < 0 && errno == EINTR) continue;
    if (p[0].revents) break;
    if (server_gone && n == 0) {
      kill(renderer, SIGKILL);  // (it would follow a log that never ends)
      int status;
      waitpid(renderer, &status, 0);
      Error(kProg, fmt::format("the weft runner (pid {}) went away during run {}; "
                               "see {}",
                               server, run, kLog));
      return kExitHarness;
    }
    if (p[1].revents) server_gone = true;
    if (p[2].revents && signalled()) {
      // Our run stops (its jobs are stopped in order); the renderer shows
      // what came (a Ctrl-C from the terminal reached it too).
      interrupted = true;
      stop_run();
    }
  }
  int status = 0;
  while (waitpid(renderer, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(status)) return interrupted ? kExitInterrupted : kExitHarness;
  int code = WEXITSTATUS(status);
  return interrupted && code == 0 ? kExitInterrupted : code;
}

int ServerStop(double grace_s) {
  pid_t server = ServingPid();
  if (server <= 0) {
    Error(kProg, "no weft runner serves this project");
    return kExitUsage;
  }
  int fd = PidfdOpen(server);
  std::string err;
  if (!SendControl(Json([&](events::JsonWriter& w) {
                     events::Key(w, "type");
                     events::String(w, "shutdown");
                     events::Key(w, "grace_s");
                     w.Double(grace_s);
                   }),
                   &err)) {
    Error(kProg, err);
    return kExitHarness;
  }
  // Gone within the grace and the jobs' own stopping; else it is made to.
  struct pollfd p = {fd, POLLIN, 0};
  int waited = poll(&p, 1, static_cast<int>((grace_s + 30) * 1000));
  if (waited == 0) {
    Warning(kProg, fmt::format("the runner (pid {}) did not stop; killing it", server));
    kill(-server, SIGKILL);
    poll(&p, 1, 5000);
  }
  close(fd);
  fmt::print("weft: runner stopped (pid {})\n", server);
  return 0;
}

std::string ServerStatus() {
  pid_t server = ServingPid();
  if (server <= 0) return "";
  struct stat st;
  int64_t up = stat(kPid, &st) == 0 ? time(nullptr) - st.st_mtime : 0;
  char cwd[4096] = "";
  if (!getcwd(cwd, sizeof cwd)) cwd[0] = 0;
  return fmt::format("runner  pid {}, serving {} for {}s (`weft run` runs tests on it)\n", server,
                     cwd, up);
}

}  // namespace weft::cli
