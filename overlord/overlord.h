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
  // A persistent runner's stream: it may end without any run.
  void set_serve(bool serve) { serve_ = serve; }
  // Upstream ended. Completes every run whose run.end never came.
  void End();
  // Emits a counts event for each run whose counts changed, if "now"
  // allows (at most one per run per 100 ms); "force" emits any pending
  // change regardless.
  void MaybeCounts(int64_t now_us, bool force);
  // Milliseconds until a pending counts event may be written, or -1.
  int PendingMs(int64_t now_us) const;

  // The exit code of the stream: the worst of its runs' (4 before any).
  int exit_code() const { return exit_code_; }
  bool fatal() const { return fatal_; }
  const std::string& fatal_message() const { return fatal_message_; }
  // Runs open now (started, not yet ended).
  size_t open_runs() const { return runs_.size(); }

 private:
  // Everything known about one run. A stream may hold several (a
  // persistent runner's), even interleaved: each line goes to its run's
  // state by the envelope's "run".
  struct Run {
    std::string id;
    bool in_run = false;
    int64_t run_start_ts = 0;
    int64_t planned = 0;
    Counts counts;
    Counts last_sent;
    int64_t last_counts_us = 0;
    bool counts_dirty = false;
    std::map<int64_t, int64_t> active;  // job -> start ts
    int64_t jobs_passed = 0, jobs_failed = 0, jobs_skipped = 0;
    // Retries: failed attempts that were rerun; jobs that failed, then
    // passed (FLAKY); cancelled before they started (a bail out).
    int64_t attempts_retried = 0, jobs_flaky = 0, jobs_cancelled = 0,
            jobs_timed_out = 0;
    std::unique_ptr<scoreboard::Board> board;
    bool flaky_fails = false;
    std::vector<FinishedJob> flaky;
    // Failed attempts whose retry has not started: if the run ends first
    // (a bail out, Ctrl-C), that failure is the job's last word.
    std::map<int64_t, FinishedJob> retry_pending;
    std::string bail_reason;
    int64_t asserts_total = 0, asserts_passed = 0, asserts_failed = 0,
            asserts_skipped = 0, asserts_todo = 0, asserts_todo_passed = 0;
    int64_t harness_errors = 0;
    bool bailed = false;
    std::vector<FinishedJob> finished;
    std::vector<FinishedJob> failed;
    bool summarised = false;
  };

  // The state of the run "id" (made when first seen).
  Run& RunOf(std::string_view id);
  void RunLine(Run& r, std::string_view type, events::Event event, std::string_view line);
  void Summary(Run& r, int64_t end_ts, bool interrupted, bool runner_error,
               bool incomplete);
  void SendCounts(Run& r, int64_t now_us, bool force);
  void OverlordError(Run& r, std::string_view message);
  void BoardCounts(Run& r, int64_t now_us);
  void Forget(Run& r);

  events::EventWriter* out_;
  events::Fields fields_;
  uint64_t line_no_ = 0;
  bool saw_hello_ = false;
  bool scoreboard_ = false;
  bool serve_ = false;
  std::map<std::string, std::unique_ptr<Run>, std::less<>> runs_;
  Run* last_ = nullptr;  // the run of the last line (most lines follow it)
  // Runs that ended lately: a straggler line of theirs is passed on, and
  // does not open the run again.
  std::vector<std::string> ended_;
  int exit_code_ = 4;
  int64_t summaries_ = 0;
  bool fatal_ = false;  // the stream cannot be read (schema)
  std::string fatal_message_;
};

}  // namespace weft::overlord
