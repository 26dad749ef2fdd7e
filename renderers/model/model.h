// weft::render::Model — the runs of a stream, gathered from the event types
// a report needs (JUnit, TAP, JSON, GitHub, HTML), for renderers that write
// their report at the end. Lines of other types are skipped by their type
// prefix, never parsed.
#pragma once

#include <weft/events/event.h>

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace weft::render {

struct Assertion {
  // What only some assertions have (a directive, a failure's details), out
  // of line: a JUnit report of 660,000 passing ones holds 64 bytes each
  // (224 when these were inline).
  struct Detail {
    std::string directive, reason;
    std::string yaml;               // the decoded YAML block, as JSON text
    std::string file;               // where, when the test said (YAML "at"/
    int64_t line = 0;               // native "file"/"line"); else empty / 0
    std::vector<std::string> diag;  // comments and output right after it
  };
  int64_t number = 0;  // 0: none (a native assertion without one)
  int64_t elapsed_us = -1;
  int64_t depth = 0;
  bool ok = false;
  std::string description;
  std::unique_ptr<Detail> detail;  // null: all of it empty

  const std::string& directive() const { return detail ? detail->directive : Empty().directive; }
  const std::string& reason() const { return detail ? detail->reason : Empty().reason; }
  const std::string& yaml() const { return detail ? detail->yaml : Empty().yaml; }
  const std::string& file() const { return detail ? detail->file : Empty().file; }
  int64_t line() const { return detail ? detail->line : 0; }
  const std::vector<std::string>& diag() const { return detail ? detail->diag : Empty().diag; }
  // The details, to be written (made on first use).
  Detail& More() {
    if (!detail) detail = std::make_unique<Detail>();
    return *detail;
  }

 private:
  static const Detail& Empty() {
    static const Detail none;
    return none;
  }
};

struct OutputLine {
  bool is_stderr = false;
  std::string text;
};

struct Job {
  int64_t id = 0;
  std::string name;
  std::vector<std::string> argv;
  int64_t start_ts = 0, end_ts = 0, duration_us = 0;
  bool started = false, ended = false, cancelled = false;
  std::string verdict;  // pass, fail, skip; empty until job.end
  std::vector<std::string> reasons;
  std::optional<int64_t> exit_code;
  std::string signal, timeout, skip_reason, bail_reason, cancel_reason;
  int64_t attempt = 1, attempts = 1;
  bool flaky = false;
  // Earlier attempts that failed: their number and reasons.
  std::vector<std::pair<int64_t, std::vector<std::string>>> failed_attempts;
  std::optional<int64_t> planned;
  int64_t run = 0, passed = 0, failed = 0, skipped = 0, todo = 0;
  std::vector<Assertion> asserts;  // of the last attempt, every depth
  std::vector<OutputLine> output;  // the first kOutputBytes of it
  size_t output_bytes = 0;
  uint64_t output_dropped = 0;     // lines not kept
};

struct Run {
  std::string id;
  int64_t start_ts = 0, end_ts = 0;
  std::string host, cwd;
  int64_t slots = 0;
  std::map<int64_t, Job> jobs;
  std::vector<int64_t> order;  // job ids, in the order they first appeared
  // (reports list jobs by id: the order the runner queued them)
  bool ended = false, interrupted = false;
  std::string bailed;
  // From the overlord's summary, when there is one.
  bool summarised = false;
  std::string verdict;
  int64_t exit = -1, wall_us = 0;
};

class Model {
 public:
  // Each job's output is kept up to this many bytes (the log has it all).
  static constexpr size_t kOutputBytes = 256 * 1024;

  // "passing_output": keep the output of jobs that pass too (JUnit shows
  // it); otherwise a job's output is let go when it ends well.
  // "passing_asserts": keep every assertion (JUnit and TAP list them);
  // otherwise only failed ones (not ok, not todo), the others not even
  // decoded when the text tells (events::PassingTapAssert).
  explicit Model(bool passing_output = false, bool passing_asserts = true);
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  // One line of the stream.
  void Line(std::string_view line);
  // Whether it decodes lines of this type at all.
  static bool Wants(std::string_view type);

  const std::vector<Run>& runs() const { return runs_; }
  // The current run has ended (its run.end was seen).
  bool ended() const { return !runs_.empty() && runs_.back().ended; }
  uint64_t decoded() const { return decoded_; }  // lines parsed
  const std::string& fatal() const { return fatal_; }

 private:
  Run& CurrentRun();
  Job& JobOf(int64_t id);

  events::Fields f_{events::Fields::Lookup::kIndexed};
  std::vector<Run> runs_;
  std::map<int64_t, int64_t> attach_;  // job -> index of the assert taking diag
  uint64_t decoded_ = 0;
  std::string fatal_;
  bool passing_output_ = false;
  bool passing_asserts_ = true;
};

// Renderer helpers.
std::string FormatSeconds(int64_t us);  // "1.234" (seconds, 3 decimals)

}  // namespace weft::render
