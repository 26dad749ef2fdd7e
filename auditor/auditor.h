// weft-auditor's logic: run one test, turn what it says into events.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <weft/common/limits.h>

namespace weft::auditor {

struct Options {
  std::string run;          // run id; a new one when empty
  int64_t job = 1;          // job id within the run
  std::string name;         // what people call the test (its path)
  JobLimits limits;
  int lifeline_fd = -1;     // EOF here means our runner is gone
  std::vector<std::string> argv;  // the test's command line
  int attempt = 1;                // WEFT_ATTEMPT
  // A TMPDIR made for us (by the fork server, which reuses it for the
  // next job after a pass): we empty it after a pass instead of removing
  // it. Empty: we make our own.
  std::string tmpdir;
  std::string cwd;                // where the test runs; empty: ours
  std::vector<std::string> env;   // KEY=VALUE set for the test
  int attempts = 1;               // attempts allowed: a failure before the
                                  // last is retried (job.end says so)
  // A stage's socket (docs/stages.md): the test is forked by that
  // long-lived process, with its modules preloaded, instead of spawned.
  std::string stage;
};

// Makes a test's TMPDIR, "weft-STEM-XXXXXX" under $TMPDIR (or /tmp);
// empty when it cannot.
std::string MakeTmpdir(std::string_view stem);

// Runs the test and writes its events to stdout. Returns the auditor's exit
// code: 0 the test passed (or was skipped), 1 it failed, 3 the auditor
// itself failed (its output could not be written), 130 interrupted.
// "reusable", when given, says whether this process can run another job
// (everything of this one closed: a fork server's worker goes on).
int Run(const Options& options, bool* reusable = nullptr);

}  // namespace weft::auditor
