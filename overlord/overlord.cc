#include "overlord.h"

#include <fmt/format.h>

#include <algorithm>

namespace weft::overlord {

using events::JsonWriter;
using events::Key;
using events::String;
using events::WriteText;

namespace {
constexpr int64_t kCountsIntervalUs = 100 * 1000;  // at most ~10 per second
constexpr size_t kSlowest = 5;
}  // namespace

Overlord::~Overlord() = default;

void Overlord::BoardCounts(int64_t now_us) {
  if (board_)
    board_->Counts(planned_, counts_.P, counts_.F, counts_.A, counts_.R, counts_.T,
                   jobs_flaky_, jobs_cancelled_, jobs_timed_out_, now_us);
}

void Overlord::OverlordError(std::string_view message) {
  ++harness_errors_;
  JsonWriter& w = out_->Begin("error");
  Key(w, "source");
  String(w, "weft-overlord");
  WriteText(w, "message", message);
  out_->End();
}

void Overlord::Reset() {
  in_run_ = false;
  run_start_ts_ = planned_ = 0;
  counts_ = last_sent_ = Counts{};
  last_counts_us_ = 0;
  counts_dirty_ = false;
  active_.clear();
  jobs_passed_ = jobs_failed_ = jobs_skipped_ = 0;
  attempts_retried_ = jobs_flaky_ = jobs_cancelled_ = jobs_timed_out_ = 0;
  board_.reset();
  flaky_fails_ = false;
  flaky_.clear();
  retry_pending_.clear();
  bail_reason_.clear();
  asserts_total_ = asserts_passed_ = asserts_failed_ = asserts_skipped_ =
      asserts_todo_ = asserts_todo_passed_ = 0;
  harness_errors_ = 0;
  bailed_ = false;
  finished_.clear();
  failed_.clear();
  exit_code_ = 4;
  summarised_ = false;
}

void Overlord::Line(std::string_view line) {
  ++line_no_;
  if (fatal_) return;
  if (line.empty() || line == "\r") return;
  if (!events::LooksLikeEvent(line)) {
    // Not an event: passing it on would break every reader downstream.
    OverlordError(fmt::format("input line {} is not a weft event ({} bytes "
                              "dropped): {:.120}",
                              line_no_, line.size(), line));
    return;
  }
  std::string_view type = events::TypeOf(line);
  events::Event event(line);

  if (type == "hello") {
    std::string err;
    if (!fields_.Load(event, &err) || !events::CheckHello(fields_, &err)) {
      fatal_ = true;
      fatal_message_ = err.empty() ? "unreadable hello event" : err;
      return;
    }
    if (auto run = fields_.Str("run")) out_->set_run(std::string(*run));
    saw_hello_ = true;
    out_->AppendRaw(line);
    return;
  }

  if (type == "run.start") {
    Reset();  // a new run: forget the last one
    saw_hello_ = true;
    in_run_ = true;
    if (fields_.Load(event)) {
      if (auto run = fields_.Str("run")) out_->set_run(std::string(*run));
      planned_ = fields_.Int("jobs").value_or(0);
      run_start_ts_ = fields_.Int("ts").value_or(0);
      flaky_fails_ = fields_.Bool("flaky_fails").value_or(false);
      if (scoreboard_) {
        std::string err;
        board_ = scoreboard::Board::Create(
            fields_.Str("run").value_or(""), fields_.Str("host").value_or(""),
            fields_.Str("cwd").value_or(""), run_start_ts_, &err);
        if (!board_) {
          // No live view; the run itself is not harmed.
          JsonWriter& w = out_->Begin("warning");
          Key(w, "source");
          String(w, "weft-overlord");
          WriteText(w, "message", err);
          out_->End();
        }
      }
    }
    counts_.T = planned_;
    counts_dirty_ = true;
    out_->AppendRaw(line);
    MaybeCounts(events::NowMicros(), true);
    return;
  }

  if (type == "run.end") {
    bool interrupted = false, runner_error = false;
    int64_t ts = events::NowMicros();
    if (fields_.Load(event)) {
      interrupted = fields_.Bool("interrupted").value_or(false);
      runner_error = fields_.Bool("harness_error").value_or(false);
      ts = fields_.Int("ts").value_or(ts);
    }
    Summary(ts, interrupted, runner_error, false);
    out_->AppendRaw(line);
    in_run_ = false;
    board_.reset();  // the run is over: its scoreboard goes
    return;
  }

  out_->AppendRaw(line);
  if (type == "job.start") {
    if (fields_.Load(event)) {
      int64_t job = fields_.Int("job").value_or(-1);
      active_[job] = fields_.Int("ts").value_or(0);
      if (board_) board_->JobStarted(job, fields_.Str("name").value_or("?"), active_[job]);
      if (fields_.Int("attempt").value_or(1) > 1) {
        retry_pending_.erase(job);
        if (counts_.R > 0) --counts_.R;  // the retry it was waiting for
      } else if (counts_.T > 0) {
        --counts_.T;
      }
      ++counts_.A;
      counts_dirty_ = true;
      BoardCounts(active_[job]);
    }
  } else if (type == "job.end") {
    if (!fields_.Load(event)) return;
    FinishedJob f;
    f.job = fields_.Int("job").value_or(-1);
    auto verdict = fields_.Str("verdict").value_or("fail");
    bool pass = verdict == "pass", skip = verdict == "skip";
    if (auto name = fields_.Str("name")) f.name = std::string(*name);
    f.duration_us = fields_.Int("duration_us").value_or(0);
    if (board_) board_->JobEnded(f.job);
    if (fields_.Bool("retry").value_or(false)) {
      // Not the job's last word: it runs again. Its assertions are in the
      // log; the run's counts take the last attempt's.
      ++attempts_retried_;
      fields_.StrArray("reasons", &f.reasons);
      retry_pending_[f.job] = f;
      if (active_.erase(f.job)) --counts_.A;
      ++counts_.R;
      counts_dirty_ = true;
      return;
    }
    bool flaky = (pass || skip) && fields_.Bool("flaky").value_or(false);
    if (fields_.Bool("timed_out").value_or(false)) ++jobs_timed_out_;
    asserts_total_ += fields_.Int("counts", "run").value_or(0);
    asserts_passed_ += fields_.Int("counts", "passed").value_or(0);
    asserts_failed_ += fields_.Int("counts", "failed").value_or(0);
    asserts_skipped_ += fields_.Int("counts", "skipped").value_or(0);
    asserts_todo_ += fields_.Int("counts", "todo").value_or(0);
    asserts_todo_passed_ += fields_.Int("counts", "todo_passed").value_or(0);
    if (!pass && !skip) fields_.StrArray("reasons", &f.reasons);
    if (active_.erase(f.job)) {
      --counts_.A;
    } else if (counts_.T > 0) {
      --counts_.T;  // ended without a start (its auditor died early)
    }
    if (flaky) {
      ++jobs_flaky_;
      f.reasons.push_back(fmt::format("flaky: failed, then passed on attempt {}",
                                      fields_.Int("attempt").value_or(2)));
      flaky_.push_back(f);
    }
    if ((pass || skip) && !(flaky && flaky_fails_)) {
      ++counts_.P;
      ++(skip ? jobs_skipped_ : jobs_passed_);
    } else {
      ++counts_.F;
      ++jobs_failed_;
      failed_.push_back(f);
    }
    counts_dirty_ = true;
    BoardCounts(events::NowMicros());
    finished_.push_back(std::move(f));
  } else if (type == "error") {
    ++harness_errors_;
  } else if (type == "bail") {
    bailed_ = true;
  } else if (type == "run.bail") {
    bailed_ = true;
    if (fields_.Load(event)) bail_reason_ = std::string(fields_.Str("reason").value_or(""));
  } else if (type == "job.cancel") {
    // A queued retry that never starts: its failed attempt is the job's
    // last word (counted failed at the end), not a cancellation.
    if (fields_.Load(event) && retry_pending_.count(fields_.Int("job").value_or(-1)))
      return;
    ++jobs_cancelled_;
    if (counts_.T > 0) --counts_.T;
    counts_dirty_ = true;
  } else if (type == "run.queue") {
    if (fields_.Load(event)) {
      int64_t added = fields_.Int("added").value_or(0);
      planned_ += added;
      counts_.T += added;
      counts_dirty_ = true;
    }
  }
}

int Overlord::PendingMs(int64_t now_us) const {
  if (!counts_dirty_) return -1;
  int64_t wait = last_counts_us_ + kCountsIntervalUs - now_us;
  return wait <= 0 ? 0 : static_cast<int>((wait + 999) / 1000);
}

void Overlord::MaybeCounts(int64_t now_us, bool force) {
  if (!counts_dirty_) return;
  if (!force && now_us - last_counts_us_ < kCountsIntervalUs) return;
  counts_dirty_ = false;
  if (counts_ == last_sent_ && last_counts_us_ != 0) return;
  last_counts_us_ = now_us;
  last_sent_ = counts_;
  BoardCounts(now_us);
  JsonWriter& w = out_->Begin("counts", now_us);
  Key(w, "P");
  w.Int64(counts_.P);
  Key(w, "F");
  w.Int64(counts_.F);
  Key(w, "A");
  w.Int64(counts_.A);
  Key(w, "R");
  w.Int64(counts_.R);
  Key(w, "T");
  w.Int64(counts_.T);
  out_->End();
}

void Overlord::Summary(int64_t end_ts, bool interrupted, bool runner_error,
                       bool incomplete) {
  if (summarised_) return;
  summarised_ = true;
  int64_t unfinished = static_cast<int64_t>(active_.size());
  for (auto& [job, f] : retry_pending_) {
    // Its retry never started: it failed.
    ++jobs_failed_;
    ++counts_.F;
    if (counts_.R > 0) --counts_.R;
    counts_dirty_ = true;
    failed_.push_back(f);
    finished_.push_back(std::move(f));
  }
  retry_pending_.clear();
  int64_t cancelled = jobs_cancelled_ + counts_.T;
  if (unfinished > 0)
    OverlordError(fmt::format("{} job(s) never finished", unfinished));
  MaybeCounts(events::NowMicros(), true);

  bool harness = harness_errors_ > 0 || runner_error || incomplete ||
                 unfinished > 0;
  int64_t ran = jobs_passed_ + jobs_failed_ + jobs_skipped_;
  const char* verdict;
  if (harness) {
    exit_code_ = 3, verdict = "harness error";
  } else if (interrupted) {
    exit_code_ = 130, verdict = "interrupted";
  } else if (jobs_failed_ > 0 || bailed_) {
    exit_code_ = 1, verdict = "fail";
  } else if (ran == 0) {
    exit_code_ = 4, verdict = "no tests";
  } else {
    exit_code_ = 0, verdict = "pass";
  }

  JsonWriter& w = out_->Begin("summary");
  Key(w, "verdict");
  String(w, verdict);
  Key(w, "exit");
  w.Int(exit_code_);
  Key(w, "jobs");
  w.StartObject();
  Key(w, "planned");
  w.Int64(planned_);
  Key(w, "passed");
  w.Int64(jobs_passed_);
  Key(w, "failed");
  w.Int64(jobs_failed_);
  Key(w, "skipped");
  w.Int64(jobs_skipped_);
  Key(w, "cancelled");
  w.Int64(cancelled);
  Key(w, "unfinished");
  w.Int64(unfinished);
  Key(w, "flaky");
  w.Int64(jobs_flaky_);
  Key(w, "retried");
  w.Int64(attempts_retried_);
  Key(w, "timed_out");
  w.Int64(jobs_timed_out_);
  w.EndObject();
  Key(w, "assertions");
  w.StartObject();
  Key(w, "total");
  w.Int64(asserts_total_);
  Key(w, "passed");
  w.Int64(asserts_passed_);
  Key(w, "failed");
  w.Int64(asserts_failed_);
  Key(w, "skipped");
  w.Int64(asserts_skipped_);
  Key(w, "todo");
  w.Int64(asserts_todo_);
  Key(w, "todo_passed");
  w.Int64(asserts_todo_passed_);
  w.EndObject();
  Key(w, "wall_us");
  w.Int64(run_start_ts_ > 0 ? end_ts - run_start_ts_ : 0);
  Key(w, "slowest");
  w.StartArray();
  std::vector<const FinishedJob*> by_time;
  for (const auto& f : finished_) by_time.push_back(&f);
  size_t n = std::min(kSlowest, by_time.size());
  std::partial_sort(by_time.begin(), by_time.begin() + static_cast<long>(n),
                    by_time.end(), [](const FinishedJob* a, const FinishedJob* b) {
                      return a->duration_us > b->duration_us;
                    });
  for (size_t i = 0; i < n; ++i) {
    w.StartObject();
    Key(w, "job");
    w.Int64(by_time[i]->job);
    Key(w, "name");
    String(w, by_time[i]->name);
    Key(w, "duration_us");
    w.Int64(by_time[i]->duration_us);
    w.EndObject();
  }
  w.EndArray();
  Key(w, "failed");
  w.StartArray();
  for (const auto& f : failed_) {
    w.StartObject();
    Key(w, "job");
    w.Int64(f.job);
    Key(w, "name");
    String(w, f.name);
    Key(w, "reasons");
    w.StartArray();
    for (const auto& r : f.reasons) String(w, r);
    w.EndArray();
    w.EndObject();
  }
  w.EndArray();
  Key(w, "flaky");
  w.StartArray();
  for (const auto& f : flaky_) {
    w.StartObject();
    Key(w, "job");
    w.Int64(f.job);
    Key(w, "name");
    String(w, f.name);
    w.EndObject();
  }
  w.EndArray();
  if (flaky_fails_) {
    Key(w, "flaky_fails");
    w.Bool(true);
  }
  Key(w, "interrupted");
  w.Bool(interrupted);
  Key(w, "bailed");
  w.Bool(bailed_);
  if (!bail_reason_.empty()) WriteText(w, "bail_reason", bail_reason_);
  Key(w, "harness_errors");
  w.Int64(harness_errors_);
  out_->End();
}

void Overlord::End() {
  if (fatal_) return;
  if (!saw_hello_) {
    // Nothing at all came: whoever was upstream died before starting.
    OverlordError("the stream ended before it began (no hello event)");
    Summary(events::NowMicros(), false, false, true);
    return;
  }
  if (in_run_ || !summarised_) {
    OverlordError(
        "the stream ended before run.end: a process upstream "
        "(weft-runner?) died");
    int64_t now = events::NowMicros();
    Summary(now, false, false, true);
    JsonWriter& w = out_->Begin("run.end", now);
    Key(w, "incomplete");
    w.Bool(true);
    Key(w, "harness_error");
    w.Bool(true);
    out_->End();
    in_run_ = false;
  }
}

}  // namespace weft::overlord
