// Assembling weft's processes into a chain joined by pipes, for `weft`.
#pragma once

#include <string>
#include <vector>

namespace weft::cli {

// Runs the commands as a pipeline (each one's stdout into the next one's
// stdin; the first inherits our stdin, the last our stdout), waits for all, and returns the exit status of each in order (128+N for
// a signal, as a shell would). "runner_index" names the process that gets
// our SIGINT/SIGTERM/SIGHUP when they were sent to us alone (a terminal's
// Ctrl-C reaches the whole chain by itself), and SIGTERM when another
// process of the chain dies abnormally, so the run stops instead of going
// on unobserved.
struct ChainResult {
  std::vector<int> codes;       // exit status, or 128 + signal
  std::vector<bool> signaled;   // died by a signal
  bool interrupted = false;     // we were asked to stop
  int stop_signals = 0;         // how many times
  std::string error;            // could not start the chain
};

// "fds": for each command (or fewer), fds of ours to give it, as
// {our fd, its fd} (its fd above 2).
using ChainFds = std::vector<std::vector<std::pair<int, int>>>;
ChainResult RunChain(const std::vector<std::vector<std::string>>& commands,
                     size_t runner_index, const ChainFds& fds = {});

}  // namespace weft::cli
