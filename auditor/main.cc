// weft-auditor: runs one test and turns what it says into weft events.
#include <weft/common/cli.h>
#include <weft/common/util.h>

#include <unistd.h>

#include "auditor.h"
#include "guard.h"
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
  weft::AddLimitOptions(app, &o.limits, "the test");
  app.add_option("--attempt", o.attempt, "The attempt number (WEFT_ATTEMPT)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--attempts", o.attempts,
                 "Attempts allowed: a failing attempt before the last says in "
                 "job.end that it will be retried")
      ->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--cwd", o.cwd, "Run the test in DIR (default: here)");
  weft::AddEnvOption(app, &o.env, "the test's");
  app.add_option("--lifeline-fd", o.lifeline_fd,
                 "An fd whose EOF means the runner is gone: stop the test and exit");
  app.add_option("--stage", o.stage,
                 "Have the stage listening on this socket fork the test (its "
                 "modules preloaded) instead of spawning it; supervised the same")
      ->type_name("SOCKET");
  bool serve = false;
  app.add_flag("--serve", serve,
               "Be a fork server: fork a worker on each request from stdin "
               "(a socket, from weft-runner), one per job running at once; "
               "the runner sends each worker job after job");
  bool guard = false;
  app.add_flag("--guard", guard,
               "Guard a service instead of auditing a test: run COMMAND in its "
               "own process group with our stdout and stderr; stop it (TERM, "
               "--kill-grace, KILL) on SIGTERM or when --lifeline-fd ends; "
               "exit with its status (weft-runner's services use this)");
  app.prefix_command();
  app.footer("Exit codes: 0 the test passed, 1 it failed, 2 usage error, "
             "3 the auditor failed, 130 interrupted.\nSee docs/weft-auditor.md.");
  if (int rc = weft::ParseArgs(app, argc, argv); rc >= 0) return rc;
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
  if (guard) return weft::auditor::Guard(o);
  return weft::auditor::Run(o);
}
