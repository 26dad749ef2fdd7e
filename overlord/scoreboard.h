// The live scoreboard: a run's counts and running jobs in a shared-memory
// segment (Boost.Interprocess), written by weft-overlord as the run goes,
// read by `weft status` without touching the pipes.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace weft::scoreboard {

// What a reader sees of one run.
struct Snapshot {
  std::string run, host, cwd;
  int pid = 0;  // the overlord's
  int64_t start_us = 0, updated_us = 0;
  int64_t planned = 0, P = 0, F = 0, A = 0, R = 0, T = 0;
  int64_t flaky = 0, cancelled = 0, timed_out = 0;
  bool ended = false;
  struct Running {
    int64_t job = 0;
    int64_t start_us = 0;
    std::string name;
  };
  std::vector<Running> running;  // at most kMaxRunning, the oldest first
  int64_t running_total = 0;     // all of them, shown or not
};

inline constexpr size_t kMaxRunning = 64;

// The segment's name for a run: "weft-<run-id>" (in /dev/shm).
std::string SegmentName(std::string_view run);

// The writer side (weft-overlord). Creates the segment; removes it when
// destroyed (the run's end, or the overlord's). Every call is cheap:
// memory writes under a sequence counter, no system call.
class Board {
 public:
  // An empty Board when the segment cannot be made (*err says why): the
  // run goes on without a scoreboard.
  static std::unique_ptr<Board> Create(std::string_view run, std::string_view host,
                                       std::string_view cwd, int64_t start_us,
                                       std::string* err);
  ~Board();
  Board(const Board&) = delete;
  Board& operator=(const Board&) = delete;

  void Counts(int64_t planned, int64_t P, int64_t F, int64_t A, int64_t R, int64_t T,
              int64_t flaky, int64_t cancelled, int64_t timed_out, int64_t now_us);
  void JobStarted(int64_t job, std::string_view name, int64_t start_us);
  void JobEnded(int64_t job);
  void Ended(int64_t now_us);

 private:
  struct Impl;
  explicit Board(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A segment removed as stale, and why ("its run's weft-overlord is gone").
struct Stale {
  std::string name, why;
};

// The reader side (`weft status`): every live run's board. A segment whose
// overlord is gone (crashed, SIGKILLed, even in the middle of an update),
// or that has stayed unreadable (cut short, not a board) for longer than
// any overlord takes to make one, is removed and not listed, and goes to
// *stale. A board of another version is left alone.
std::vector<Snapshot> ReadAll(std::vector<Stale>* stale);

}  // namespace weft::scoreboard
