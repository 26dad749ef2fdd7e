// weft: the front command that assembles weft's processes for people.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <weft/common/cli.h>
#include <weft/common/util.h>

#include "chain.h"

namespace {

constexpr const char* kProg = "weft";

struct TestOptions {
  std::vector<std::string> paths;
  int jobs = 0;
  double timeout_s = 0;
  double idle_timeout_s = 0;
  double exit_timeout_s = 2;
  double kill_grace_s = 5;
  bool keep = false;
  std::string leaks = "fail";
  std::string stdin_path;
  bool verbose = false;
  std::string log;
  std::string color = "auto";
};

int Test(const TestOptions& t) {
  for (const auto& p : t.paths) {
    struct stat st;
    if (stat(p.c_str(), &st) != 0) {
      weft::Error(kProg, fmt::format("{}: {}", p, strerror(errno)));
      return weft::kExitUsage;
    }
  }
  std::string dir = weft::SelfDir();
  std::vector<std::string> runner = {dir + "/weft-runner"};
  if (t.jobs > 0) runner.push_back(fmt::format("-j{}", t.jobs));
  if (t.timeout_s > 0) runner.push_back(fmt::format("--timeout={}", t.timeout_s));
  if (t.idle_timeout_s > 0)
    runner.push_back(fmt::format("--idle-timeout={}", t.idle_timeout_s));
  runner.push_back(fmt::format("--exit-timeout={}", t.exit_timeout_s));
  runner.push_back(fmt::format("--kill-grace={}", t.kill_grace_s));
  runner.push_back(fmt::format("--parent-pid={}", getpid()));
  if (t.keep) runner.push_back("--keep");
  runner.push_back("--leaks=" + t.leaks);
  if (!t.stdin_path.empty()) runner.push_back("--stdin=" + t.stdin_path);
  runner.push_back("--");
  for (const auto& p : t.paths) runner.push_back(p);
  std::vector<std::string> logger = {dir + "/weft-logger"};
  if (!t.log.empty()) logger.push_back("--output=" + t.log);
  std::vector<std::string> render = {dir + "/weft-render-term",
                                     "--color=" + t.color};
  if (t.verbose) render.push_back("-v");

  auto r = weft::cli::RunChain(
      {runner, {dir + "/weft-overlord"}, logger, render}, 0);
  if (!r.error.empty()) {
    weft::Error(kProg, r.error);
    return weft::kExitHarness;
  }
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

  TestOptions t;
  CLI::App* test = app.add_subcommand(
      "test", "Run tests (default: t/, else tests/) and show the results");
  test->add_option("paths", t.paths, "Test files or directories");
  test->add_option("-j,--jobs", t.jobs, "Run N tests at once (default: CPUs)")
      ->check(CLI::Range(1, 100000));
  test->add_option("--timeout", t.timeout_s,
                   "Stop a test after SECONDS (TERM, then KILL); 0 = never")
      ->check(CLI::NonNegativeNumber);
  test->add_option("--idle-timeout", t.idle_timeout_s,
                   "Stop a test that prints nothing for SECONDS; 0 = never")
      ->check(CLI::NonNegativeNumber);
  test->add_option("--exit-timeout", t.exit_timeout_s,
                   "Stop reading a test's output held open SECONDS after it exited")
      ->capture_default_str()->check(CLI::PositiveNumber);
  test->add_option("--kill-grace", t.kill_grace_s,
                   "Seconds between TERM and KILL when stopping a test")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  test->add_flag("--keep", t.keep,
                 "Keep each test's TMPDIR after it passes (always kept after a failure)");
  test->add_option("--leaks", t.leaks,
                   "Processes a test leaves running: fail the job (default), or only warn")
      ->check(CLI::IsMember({"fail", "warn"}));
  test->add_option("--stdin", t.stdin_path,
                   "Every test's stdin (default: /dev/null)");
  test->add_flag("-v,--verbose", t.verbose, "Show every job and assertion");
  test->add_option("-o,--log", t.log,
                   "Write the log here (default: .weft/runs/<run-id>.jsonl)");
  test->add_option("--color", t.color, "auto, always or never")
      ->check(CLI::IsMember({"auto", "always", "never"}));
  test->footer("Exit codes: 0 all passed, 1 a test failed, 2 usage error, "
               "3 weft itself failed, 4 no test ran, 130 interrupted.");

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
  if (test->parsed()) return Test(t);
  if (replay->parsed()) return Replay(replay_file, replay_verbose, replay_color);
  return weft::kExitUsage;
}
