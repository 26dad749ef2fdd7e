// weft: the front command that assembles weft's processes for people.
#include <fcntl.h>
#include <sys/wait.h>
#include <termios.h>
#include <weft/events/event.h>
#include <weft/events/input.h>
#include <weft/events/writer.h>
#include <rapidjson/stringbuffer.h>

#include <filesystem>
#include <optional>
#include <set>
#include <sys/stat.h>
#include <unistd.h>
#include <weft/common/cli.h>
#include <weft/common/util.h>

#include "chain.h"
#include "merge.h"
#include "server.h"
#include "watch.h"
#include "scoreboard.h"
#include "history.h"
#include "runner_options.h"

namespace {

constexpr const char* kProg = "weft";

// What `weft test` adds to weft-runner's options: how to show the run.
struct ShowOptions {
  bool verbose = false;
  bool zstd = false;
  std::string log;
  std::string color;
};

// The options of weft-runner given on our command line, to pass on: the
// runner reads weft.toml itself, and a flag not given must not hide it.
// Values that are paths are rebased when we moved to the project root
// ("moved_from" is where we were).
std::vector<std::string> Forwarded(CLI::App* cmd, const std::string& moved_from = "") {
  std::vector<std::string> args;
  for (const CLI::Option* opt : cmd->get_options()) {
    const std::string& group = opt->get_group();
    if (group != "Running tests" && group != "Order" && group != "Configuration")
      continue;
    if (opt->count() == 0 || opt->get_lnames().empty()) continue;
    std::string name = "--" + opt->get_lnames().front();
    if (opt->get_expected_min() == 0) {  // a flag
      args.push_back(name);
      continue;
    }
    bool is_path = name == "--jobs-from" || name == "--stdin";
    for (const auto& v : opt->results())
      args.push_back(name + "=" + (is_path ? weft::runner::RebasePath(v, moved_from) : v));
  }
  return args;
}

// weft.toml, for [render] and to find the project's root; the runner
// reads it again for the rest (and says the same thing about errors).
bool ReadConfig(const weft::runner::Options& o, weft::runner::Config* config,
                std::vector<std::string>* paths, int* rc,
                std::string* moved_from = nullptr) {
  if (o.no_config) return true;
  std::string file = o.config.empty() ? weft::runner::FindConfig(".") : o.config;
  if (file.empty()) return true;
  std::string err;
  if (!weft::runner::LoadConfig(file, config, &err)) {
    weft::Error(kProg, err);
    *rc = weft::kExitUsage;
    return false;
  }
  if (o.config.empty() && !weft::runner::EnterProjectRoot(file, paths, moved_from)) {
    weft::Error(kProg, fmt::format("cannot enter the project root of {}: {}",
                                   file, strerror(errno)));
    *rc = weft::kExitHarness;
    return false;
  }
  return true;
}

// -v and --color: how weft test, weft run and weft watch show a run.
void AddShowOptions(CLI::App* cmd, ShowOptions* show) {
  cmd->add_flag("-v,--verbose", show->verbose, "Show every job and assertion");
  cmd->add_option("--color", show->color, "auto, always or never (default: auto)")
      ->check(CLI::IsMember({"auto", "always", "never"}));
}

// Each path given names something; else says which does not.
bool PathsExist(const std::vector<std::string>& paths) {
  for (const auto& p : paths) {
    struct stat st;
    if (stat(p.c_str(), &st) != 0) {
      weft::Error(kProg, fmt::format("{}: {}", p, strerror(errno)));
      return false;
    }
  }
  return true;
}

// weft-render-term's arguments for how to show a run: the flags given,
// else weft.toml's [render].
std::vector<std::string> RenderArgs(ShowOptions show, const weft::runner::Config& config) {
  if (show.color.empty()) show.color = config.color.value_or("auto");
  std::vector<std::string> args = {"--color=" + show.color};
  if (show.verbose || config.verbose.value_or(false)) args.push_back("-v");
  if (!config.colors.empty()) args.push_back("--colors=" + config.colors);
  return args;
}

int Test(CLI::App* cmd, const weft::runner::Options& o, ShowOptions show) {
  std::vector<std::string> paths = o.paths;
  if (!PathsExist(paths)) return weft::kExitUsage;
  weft::runner::Config config;
  int rc = 0;
  std::string moved_from;
  if (!ReadConfig(o, &config, &paths, &rc, &moved_from)) return rc;
  show.log = weft::runner::RebasePath(show.log, moved_from);

  std::string dir = weft::SelfDir();
  std::vector<std::string> runner = {dir + "/weft-runner"};
  for (auto& a : Forwarded(cmd, moved_from)) runner.push_back(std::move(a));
  runner.push_back(fmt::format("--parent-pid={}", getpid()));
  runner.push_back("--");
  for (const auto& p : paths) runner.push_back(p);
  std::vector<std::string> logger = {dir + "/weft-logger"};
  if (!show.log.empty()) logger.push_back("--output=" + show.log);
  if (show.zstd) logger.push_back("--zstd");
  std::vector<std::string> render = {dir + "/weft-render-term"};
  for (auto& a : RenderArgs(show, config)) render.push_back(std::move(a));

  // The renderer's keys reach the runner in band: a pipe from the one to
  // the other, fd 3 of each (q sends {"type":"stop"}).
  int control[2] = {-1, -1};
  weft::cli::ChainFds fds;
  if (pipe2(control, O_CLOEXEC) == 0) {
    runner.insert(runner.begin() + 1, "--control=/dev/fd/3");
    render.push_back("--control=/dev/fd/3");
    fds = {{{control[0], 3}}, {}, {}, {{control[1], 3}}};
  }
  // The renderer puts the terminal back as it found it; if it cannot
  // (killed), we do.
  int tty = open("/dev/tty", O_RDONLY | O_NOCTTY | O_CLOEXEC);
  struct termios saved;
  bool restore = tty >= 0 && tcgetpgrp(tty) == getpgrp() && tcgetattr(tty, &saved) == 0;

  auto r = weft::cli::RunChain(
      {runner, {dir + "/weft-overlord"}, logger, render}, 0, fds);
  for (int fd : control)
    if (fd >= 0) close(fd);
  if (restore && tcgetpgrp(tty) == getpgrp()) tcsetattr(tty, TCSANOW, &saved);
  if (tty >= 0) close(tty);
  if (!r.error.empty()) {
    weft::Error(kProg, r.error);
    return weft::kExitHarness;
  }
  // A third Ctrl-C: every part gave up at once, as asked; what broke on
  // the way out is no news.
  if (r.stop_signals >= 3) return weft::kExitInterrupted;
  const char* names[] = {"weft-runner", "weft-overlord", "weft-logger",
                         "weft-render-term"};
  bool harness = false;
  for (size_t i = 0; i < r.codes.size(); ++i) {
    if (r.signaled[i]) {
      weft::Error(kProg, fmt::format("{} was killed by {}", names[i],
                                     weft::SignalName(r.codes[i] - 128)));
      harness = true;
    } else if (r.codes[i] == weft::kExitHarness) {
      harness = true;
    }
  }
  if (harness) return weft::kExitHarness;
  if (r.codes[0] == weft::kExitUsage) return weft::kExitUsage;
  if (r.interrupted || r.codes[0] == weft::kExitInterrupted)
    return weft::kExitInterrupted;
  return r.codes[1];  // the overlord decides the run's code
}

// weft history rebuild: the index made again from the logs.
int HistoryRebuild() {
  weft::runner::Options none;
  weft::runner::Config config;
  std::vector<std::string> paths;
  int rc = 0;
  if (!ReadConfig(none, &config, &paths, &rc)) return rc;
  std::vector<std::string> warnings;
  weft::runner::History history;
  history.Open(".weft", true, &warnings);
  for (const auto& w : warnings) weft::Warning(kProg, w);
  if (!history.open()) {
    weft::Error(kProg, "no history here: no run logs in .weft/runs");
    return weft::kExitUsage;
  }
  fmt::print("indexed {} run{} ({} job result{}) from .weft/runs into "
             ".weft/history.sqlite\n",
             history.runs(), history.runs() == 1 ? "" : "s", history.results(),
             history.results() == 1 ? "" : "s");
  return 0;
}

// weft status: one line per run going on here (on this machine), from
// the overlords' scoreboards.
int Status(bool json) {
  std::vector<weft::scoreboard::Stale> stale;
  auto runs = weft::scoreboard::ReadAll(&stale);
  int64_t now = weft::events::NowMicros();
  std::string out;
  if (json) {
    rapidjson::StringBuffer buf;
    weft::events::JsonWriter w(buf);
    w.StartArray();
    for (const auto& r : runs) {
      w.StartObject();
      weft::events::Key(w, "run");
      weft::events::String(w, r.run);
      weft::events::Key(w, "host");
      weft::events::String(w, r.host);
      weft::events::Key(w, "cwd");
      weft::events::String(w, r.cwd);
      weft::events::Key(w, "pid");
      w.Int(r.pid);
      weft::events::Key(w, "elapsed_us");
      w.Int64(now - r.start_us);
      for (auto [k, v] : {std::pair{"planned", r.planned}, {"P", r.P}, {"F", r.F}, {"A", r.A},
                          {"R", r.R}, {"T", r.T}, {"flaky", r.flaky}, {"cancelled", r.cancelled},
                          {"timed_out", r.timed_out}}) {
        weft::events::Key(w, k);
        w.Int64(v);
      }
      weft::events::Key(w, "running");
      w.StartArray();
      for (const auto& j : r.running) {
        w.StartObject();
        weft::events::Key(w, "job");
        w.Int64(j.job);
        weft::events::Key(w, "name");
        weft::events::String(w, j.name);
        weft::events::Key(w, "elapsed_us");
        w.Int64(now - j.start_us);
        w.EndObject();
      }
      w.EndArray();
      w.EndObject();
    }
    w.EndArray();
    out = std::string(buf.GetString()) + "\n";
  } else if (runs.empty()) {
    out = "no weft run is going on\n";
  } else {
    for (const auto& r : runs) {
      int64_t done = r.P + r.F;
      std::string running;
      for (size_t i = 0; i < r.running.size() && i < 3; ++i)
        running += fmt::format("{}{} ({}s)", i ? ", " : "", r.running[i].name,
                               (now - r.running[i].start_us) / 1000000);
      if (r.running_total > 3) running += fmt::format(" and {} more", r.running_total - 3);
      out += fmt::format("{}  {}/{} done, {} failed, {} running, {} to do{}  {}s  {}{}\n", r.run,
                         done, r.planned, r.F, r.A, r.T + r.R,
                         r.flaky ? fmt::format(", {} flaky", r.flaky) : "",
                         (now - r.start_us) / 1000000, r.cwd,
                         running.empty() ? "" : "  running: " + running);
    }
  }
  for (const auto& s : stale)
    weft::Warning(kProg, fmt::format("removed /dev/shm/{}: {}", s.name, s.why));
  if (!json) {
    // This project's persistent runner, if one serves it.
    weft::runner::Options none;
    weft::runner::Config config;
    std::vector<std::string> paths;
    int rc = 0;
    std::string server;
    if (ReadConfig(none, &config, &paths, &rc)) {
      if (config.file.empty()) weft::cli::EnterServedRoot();
      server = weft::cli::ServerStatus();
    }
    if (!server.empty() && runs.empty()) out = server;
    else out = server + out;
  }
  fmt::print("{}", out);
  return 0;
}

// weft start: a persistent runner for the project, in the background.
int Start(const std::optional<int>& jobs, bool zstd, const weft::runner::Options& o) {
  weft::runner::Config config;
  std::vector<std::string> paths;
  int rc = 0;
  if (!ReadConfig(o, &config, &paths, &rc)) return rc;
  std::vector<std::string> args;
  if (jobs) args.push_back(*jobs == 0 ? "--jobs=auto" : fmt::format("--jobs={}", *jobs));
  // The weft.toml read here is the runner's too (we are in its root now).
  if (o.no_config)
    args.push_back("--no-config");
  else if (!config.file.empty())
    args.push_back("--config=" + std::filesystem::absolute(config.file).string());
  return weft::cli::ServerStart(args, zstd);
}

// weft run: a run on the project's persistent runner, shown live.
int RunOn(CLI::App* cmd, const weft::runner::Options& o, ShowOptions show) {
  if (o.repeat || o.until_fail) {
    weft::Error(kProg, "--repeat, --forever and --until-fail are for weft test (a "
                       "persistent runner serves one run per request)");
    return weft::kExitUsage;
  }
  if (!o.jobs_from.empty()) {
    weft::Error(kProg, "--jobs-from is for weft-runner (or weft test), not weft run");
    return weft::kExitUsage;
  }
  char here[4096] = "";
  if (!getcwd(here, sizeof here)) {
    weft::Error(kProg, fmt::format("getcwd: {}", strerror(errno)));
    return weft::kExitHarness;
  }
  if (!PathsExist(o.paths)) return weft::kExitUsage;
  weft::runner::Config config;
  std::vector<std::string> paths = o.paths;
  int rc = 0;
  if (!ReadConfig(o, &config, &paths, &rc)) return rc;
  if (config.file.empty()) weft::cli::EnterServedRoot();
  std::vector<std::string> args = Forwarded(cmd);
  args.push_back("--");
  args.insert(args.end(), o.paths.begin(), o.paths.end());
  return weft::cli::ServerRun(args, here, RenderArgs(show, config));
}

// weft watch: the tests now, then again on every change, until stopped.
int WatchCmd(CLI::App* cmd, const weft::runner::Options& o, ShowOptions show, int debounce_ms) {
  if (o.repeat || o.until_fail || !o.jobs_from.empty()) {
    weft::Error(kProg, "--repeat, --forever, --until-fail and --jobs-from are not for weft watch");
    return weft::kExitUsage;
  }
  if (!PathsExist(o.paths)) return weft::kExitUsage;
  weft::runner::Config config;
  std::vector<std::string> paths = o.paths;
  int rc = 0;
  std::string moved_from;
  if (!ReadConfig(o, &config, &paths, &rc, &moved_from)) return rc;
  weft::cli::WatchOptions w;
  w.run_args = Forwarded(cmd, moved_from);
  w.run_args.push_back("--");
  w.run_args.insert(w.run_args.end(), paths.begin(), paths.end());
  w.render = RenderArgs(show, config);
  w.zstd = show.zstd;
  w.debounce_ms = debounce_ms;
  int tty = open("/dev/tty", O_RDONLY | O_NOCTTY | O_CLOEXEC);
  struct termios saved;
  bool restore = tty >= 0 && tcgetpgrp(tty) == getpgrp() && tcgetattr(tty, &saved) == 0;
  int code = weft::cli::Watch(w);
  if (restore && tcgetpgrp(tty) == getpgrp()) tcsetattr(tty, TCSANOW, &saved);
  if (tty >= 0) close(tty);
  return code;
}

// Replaces this process with args[0] (a weft executable beside us); on
// failure says why and returns the exit code to use.
int Become(std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  execv(argv[0], argv.data());
  weft::Error(kProg, fmt::format("cannot run {}: {}", args[0], strerror(errno)));
  return weft::kExitHarness;
}

// weft list: the runner's plan, as job specs. Becomes the runner.
int List(CLI::App* cmd, const weft::runner::Options& o) {
  std::string exe = weft::SelfDir() + "/weft-runner";
  std::vector<std::string> args = {exe, "--list"};
  for (auto& a : Forwarded(cmd)) args.push_back(std::move(a));
  args.push_back("--");
  for (const auto& p : o.paths) args.push_back(p);
  return Become(args);
}

struct ReplayOptions {
  std::string file;
  std::string renderer = "term";
  bool verbose = false;
  std::string color = "auto";
  bool follow = false;
  std::vector<std::string> types;
  std::optional<int64_t> job;
  bool failed = false;
  double speed = 0;  // 0: as fast as it goes
};

// The jobs whose last job.end in the log failed (a first pass over it).
bool FailedJobs(const std::string& path, std::set<int64_t>* failed, std::string* err) {
  weft::events::InputOptions in;
  in.path = path;
  in.types = {"job.end"};  // (a log's index has them)
  weft::events::LineReader reader;
  weft::events::Fields f;
  weft::events::PumpHandlers h;
  h.line = [&](std::string_view line) {
    if (weft::events::TypeOf(line) != "job.end" || !f.Load(weft::events::Event(line))) return;
    int64_t job = f.Int("job").value_or(-1);
    if (f.Str("verdict").value_or("fail") == "fail" && !f.Bool("retry").value_or(false))
      failed->insert(job);
    else
      failed->erase(job);
  };
  return weft::events::ReadInput(in, reader, h, nullptr, err) != weft::events::PumpEnd::kReadError;
}

int Replay(const ReplayOptions& r) {
  std::string path = r.file.empty() ? ".weft/latest" : r.file;
  if (path != "-" && access(path.c_str(), R_OK) != 0) {
    weft::Error(kProg, fmt::format("cannot open {}: {}{}", path, strerror(errno),
                                   r.file.empty() ? " (no run logged here yet?)" : ""));
    return weft::kExitUsage;
  }
  std::string exe = weft::SelfDir() + "/weft-render-" + r.renderer;
  std::vector<std::string> args = {exe};
  if (r.renderer == "term") {
    args.push_back("--color=" + r.color);
    if (r.verbose) args.push_back("-v");
    // The project's colours, if its weft.toml has some (a weft.toml that
    // cannot be read is no reason not to show a log).
    weft::runner::Config config;
    std::string err;
    if (std::string file = weft::runner::FindConfig(".");
        !file.empty() && weft::runner::LoadConfig(file, &config, &err) &&
        !config.colors.empty())
      args.push_back("--colors=" + config.colors);
  }
  bool filtering = !r.types.empty() || r.job || r.failed || r.speed > 0;
  if (!filtering) {
    // Nothing to do between the log and the renderer: become it.
    if (r.follow) args.push_back("--follow");
    args.push_back(path);
    return Become(args);
  }
  std::set<int64_t> failed;
  if (r.failed) {
    if (path == "-" || r.follow) {
      weft::Error(kProg, "--failed needs a whole log (not stdin, not --follow): the "
                         "jobs that failed are known only at their end");
      return weft::kExitUsage;
    }
    std::string err;
    if (!FailedJobs(path, &failed, &err)) {
      weft::Error(kProg, err);
      return weft::kExitUsage;
    }
  }
  // The renderer reads what we pass on through a pipe.
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    weft::Error(kProg, fmt::format("pipe: {}", strerror(errno)));
    return weft::kExitHarness;
  }
  // 1 MiB, as between the chain's filters: the read need not wait for the
  // renderer, which starts while it goes on.
  weft::WidenPipe(fds[1]);
  pid_t pid = fork();
  if (pid < 0) {
    weft::Error(kProg, fmt::format("cannot start {}: {}", exe, strerror(errno)));
    return weft::kExitHarness;
  }
  if (pid == 0) {
    dup2(fds[0], STDIN_FILENO);
    _exit(Become(args));
  }
  close(fds[0]);
  // A few names: a look along a short list beats a tree, line after line.
  const std::vector<std::string>& types = r.types;
  auto wanted = [&](std::string_view type) {
    for (const auto& t : types)
      if (t.size() == type.size() && t == type) return true;
    return false;
  };
  weft::events::InputOptions in;
  in.path = path;
  in.follow = r.follow;
  if (!types.empty()) {
    // Those types (and what is always passed on) from the log's index, when
    // it has one that lists them.
    in.types = types;
    in.types.push_back("hello");
    in.types.push_back("run.end");
  }
  // Large reads: a replay is a bulk copy of a file.
  weft::events::LineReader reader(1 << 20);
  weft::events::Fields f;
  std::string out;
  int64_t last_ts = -1;
  bool ended = false;
  weft::events::PumpHandlers h;
  std::array<bool, 256> initials{};
  if (!types.empty()) {
    // Most lines are ruled out by their type's first letter, unread.
    initials['h'] = initials['r'] = true;  // hello, run.end
    for (const auto& t : types)
      if (!t.empty()) initials[static_cast<unsigned char>(t[0])] = true;
    h.type_initials = &initials;
  }
  h.line = [&](std::string_view line) {
    std::string_view type = weft::events::TypeOf(line);
    if (type == "run.end") ended = true;
    if (type.empty()) return;
    if (type != "hello") {
      if (!types.empty() && !wanted(type)) return;
      if (r.job || r.failed || r.speed > 0) {
        if (!f.Load(weft::events::Event(line))) return;
        if (auto job = f.Int("job")) {
          if (r.job && *job != *r.job) return;
          if (r.failed && !failed.count(*job)) return;
        }
        if (r.speed > 0) {
          int64_t ts = f.Int("ts").value_or(last_ts);
          if (last_ts >= 0 && ts > last_ts) {
            // Original timing: what is ready goes out before the pause.
            weft::events::WriteAll(fds[1], out);
            out.clear();
            usleep(static_cast<useconds_t>(static_cast<double>(ts - last_ts) / r.speed));
          }
          if (ts >= 0) last_ts = ts;
        }
      }
    }
    out.append(line);
    out.push_back('\n');
  };
  h.batch_end = [&] {
    if (!out.empty() && !weft::events::WriteAll(fds[1], out)) ended = true;
    out.clear();
  };
  // The renderer can finish while the log is let go.
  h.end = [&] {
    close(fds[1]);
    fds[1] = -1;
  };
  weft::events::InstallStopCounter();
  std::string err;
  auto end = weft::events::ReadInput(in, reader, h, [&] { return ended; }, &err);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (end == weft::events::PumpEnd::kReadError) {
    weft::Error(kProg, err);
    return weft::kExitUsage;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : weft::kExitHarness;
}

}  // namespace

