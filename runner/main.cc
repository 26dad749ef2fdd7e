// weft-runner: finds tests, runs each under a weft-auditor, merges their
// events into one stream on stdout.
#include <weft/common/cli.h>
#include <weft/common/util.h>

#include "runner_options.h"

int main(int argc, char** argv) {
  weft::InitStreamProcess();
  weft::runner::Options o;
  for (int i = 0; i < argc; ++i) o.argv.emplace_back(argv[i]);
  CLI::App app{
      "Finds the tests under PATHS (default: weft.toml's paths, else t/, "
      "else tests/), runs each under its own weft-auditor, N at a time, and "
      "writes the merged JSONL event stream on stdout (pipe it into "
      "weft-overlord).",
      "weft-runner"};
  weft::runner::AddRunnerOptions(app, &o);
  app.add_option("--run", o.run, "Run id (default: a new one)");
  app.add_option("--auditor", o.auditor,
                 "The weft-auditor to use (default: the one beside this program)");
  app.add_option("--control", o.control,
                 "Read control lines (stop, bail, reload; JSONL) from this "
                 "named pipe or /dev/fd/N while the run goes on; weft passes "
                 "one for its terminal's keys");
  app.add_option("--parent-pid", o.parent_pid,
                 "Stop the run (as on SIGTERM) when our parent, this process, "
                 "dies; weft passes its own pid");
  bool no_fork_server = false;
  app.add_flag("--no-fork-server", no_fork_server,
               "Exec a new weft-auditor for every job instead of forking "
               "each from one auditor server");
  app.add_flag("--list", o.list,
               "Print the job specs this run would start, as JSONL, and exit");
  app.add_flag("--serve", o.serve,
               "Run nothing at first: serve the runs requested on --control "
               "({\"type\":\"run\",…}), one after another, each its own run in "
               "the stream, until a shutdown line or the end of --control "
               "(weft start uses this)")
      ->group("Serving");
  app.add_option("--ready-fd", o.ready_fd,
                 "With --serve: write \"ready\" and a newline to this fd, and "
                 "close it, once requests are served")
      ->group("Serving");
  app.footer("Exit codes: 0 the run completed (verdicts are weft-overlord's), "
             "2 usage error, 3 harness failure, 4 no tests found, "
             "130 interrupted.\nSee docs/weft-runner.md and docs/weft.toml.md.");
  if (int rc = weft::ParseArgs(app, argc, argv); rc >= 0) return rc;
  o.fork_server = !no_fork_server;
  // A run request's arguments: the options above about a run, and paths.
  o.parse_run = [](const std::vector<std::string>& args, weft::runner::Options* r,
                   std::string* err) {
    CLI::App run{"run request", "run"};
    weft::runner::AddRunnerOptions(run, r);
    std::vector<std::string> reversed(args.rbegin(), args.rend());
    try {
      run.parse(reversed);
    } catch (const CLI::ParseError& e) {
      *err = e.what();
      return false;
    }
    return true;
  };
  return weft::runner::Run(o);
}
