// The read loop of a stream filter (overlord, logger, renderers): lines in
// from an fd, a batch boundary after each read (the place to flush), and a
// timer for work that must happen even when no line arrives.
#pragma once

#include <array>
#include <functional>
#include <string>
#include <string_view>

#include "weft/events/event.h"
#include "weft/events/line_reader.h"
#include "weft/events/pass_through.h"

namespace weft::events {

struct PumpHandlers {
  std::function<void(std::string_view line)> line;
  // A first cut for a reader that wants only a few types (a filtered
  // replay): when set, a line that starts {"type":" and a letter this
  // does not hold is not handed to line() (its type cannot be wanted);
  // every other line is. One byte looked at, no call, for most lines.
  const std::array<bool, 256>* type_initials = nullptr;
  // Hands "line" to line(), unless type_initials rules it out.
  void Hand(std::string_view l) const {
    constexpr size_t n = kTypePrefix.size();
    if (type_initials && l.size() > n &&
        !(*type_initials)[static_cast<unsigned char>(l[n])] && l.starts_with(kTypePrefix))
      return;
    line(l);
  }
  // Hands every line "r" holds ready (see LineReader::Each).
  void HandAll(LineReader& r) const {
    r.Each([this](std::string_view l) { Hand(l); });
  }
  // After the lines of one read were handled (flush here). May be empty.
  std::function<void()> batch_end;
  // ReadInput only: the input has no more lines (called once, after the
  // last batch_end, before the input is let go: unmapping a big log takes
  // milliseconds a downstream reader need not wait for). May be empty.
  std::function<void()> end;
  // Milliseconds until tick() is due; < 0 for none. May be empty.
  std::function<int()> timeout_ms;
  std::function<void()> tick;
  // Another fd to watch while waiting for lines (a terminal's keys):
  // extra() runs when it is readable, and returns false to stop watching.
  int extra_fd = -1;
  std::function<bool()> extra;
  // Reads through this (see pass_through.h) instead of from the fd alone.
  PassThrough* pass = nullptr;
  // When a handler sets *stop, Pump returns kStopped without reading on
  // (a filter whose output failed: upstream then sees its pipe close).
  const bool* stop = nullptr;
};

enum class PumpEnd { kEof, kReadError, kInterrupted, kStopped };

// Reads "fd" until EOF; the last line without '\n' is handed over too.
// Returns kInterrupted when a third SIGINT/SIGTERM arrived (see
// InstallStopCounter); *err says what failed on kReadError.
PumpEnd Pump(int fd, LineReader& reader, const PumpHandlers& h,
             std::string* err);

// Counts SIGINT/SIGTERM/SIGHUP instead of dying: a filter keeps reading
// until its upstream ends (so logs close and summaries print) and gives up
// only at the third signal: the first stops the run, the second makes the
// runner kill what is left (the run still ends, with its run.end), the
// third means the user wants out whatever the state.
void InstallStopCounter();
int StopCount();

}  // namespace weft::events
