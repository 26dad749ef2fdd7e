// weft-runner's logic: schedule jobs, spawn one auditor each, merge their
// event streams into one.
#pragma once

#include <string>
#include <vector>

#include "discover.h"

namespace weft::runner {

struct Options {
  std::vector<std::string> paths;
  int jobs = 0;               // slots; 0 = number of CPUs
  double timeout_s = 0;       // per test, wall time; 0 = none
  double idle_timeout_s = 0;  // per test, without output; 0 = none
  double exit_timeout_s = 2;  // output held open after the test exits
  double kill_grace_s = 5;
  bool keep_tmpdir = false;   // keep each test's TMPDIR after a pass
  bool leaks_fail = true;     // processes left running fail the job
  std::string stdin_path;     // every test's stdin; empty: /dev/null
  std::string run;            // run id; a new one when empty
  std::string auditor;        // path of weft-auditor; default: our sibling
  bool fork_server = true;    // fork auditors from one server, or exec each
  int parent_pid = 0;         // stop the run when this parent dies
  std::vector<std::string> argv;  // our own command line, for run.start
};

// Runs every job and writes the merged stream to stdout. Returns the
// runner's exit code: 0 the run completed (whatever the verdicts: those
// are weft-overlord's), 2 usage, 3 harness failure, 4 no tests, 130
// interrupted.
int Run(const Options& options);

}  // namespace weft::runner