int main(int argc, char** argv) {
  weft::InitStreamProcess();
  CLI::App app{"weft: a test harness for test programs in any language.", kProg};
  app.require_subcommand(1);
  app.footer("Run 'weft COMMAND --help' for a command's options. "
             "See docs/weft.md.");

  weft::runner::Options t;
  ShowOptions show;
  CLI::App* test = app.add_subcommand(
      "test", "Run tests (default: weft.toml's paths, else t/, else tests/) "
              "and show the results");
  weft::runner::AddRunnerOptions(*test, &t);
  AddShowOptions(test, &show);
  test->add_option("-o,--log", show.log,
                   "Write the log here (default: .weft/runs/<run-id>.jsonl)");
  test->add_flag("--zstd", show.zstd,
                 "Compress the log (.jsonl.zst); replay and every renderer read it");
  test->footer("Exit codes: 0 all passed, 1 a test failed, 2 usage error, "
               "3 weft itself failed, 4 no test ran, 130 interrupted.\n"
               "See docs/weft.md and docs/weft.toml.md.");

  weft::runner::Options l;
  CLI::App* list = app.add_subcommand(
      "list", "Print the job specs `weft test` would run, as JSONL (feed them "
              "to weft-runner --jobs-from)");
  weft::runner::AddRunnerOptions(*list, &l);
  list->footer("Exit codes: 0 listed, 2 usage error, 4 no tests found.");

  CLI::App* history = app.add_subcommand(
      "history", "The history index (.weft/history.sqlite), built from the run logs");
  history->require_subcommand(1);
  CLI::App* rebuild = history->add_subcommand(
      "rebuild", "Make the index again from .weft/runs/*.jsonl");
  rebuild->footer("Exit codes: 0 rebuilt, 2 no run logs here.");

  ReplayOptions ro;
  CLI::App* replay = app.add_subcommand(
      "replay", "Show a logged run again, as it was shown live, or in any renderer");
  replay->add_option("log", ro.file,
                     "A log file (.jsonl or .jsonl.zst), or - for stdin (default: "
                     ".weft/latest)");
  replay->add_option("--renderer", ro.renderer,
                     "term (default), json, tap, junit, github or html: weft-render-NAME")
      ->check(CLI::IsMember({"term", "json", "tap", "junit", "github", "html"}));
  replay->add_flag("-v,--verbose", ro.verbose, "Show every job and assertion (term)");
  replay->add_option("--color", ro.color, "auto, always or never (term)")
      ->check(CLI::IsMember({"auto", "always", "never"}));
  replay->add_flag("-f,--follow", ro.follow,
                   "Follow the log as it grows (like tail -f) until its run ends");
  replay->add_option("--types", ro.types,
                     "Pass on only these event types (and hello), comma-separated")
      ->delimiter(',')->allow_extra_args(false);
  replay->add_option("--job", ro.job, "Pass on only this job's events (and the run's)");
  replay->add_flag("--failed", ro.failed,
                   "Pass on only the events of jobs that failed (and the run's)");
  replay->add_option("--speed", ro.speed,
                     "Replay with the original timing, N times as fast (1: real time)")
      ->check(CLI::PositiveNumber);
  replay->footer("Exit codes: the renderer's: for term the logged run's (0 pass, "
                 "1 fail, 3 harness failure, 4 no tests, 130 interrupted); 2 when "
                 "the log cannot be read.");

  std::optional<int> start_jobs;
  bool start_zstd = false;
  weft::runner::Options so;
  CLI::App* start = app.add_subcommand(
      "start", "Start a persistent runner for this project, in the background: "
               "`weft run` then runs tests on it");
  start->add_option_function<std::string>(
           "-j,--jobs", [&](const std::string& v) { start_jobs = v == "auto" ? 0 : std::stoi(v); },
           "Run N tests at once, or auto (default: weft.toml's jobs, else auto)")
      ->check(weft::runner::CheckJobs)
      ->type_name("N|auto");
  start->add_flag("--zstd", start_zstd, "Compress the runs' logs (.jsonl.zst)");
  start->add_option("--config", so.config, "Read this weft.toml");
  start->add_flag("--no-config", so.no_config, "Read no weft.toml");
  start->footer("Exit codes: 0 started, 2 one already serves this project (or a usage "
                "error), 3 it could not start (.weft/server.log says why).");

  weft::runner::Options ro_run;
  ShowOptions run_show;
  CLI::App* run_cmd = app.add_subcommand(
      "run", "Run tests on this project's persistent runner (weft start) and show "
             "them as weft test does");
  weft::runner::AddRunnerOptions(*run_cmd, &ro_run);
  AddShowOptions(run_cmd, &run_show);
  run_cmd->footer("Exit codes: the run's, as weft test's: 0 all passed, 1 a test failed, "
                  "2 usage error or no runner serves here, 3 weft itself failed (or the "
                  "runner went away), 4 no test ran, 130 interrupted.");

  weft::runner::Options wo;
  ShowOptions watch_show;
  int debounce_ms = 100;
  CLI::App* watch = app.add_subcommand(
      "watch", "Run the tests, then again whenever a file of the project changes: the "
               "tests that changed or loaded a changed file (staged tests say what they "
               "load), else all; q or Ctrl-C stops");
  weft::runner::AddRunnerOptions(*watch, &wo);
  AddShowOptions(watch, &watch_show);
  watch->add_flag("--zstd", watch_show.zstd, "Compress the runs' logs (.jsonl.zst)");
  watch->add_option("--debounce", debounce_ms,
                    "Milliseconds of quiet after a change before the rerun (default: 100)")
      ->check(CLI::Range(0, 60000));
  watch->footer("Exit codes: 0 stopped with q, 2 usage error, 3 weft itself failed, "
                "130 interrupted (Ctrl-C).");

  double stop_grace = 10;
  CLI::App* stop = app.add_subcommand(
      "stop", "Stop this project's persistent runner: running tests get a grace to "
              "finish, then are stopped");
  stop->add_option("--grace", stop_grace,
                   "Seconds running tests get to finish (default: 10)")
      ->check(CLI::Range(0.0, 86400.0));
  stop->footer("Exit codes: 0 stopped, 2 no runner serves this project.");

  bool status_json = false;
  CLI::App* status = app.add_subcommand(
      "status", "Show the runs going on on this machine, from their live scoreboards");
  status->add_flag("--json", status_json, "One JSON array, an object per run");
  status->footer("Exit codes: 0.");

  std::vector<std::string> merge_logs;
  std::string merge_output;
  CLI::App* merge = app.add_subcommand(
      "merge", "Merge the logs of several runs or shards into one run's log");
  merge->add_option("logs", merge_logs, "Logs (.jsonl or .jsonl.zst)")->required();
  merge->add_option("-o,--output", merge_output,
                    "Write the merged log to FILE (default: stdout)");
  merge->footer("Exit codes: 0 merged, 2 usage or a log cannot be read, 3 the "
                "output cannot be written.");

  if (int rc = weft::ParseArgs(app, argc, argv); rc >= 0) return rc;
  if (status->parsed()) return Status(status_json);
  if (merge->parsed()) {
    std::vector<std::string> args(argv, argv + argc);
    return weft::cli::Merge(merge_logs, merge_output, args);
  }
  if (test->parsed()) return Test(test, t, show);
  if (start->parsed()) return Start(start_jobs, start_zstd, so);
  if (run_cmd->parsed()) return RunOn(run_cmd, ro_run, run_show);
  if (watch->parsed()) return WatchCmd(watch, wo, watch_show, debounce_ms);
  if (stop->parsed()) {
    weft::runner::Options none;
    weft::runner::Config config;
    std::vector<std::string> paths;
    int rc = 0;
    if (!ReadConfig(none, &config, &paths, &rc)) return rc;
    if (config.file.empty()) weft::cli::EnterServedRoot();
    return weft::cli::ServerStop(stop_grace);
  }
  if (list->parsed()) return List(list, l);
  if (rebuild->parsed()) return HistoryRebuild();
  if (replay->parsed()) return Replay(ro);
  return weft::kExitUsage;
}
