// weft-auditor: runs one test and turns what it says into weft events.
#include <weft/common/cli.h>
#include <weft/common/util.h>

#include <unistd.h>

#include "auditor.h"
#include "server.h"

int main(int argc, char** argv) {
  weft::InitStreamProcess();
  weft::auditor::Options o;
  CLI::App app{
      "Runs one test command in its own process group and writes its events "
      "(TAP parsed into plan/assert/comment/bail events, stderr and other "
      "output, the exit status and the job's verdict) as JSONL on stdout.",
      "weft-auditor"};
  app.add_option("--run", o.run, "Run id to stamp on every event (default: a new one)");
  app.add_option("--job", o.job, "Job id within the run")->capture_default_str();
  app.add_option("--name", o.name, "The test's name (default: COMMAND)");
  app.add_option("--timeout", o.timeout_s,
                 "Stop the test after SECONDS (TERM, then KILL); 0 = never")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--idle-timeout", o.idle_timeout_s,
                 "Stop the test when it prints nothing (on any stream) for "
                 "SECONDS; 0 = never")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--exit-timeout", o.exit_timeout_s,
                 "After the test exits, stop reading output still held open "
                 "(by something it passed its pipes to) after SECONDS; the job fails")
      ->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--kill-grace", o.kill_grace_s,
                 "Seconds between TERM and KILL when stopping the test")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--attempt", o.attempt, "The attempt number (WEFT_ATTEMPT)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  app.add_flag("--keep", o.keep_tmpdir,
               "Keep the test's TMPDIR after it passes (it is always kept "
               "after a failure)");
  std::string leaks = "fail";
  app.add_option("--leaks", leaks,
                 "Processes a test leaves running: fail the job, or only warn")
      ->check(CLI::IsMember({"fail", "warn"}))->capture_default_str();
  app.add_option("--stdin", o.stdin_path,
                 "The test's stdin (default: /dev/null)");
  app.add_option("--lifeline-fd", o.lifeline_fd,
                 "An fd whose EOF means the runner is gone: stop the test and exit");
  bool serve = false;
  app.add_flag("--serve", serve,
               "Be a fork server: read job requests from stdin (a socket, "
               "from weft-runner) and fork one auditor per job");
  app.prefix_command();
  app.footer("Exit codes: 0 the test passed, 1 it failed, 2 usage error, "
             "3 the auditor failed, 130 interrupted.\nSee docs/weft-auditor.md.");
  if (int rc = weft::ParseArgs(app, argc, argv); rc >= 0) return rc;
  o.leaks_fail = leaks == "fail";
  if (serve) return weft::auditor::Serve(STDIN_FILENO);
  o.argv = app.remaining();
  if (!o.argv.empty() && o.argv.front() == "--") {
    o.argv.erase(o.argv.begin());
  } else if (!o.argv.empty() && o.argv.front().size() > 1 &&
             o.argv.front()[0] == '-') {
    // An option we do not know, before the command: a typo, not a test.
    weft::Error("weft-auditor",
                fmt::format("unknown option {}\nTry 'weft-auditor --help' for "
                            "more information (put -- before a command that "
                            "starts with -).",
                            o.argv.front()));
    return weft::kExitUsage;
  }
  if (o.argv.empty()) {
    weft::Error("weft-auditor", "no test command given\nTry 'weft-auditor --help' for more information.");
    return weft::kExitUsage;
  }
  return weft::auditor::Run(o);
}
