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

// What each kind of text is painted with: SGR parameters, "38;5;N" for a
// 256-colour index or "38;2;R;G;B" for a 24-bit colour.
struct Colours {
  std::string pass = "38;5;46";      // P, PASS
  std::string fail = "38;5;196";     // F, FAIL, BAIL, HARNESS ERROR
  std::string active = "38;5;33";    // A
  std::string retry = "38;5;87";     // R
  std::string todo = "38;5;181";     // T
  std::string warn = "38;5;220";     // SKIP, WARN, RETRY, NO TESTS, INTERRUPTED
  std::string flaky = "38;5;220";    // FLAKY and flaky tests' names
  std::string timeout = "38;5;201";  // TIMEOUT
};

// Reads "role=colour,role=colour" (roles as in Colours; a colour is 0-255
// or #rrggbb) into *c; false with *err naming the bad part.
bool ParseColours(std::string_view spec, Colours* c, std::string* err);
// "38;5;N" for "N" (0-255), "38;2;R;G;B" for "#rrggbb"; empty if neither.
std::string ColourSgr(std::string_view value);

struct Options {
  bool verbose = false;   // every job and every assertion
  bool live = false;      // a terminal: redraw a status line in place
  bool color = false;     // colour escapes
  Colours colours;
  int width = 0;          // terminal columns (0: unknown, no limit)
  bool keys = false;      // keys are read (v, f, q, ?): hinted on the status line
  bool control = false;   // q can ask the run to stop (a control channel)
  bool follow = false;    // following a log: without control, q ends that
};

// What a key asks of the renderer's caller.
enum class KeyAction { kNone, kStopRun, kStopFollowing };

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
  // A key pressed on the terminal: v toggles verbose, f shows the failures
  // so far, q asks the run to stop (again: kill its tests at once), ? or h
  // lists the keys.
  KeyAction Key(char c, int64_t now_us);
  void SetWidth(int columns) { o_.width = columns; }

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
    bool timed_out = false;
    int64_t start_ts = 0;              // job.start's
  };

  JobView& View(int64_t job);
  void Print(std::string_view text);  // clears and later redraws status
  void PrintFailure(const JobView& v, bool rerun = true);
  std::string FailedList() const;
  void Tail(JobView& v, std::string_view line);
  events::Fields tail_f_;
  uint64_t decoded_ = 0;
  bool Load(const events::Event& e, std::string* err = nullptr) {
    ++decoded_;
    return f_.Load(e, err);
  }  // decodes the tail when a failure is shown
  void StatusLine(int64_t now_us, bool force);
  std::string Paint(std::string_view text, const std::string& sgr) const;
  // The stream's clock: the last decoded event's ts, advanced by the wall
  // time since it arrived (live, that is now; replayed, the log's time).
  int64_t StreamNow(int64_t now_us) const;
  void Stamp(int64_t ts);
  int64_t last_ts_ = 0, last_ts_at_ = 0;
  int stops_asked_ = 0;
  void Attach(JobView& v, std::string line);

  Options o_;
  events::Fields f_;
  std::string out_;
  std::map<int64_t, JobView> jobs_;
  struct Failed {
    std::string name;
    std::vector<std::string> reasons;
    bool timed_out = false;
  };
  std::vector<Failed> failed_;
  std::vector<std::pair<int64_t, std::string>> durations_;
  std::vector<std::string> flaky_;
  int64_t shuffle_seed_ = -1;  // run.start's seed when the order is shuffled
  struct Pending {
    std::string name;
    std::vector<std::string> reasons;
    int64_t duration_us = 0;
    bool timed_out = false;
  };
  std::map<int64_t, Pending> retry_pending_;  // failed, retry not started
  int64_t P_ = 0, F_ = 0, A_ = 0, R_ = 0, T_ = 0;
  int64_t run_start_us_ = 0;
  int64_t last_draw_us_ = 0;
  bool status_shown_ = false;
  bool saw_summary_ = false;
  int64_t summaries_ = 0;
  std::string repeat_text_;  // repeat.end's table, shown after the summary
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
