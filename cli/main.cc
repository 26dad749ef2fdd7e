// weft: the front command that assembles weft's processes for people.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <weft/common/cli.h>
#include <weft/common/util.h>

#include "chain.h"
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

int Test(CLI::App* cmd, const weft::runner::Options& o, ShowOptions show) {
  std::vector<std::string> paths = o.paths;
  for (const auto& p : paths) {
    struct stat st;
    if (stat(p.c_str(), &st) != 0) {
      weft::Error(kProg, fmt::format("{}: {}", p, strerror(errno)));
      return weft::kExitUsage;
    }
  }
  weft::runner::Config config;
  int rc = 0;
  std::string moved_from;
  if (!ReadConfig(o, &config, &paths, &rc, &moved_from)) return rc;
  show.log = weft::runner::RebasePath(show.log, moved_from);
  if (show.color.empty()) show.color = config.color.value_or("auto");
  if (!show.verbose) show.verbose = config.verbose.value_or(false);

  std::string dir = weft::SelfDir();
  std::vector<std::string> runner = {dir + "/weft-runner"};
  for (auto& a : Forwarded(cmd, moved_from)) runner.push_back(std::move(a));
  runner.push_back(fmt::format("--parent-pid={}", getpid()));
  runner.push_back("--");
  for (const auto& p : paths) runner.push_back(p);
  std::vector<std::string> logger = {dir + "/weft-logger"};
  if (!show.log.empty()) logger.push_back("--output=" + show.log);
  if (show.zstd) logger.push_back("--zstd");
  std::vector<std::string> render = {dir + "/weft-render-term",
                                     "--color=" + show.color};
  if (show.verbose) render.push_back("-v");

  auto r = weft::cli::RunChain(
      {runner, {dir + "/weft-overlord"}, logger, render}, 0);
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

// weft list: the runner's plan, as job specs. Becomes the runner.
int List(CLI::App* cmd, const weft::runner::Options& o) {
  std::string exe = weft::SelfDir() + "/weft-runner";
  std::vector<std::string> args = {exe, "--list"};
  for (auto& a : Forwarded(cmd)) args.push_back(std::move(a));
  args.push_back("--");
  for (const auto& p : o.paths) args.push_back(p);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  execv(exe.c_str(), argv.data());
  weft::Error(kProg, fmt::format("cannot run {}: {}", exe, strerror(errno)));
  return weft::kExitHarness;
}

int Replay(const std::string& file, bool verbose, const std::string& color) {
  std::string path = file.empty() ? ".weft/latest" : file;
  if (path != "-") {
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      weft::Error(kProg, fmt::format("cannot open {}: {}{}", path,
                                     strerror(errno),
                                     file.empty() ? " (no run logged here yet?)" : ""));
      return weft::kExitUsage;
    }
    if (dup2(fd, STDIN_FILENO) < 0) {
      weft::Error(kProg, fmt::format("dup2: {}", strerror(errno)));
      return weft::kExitHarness;
    }
    close(fd);
  }
  // Nothing left to do but render: become the renderer.
  std::string exe = weft::SelfDir() + "/weft-render-term";
  std::string color_arg = "--color=" + color;
  std::vector<char*> argv = {exe.data(), color_arg.data()};
  std::string v = "-v";
  if (verbose) argv.push_back(v.data());
  argv.push_back(nullptr);
  execv(exe.c_str(), argv.data());
  weft::Error(kProg, fmt::format("cannot run {}: {}", exe, strerror(errno)));
  return weft::kExitHarness;
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
  test->add_flag("-v,--verbose", show.verbose, "Show every job and assertion");
  test->add_option("-o,--log", show.log,
                   "Write the log here (default: .weft/runs/<run-id>.jsonl)");
  test->add_flag("--zstd", show.zstd,
                 "Compress the log (.jsonl.zst); replay and every renderer read it");
  test->add_option("--color", show.color, "auto, always or never (default: auto)")
      ->check(CLI::IsMember({"auto", "always", "never"}));
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

  std::string replay_file;
  bool replay_verbose = false;
  std::string replay_color = "auto";
  CLI::App* replay = app.add_subcommand(
      "replay", "Show a logged run again, as it was shown live");
  replay->add_option("log", replay_file,
                     "A log file, or - for stdin (default: .weft/latest)");
  replay->add_flag("-v,--verbose", replay_verbose, "Show every job and assertion");
  replay->footer("Exit codes: the logged run's (0 pass, 1 fail, 3 harness "
                 "failure, 4 no tests, 130 interrupted); 2 when the log cannot "
                 "be read.");
  replay->add_option("--color", replay_color, "auto, always or never")
      ->check(CLI::IsMember({"auto", "always", "never"}));

  if (int rc = weft::ParseArgs(app, argc, argv); rc >= 0) return rc;
  if (test->parsed()) return Test(test, t, show);
  if (list->parsed()) return List(list, l);
  if (rebuild->parsed()) return HistoryRebuild();
  if (replay->parsed()) return Replay(replay_file, replay_verbose, replay_color);
  return weft::kExitUsage;
}
