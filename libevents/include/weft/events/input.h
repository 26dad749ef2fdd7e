// Where a reader of the stream gets it: stdin (a live stream), a log file,
// or a log file followed as it grows (like `tail -f`, until run.end).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "weft/events/line_reader.h"
#include "weft/events/pump.h"

namespace weft::events {

struct InputOptions {
  std::string path;     // empty or "-": stdin
  bool follow = false;  // at EOF, wait for more until done() holds
  // Signals that stop following (a third always ends the read): 1, or 3
  // for a view whose run a signal stops anyway (weft run: the run's end,
  // with its summary, is on its way).
  int stop_signals = 1;
  // The types the reader wants, when it wants only a few: a log whose
  // index (see log_index.h) lists them is then read from its index, and
  // lines of other types before the index's end may not be handed over
  // (the reader still filters: past that end every line is). Empty: all.
  std::vector<std::string> types;
};

// Reads every line of the input into "h" (see Pump). With follow, EOF of a
// regular file waits (inotify, no busy loop) for the file to grow, until
// "done" returns true (a renderer: after run.end) or a stop signal comes;
// a partial last line is held until its '\n' arrives. Returns kEof at the
// end, kReadError with *err (naming the file) when it cannot be read.
PumpEnd ReadInput(const InputOptions& in, LineReader& reader,
                  const PumpHandlers& h, const std::function<bool()>& done,
                  std::string* err);

}  // namespace weft::events
