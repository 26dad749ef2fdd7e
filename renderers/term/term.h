// weft-render-term's logic: the event stream as a person reads it.
#pragma once

#include <weft/events/event.h>

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace weft::term {

struct Options {
  bool verbose = false;   // every job and every assertion
  bool live = false;      // a terminal: redraw a status line in place
  bool color = false;     // 256-colour escapes
};

// Consumes event lines; appends what to show to an output buffer that the
// caller writes out (Take()). Subscribes to the types below and skips every
// other line after reading only its type.
class Renderer {
 public:
  explicit Renderer(Options o) : o_(o) {}
  Renderer(const Renderer&) = delete;
  Renderer& operator=(const Renderer&) = delete;

  void Line(std::string_view line);
  // Called at least every TickMs(): redraws the status line when due.
  void Tick(int64_t now_us);
  int TickMs() const { return o_.live ? 250 : -1; }
  // End of input: the final words (or a complaint if no summary came).
  void Finish();

  std::string Take() {
    std::string out;
    out.swap(out_);
    return out;
  }
  // The exit code the stream's summary names, 3 when there was none, 2
  // when the stream's schema is unknown.
  int exit_code() const { return exit_code_; }
  const std::string& fatal() const { return fatal_; }
  // The run's run.end has been seen (a followed log can stop).
  bool ended() const { return ended_; }
  // Lines parsed so far (every other line was skipped by its type or by
  // the fast paths, unparsed).
  uint64_t decoded() const { return decoded_; }

 private:
  struct JobView {
    std::string name;
    std::vector<std::string> detail;   // failed assertions and their diag
    std::deque<std::string> tail;      // last output events, raw + padding
    size_t failed_shown = 0;
    size_t failed_hidden = 0;
    size_t attached = 0;               // lines attached to the last failure
    bool attach = false;
  };

  JobView& View(int64_t job);
  static std::optional<int64_t> JobOf(std::string_view line);
  void Print(std::string_view text);  // clears and later redraws status
  void PrintFailure(const JobView& v, bool rerun = true);
  void Tail(JobView& v, std::string_view line);
  events::Fields tail_f_;
  uint64_t decoded_ = 0;
  bool Load(const events::Event& e, std::string* err = nullptr) {
    ++decoded_;
    return f_.Load(e, err);
  }  // decodes the tail when a failure is shown
  void StatusLine(int64_t now_us, bool force);
  std::string Paint(std::string_view text, int colour) const;
  void Attach(JobView& v, std::string line);

  Options o_;
  events::Fields f_;
  std::string out_;
  std::map<int64_t, JobView> jobs_;
  std::vector<std::pair<std::string, std::vector<std::string>>> failed_;
  std::vector<std::pair<int64_t, std::string>> durations_;
  std::vector<std::string> flaky_;
  int64_t shuffle_seed_ = -1;
  struct Pending {
    std::string name;
    std::vector<std::string> reasons;
    int64_t duration_us = 0;
  };
  std::map<int64_t, Pending> retry_pending_;  // failed, retry not started  // run.start's seed when the order is shuffled
  int64_t P_ = 0, F_ = 0, A_ = 0, R_ = 0, T_ = 0;
  int64_t run_start_us_ = 0;
  int64_t last_draw_us_ = 0;
  bool status_shown_ = false;
  bool saw_summary_ = false;
  bool ended_ = false;  // run.end seen (and no run.start since)
  int64_t not_events_ = 0;
  bool finished_ = false;
  int exit_code_ = 3;
  std::string fatal_;
  std::string run_;
};

// "1.23s", "45ms", "2m03s".
std::string FormatDuration(int64_t us);

}  // namespace weft::term
