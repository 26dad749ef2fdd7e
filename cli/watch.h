// weft watch: runs the tests, then again whenever a file of the project
// changes (the tests that changed, or all of them), until stopped.
#pragma once

#include <string>
#include <vector>

namespace weft::cli {

struct WatchOptions {
  std::vector<std::string> run_args;  // weft-runner run options, then "--" and paths
  std::vector<std::string> render;    // weft-render-term's arguments
  bool zstd = false;
  int debounce_ms = 100;
};

// Runs in the project's root (the caller has entered it). Returns the exit
// code: 0 when stopped with q, 130 on Ctrl-C, 3 when weft itself failed.
int Watch(const WatchOptions& o);

}  // namespace weft::cli
