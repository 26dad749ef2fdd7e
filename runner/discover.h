// Finding the tests to run under the paths a user names.
#pragma once

#include <string>
#include <vector>

namespace weft::runner {

struct JobSpec {
  std::string name;               // the path, as the user will see it
  std::vector<std::string> argv;  // how to run it
};

// The interpreter for a file name's extension ("perl" for .t), or empty.
std::string InterpreterFor(const std::string& path);

// Expands "paths" (default: t/ if it exists, else tests/) into jobs:
// every file under a directory that is executable or has a known
// extension, hidden entries skipped, sorted by path; a file named
// explicitly is always run. Problems that do not stop the run (a dangling
// symlink, no default directory) go to *warnings. Returns false with *err
// when a named path does not exist.
bool Discover(const std::vector<std::string>& paths, std::vector<JobSpec>* jobs,
              std::vector<std::string>* warnings, std::string* err);

}  // namespace weft::runner
