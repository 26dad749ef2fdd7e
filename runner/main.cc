// weft-runner: finds tests, runs each under a weft-auditor, merges their
// events into one stream on stdout.
#include <weft/common/cli.h>
#include <weft/common/util.h>

#include "runner.h"

int main(int argc, char** argv) {
  weft::InitStreamProcess();
  weft::runner::Options o;
  for (int i = 0; i < argc; ++i) o.argv.emplace_back(argv[i]);
  CLI::App app{
      "Finds the tests under PATHS (default: t/, else tests/), runs each "
      "under its own weft-auditor, N at a time, and writes the merged JSONL "
      "event stream on stdout (pipe it into weft-overlord).",
      "weft-runner"};
  app.add_option("paths", o.paths, "Test files or directories");
  app.add_option("-j,--jobs", o.jobs, "Run N tests at once (default: CPUs)")
      ->check(CLI::Range(1, 100000));
  app.add_option("--timeout", o.timeout_s,
                 "Stop a test after SECONDS (TERM, then KILL); 0 = never")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--idle-timeout", o.idle_timeout_s,
                 "Stop a test that prints nothing for SECONDS; 0 = never")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--exit-timeout", o.exit_timeout_s,
                 "Stop reading a test's output held open SECONDS after it exited")
      ->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--kill-grace", o.kill_grace_s,
                 "Seconds between TERM and KILL when stopping a test")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_flag("--keep", o.keep_tmpdir,
               "Keep each test's TMPDIR after it passes (always kept after a failure)");
  std::string leaks = "fail";
  app.add_option("--leaks", leaks,
                 "Processes a test leaves running: fail the job, or only warn")
      ->check(CLI::IsMember({"fail", "warn"}))->capture_default_str();
  app.add_option("--stdin", o.stdin_path,
                 "Every test's stdin (default: /dev/null)");
  app.add_option("--run", o.run, "Run id (default: a new one)");
  app.add_option("--auditor", o.auditor,
                 "The weft-auditor to use (default: the one beside this program)");
  app.add_option("--parent-pid", o.parent_pid,
                 "Stop the run (as on SIGTERM) when our parent, this process, "
                 "dies; weft passes its own pid");
  bool no_fork_server = false;
  app.add_flag("--no-fork-server", no_fork_server,
               "Exec a new weft-auditor for every job instead of forking "
               "each from one auditor server");
  app.footer("Exit codes: 0 the run completed (verdicts are weft-overlord's), "
             "2 usage error, 3 harness failure, 4 no tests found, "
             "130 interrupted.\nSee docs/weft-runner.md.");
  if (int rc = weft::ParseArgs(app, argc, argv); rc >= 0) return rc;
  o.fork_server = !no_fork_server;
  o.leaks_fail = leaks == "fail";
  return weft::runner::Run(o);
}
