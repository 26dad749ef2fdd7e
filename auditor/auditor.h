// weft-auditor's logic: run one test, turn what it says into events.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace weft::auditor {

struct Options {
  std::string run;          // run id; a new one when empty
  int64_t job = 1;          // job id within the run
  std::string name;         // what people call the test (its path)
  double timeout_s = 0;       // wall time; 0: none
  double idle_timeout_s = 0;  // no output on any stream this long; 0: none
  double exit_timeout_s = 2;  // output held open this long after exit
  double kill_grace_s = 5;    // TERM, then KILL after this long
  int lifeline_fd = -1;     // EOF here means our runner is gone
  std::vector<std::string> argv;  // the test's command line
  bool exit_when_done = false;    // _exit() once job.end is written
  int attempt = 1;                // WEFT_ATTEMPT
  bool keep_tmpdir = false;       // keep the test's TMPDIR after a pass
  bool leaks_fail = true;         // processes left running fail the job
  // A TMPDIR made for us (by the fork server, which reuses it for the
  // next job after a pass): we empty it after a pass instead of removing
  // it. Empty: we make our own.
  std::string tmpdir;
  std::string stdin_path;         // the test's stdin; empty: /dev/null
};

// Makes a test's TMPDIR, "weft-STEM-XXXXXX" under $TMPDIR (or /tmp);
// empty when it cannot.
std::string MakeTmpdir(std::string_view stem);

// Runs the test and writes its events to stdout. Returns the auditor's exit
// code: 0 the test passed (or was skipped), 1 it failed, 3 the auditor
// itself failed (its output could not be written), 130 interrupted.
int Run(const Options& options);

}  // namespace weft::auditor
