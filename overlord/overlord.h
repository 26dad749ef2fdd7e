// weft-overlord's logic: run-level truth from the merged stream.
#pragma once

#include <weft/events/event.h>
#include <weft/events/writer.h>

#include <memory>

#include "scoreboard.h"

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace weft::overlord {

// Per-job states, as the status line shows them: P passed (or skipped),
// F failed, A active (running), R retry pending, T to do (queued).
struct Counts {
  int64_t P = 0, F = 0, A = 0, R = 0, T = 0;
  bool operator==(const Counts&) const = default;
};

struct FinishedJob {
  int64_t job = 0;
  std::string name;
  int64_t duration_us = 0;
  std::vector<std::string> reasons;
};

// Consumes the stream line by line; every input line is passed to "out"
// unchanged (unless it is not an event at all), with counts and summary
// events appended. Decodes only the types it needs.
class Overlord {
 public:
  // "*out" must outlive this Overlord.
  // "scoreboard": keep each run's live scoreboard in shared memory (see
  // scoreboard.h) for `weft status`.
  explicit Overlord(events::EventWriter* out, bool scoreboard = false)
      : out_(out), scoreboard_(scoreboard) {}
  ~Overlord();
  Overlord(const Overlord&) = delete;
  Overlord& operator=(const Overlord&) = delete;

  void Line(std::string_view line);
  // Upstream ended. Completes the run if run.end never came.
  void End();
  // Emits a counts event if they changed and "now" allows (at most one per
  // 100 ms); "force" emits any pending change regardless.
  void MaybeCounts(int64_t now_us, bool force);
  // Milliseconds until a pending counts event may be written, or -1.
  int PendingMs(int64_t now_us) const;

  int exit_code() const { return exit_code_; }
  bool fatal() const { return fatal_; }
  const std::string& fatal_message() const { return fatal_message_; }
  const Counts& counts() const { return counts_; }

 private:
  void Summary(int64_t end_ts, bool interrupted, bool runner_error,
               bool incomplete);
  void OverlordError(std::string_view message);
  void Reset();

  events::EventWriter* out_;
  events::Fields fields_;
  uint64_t line_no_ = 0;

  bool in_run_ = false;
  bool saw_hello_ = false;
  int64_t run_start_ts_ = 0;
  int64_t planned_ = 0;
  Counts counts_;
  Counts last_sent_;
  int64_t last_counts_us_ = 0;
  bool counts_dirty_ = false;
  std::map<int64_t, int64_t> active_;  // job -> start ts
  int64_t jobs_passed_ = 0, jobs_failed_ = 0, jobs_skipped_ = 0;
  // Retries: failed attempts that were rerun; jobs that failed, then
  // passed (FLAKY); cancelled before they started (a bail out).
  int64_t attempts_retried_ = 0, jobs_flaky_ = 0, jobs_cancelled_ = 0,
          jobs_timed_out_ = 0;
  bool scoreboard_ = false;
  std::unique_ptr<scoreboard::Board> board_;
  void BoardCounts(int64_t now_us);
  bool flaky_fails_ = false;
  std::vector<FinishedJob> flaky_;
  // Failed attempts whose retry has not started: if the run ends first
  // (a bail out, Ctrl-C), that failure is the job's last word.
  std::map<int64_t, FinishedJob> retry_pending_;
  std::string bail_reason_;
  int64_t asserts_total_ = 0, asserts_passed_ = 0, asserts_failed_ = 0,
          asserts_skipped_ = 0, asserts_todo_ = 0, asserts_todo_passed_ = 0;
  int64_t harness_errors_ = 0;
  bool bailed_ = false;
  std::vector<FinishedJob> finished_;
  std::vector<FinishedJob> failed_;
  int exit_code_ = 4;
  bool fatal_ = false;  // the stream cannot be read (schema)
  std::string fatal_message_;
  bool summarised_ = false;
};

}  // namespace weft::overlord
