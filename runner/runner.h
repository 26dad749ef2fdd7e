// weft-runner's logic: schedule jobs, spawn one auditor each, merge their
// event streams into one.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "config.h"
#include "discover.h"

namespace weft::runner {

struct Options {
  std::vector<std::string> paths;
  // Over weft.toml's: include / exclude globs (given: they replace the
  // file's), interpreters as EXT=COMMAND (per extension).
  std::vector<std::string> include, exclude, interpreters;
  std::optional<int> jobs;    // slots; 0 = "auto" (CPUs)
  Override cli;               // limits, retries, env given on the command line
  std::optional<int> bail;    // stop the run after N failed jobs
  std::optional<bool> flaky_fails;
  std::optional<std::string> order;  // duration, name, shuffle
  std::optional<uint64_t> seed;
  std::optional<bool> failed_first;
  bool rerun_failed = false;  // only the jobs that failed in the latest run
  std::string config;         // weft.toml to read; empty: look for one
  bool no_config = false;
  std::string jobs_from;      // job specs (JSONL) from this file, "-": stdin
  std::string control;        // control lines (stop, bail, reload) from here
  bool list = false;          // print the job specs and exit
  std::string run;            // run id; a new one when empty
  std::string auditor;        // path of weft-auditor; default: our sibling
  bool fork_server = true;    // fork auditors from one server, or exec each
  int parent_pid = 0;         // stop the run when this parent dies
  std::vector<std::string> argv;  // our own command line, for run.start
  // Repeat mode: the suite this many times, each repetition its own run
  // (0: until stopped); with until_fail, until a run fails.
  std::optional<int64_t> repeat;
  bool until_fail = false;
  // Serve mode: no run of our own; runs are requested on --control
  // ({"type":"run",…}), one after another, until {"type":"shutdown"}.
  bool serve = false;
  int ready_fd = -1;  // serve: "ready\n" is written here once serving
  // Serve: reads a run request's arguments (weft-runner's own run options)
  // into *o; false with *err when they are not valid.
  std::function<bool(const std::vector<std::string>& args, Options* o, std::string* err)>
      parse_run;
};

// Runs every job and writes the merged stream to stdout. Returns the
// runner's exit code: 0 the run completed (whatever the verdicts: those
// are weft-overlord's), 2 usage, 3 harness failure, 4 no tests, 130
// interrupted.
int Run(const Options& options);

}  // namespace weft::runner
