// Finding the tests to run under the paths a user names.
#pragma once

#include <weft/common/limits.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace weft::runner {

struct JobSpec {
  std::string name;               // the path, as the user will see it
  std::vector<std::string> argv;  // how to run it
  std::string cwd;                // where; empty: the runner's directory
  std::vector<std::string> env;   // KEY=VALUE for the test
  std::string group;              // its concurrency group; empty: none
  JobLimits limits;
  int retries = 0;                // reruns after a failure
  int64_t expected_us = -1;       // from history; -1: unknown
  int64_t id = 0;                 // job id in the run (0: not yet given)
  int attempt = 1;                // this attempt (a retry's is above 1)
};

// Extension (without the dot) -> the command that runs such a file; an
// empty command runs the file itself (when it is executable).
using Interpreters = std::map<std::string, std::vector<std::string>>;

// The built-in interpreters (perl for .t and .pl, sh, python3, node, bats)
// with "extra" (from weft.toml) over them.
Interpreters DefaultInterpreters(const Interpreters& extra = {});

// The interpreter command for a file name's extension, or nullptr.
const std::vector<std::string>* InterpreterFor(const Interpreters& interpreters,
                                               const std::string& path);

// Expands "paths" (default: t/ if it exists, else tests/) into jobs:
// every file under a directory that is executable or has a known
// extension, hidden entries skipped, sorted by path; a file named
// explicitly is always run. Problems that do not stop the run (a dangling
// symlink, no default directory) go to *warnings. Returns false with *err
// when a named path does not exist.
bool Discover(const std::vector<std::string>& paths,
              const Interpreters& interpreters, std::vector<JobSpec>* jobs,
              std::vector<std::string>* warnings, std::string* err);

}  // namespace weft::runner
