#include "overlord.h"

#include <fmt/format.h>
#include <weft/common/util.h>

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

void Overlord::BoardCounts(Run& r, int64_t now_us) {
  if (r.board)
    r.board->Counts(r.planned, r.counts.P, r.counts.F, r.counts.A, r.counts.R, r.counts.T,
                   r.jobs_flaky, r.jobs_cancelled, r.jobs_timed_out, now_us);
}

void Overlord::OverlordError(Run& r, std::string_view message) {
  ++r.harness_errors;
  if (!r.id.empty()) out_->set_run(r.id);
  JsonWriter& w = out_->Begin("error");
  Key(w, "source");
  String(w, "weft-overlord");
  WriteText(w, "message", message);
  out_->End();
}

namespace {

// The envelope's run id, read from the text: "run" is the second key, and
// a run id needs no escapes (one that has them is read as it is written).
std::string_view RunIdOf(std::string_view line) {
  constexpr std::string_view kKey = ",\"run\":\"";
  size_t at = line.find(kKey);
  if (at == std::string_view::npos) return {};
  at += kKey.size();
  size_t end = line.find('"', at);
  if (end == std::string_view::npos) return {};
  return line.substr(at, end - at);
}

constexpr size_t kEndedKept = 64;

}  // namespace

Overlord::Run& Overlord::RunOf(std::string_view id) {
  auto it = runs_.find(id);
  if (it == runs_.end()) {
    auto run = std::make_unique<Run>();
    run->id = std::string(id);
    it = runs_.emplace(run->id, std::move(run)).first;
  }
  return *it->second;
}

// A run that has ended: its state goes (a long stream of runs keeps no
// memory of them but their ids, for stragglers).
void Overlord::Forget(Run& r) {
  if (last_ == &r) last_ = nullptr;
  if (ended_.size() >= kEndedKept) ended_.erase(ended_.begin());
  ended_.push_back(r.id);
  runs_.erase(r.id);
}

void Overlord::Line(std::string_view line) {
  ++line_no_;
  if (fatal_) return;
  if (line.empty() || line == "\r") return;
  if (!events::LooksLikeEvent(line)) {
    // Not an event: passing it on would break every reader downstream.
    OverlordError(last_ ? *last_ : RunOf(out_->run()),
                  fmt::format("input line {} is not a weft event ({} bytes "
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

  std::string_view id = RunIdOf(line);
  Run* r = last_;
  if (!r || r->id != id) {
    auto it = runs_.find(id);
    if (it != runs_.end()) {
      r = it->second.get();
    } else if (type != "run.start" &&
               std::find(ended_.begin(), ended_.end(), id) != ended_.end()) {
      out_->AppendRaw(line);  // a straggler of a run that has ended
      return;
    } else {
      r = &RunOf(id);
    }
  }
  last_ = r;
  RunLine(*r, type, event, line);
}

void Overlord::RunLine(Run& r, std::string_view type, events::Event event,
                       std::string_view line) {
  if (type == "run.start") {
    if (r.in_run || r.summarised || r.counts_dirty) {
      // The same run started again: what was known of it goes.
      std::string id = std::move(r.id);
      r = Run{};
      r.id = std::move(id);
    }
    saw_hello_ = true;
    r.in_run = true;
    if (fields_.Load(event)) {
      r.planned = fields_.Int("jobs").value_or(0);
      r.run_start_ts = fields_.Int("ts").value_or(0);
      r.flaky_fails = fields_.Bool("flaky_fails").value_or(false);
      if (scoreboard_) {
        std::string err;
        r.board = scoreboard::Board::Create(
            fields_.Str("run").value_or(""), fields_.Str("host").value_or(""),
            fields_.Str("cwd").value_or(""), r.run_start_ts, &err);
        if (!r.board) {
          // No live view; the run itself is not harmed.
          JsonWriter& w = out_->Begin("warning");
          Key(w, "source");
          String(w, "weft-overlord");
          WriteText(w, "message", err);
          out_->End();
        }
      }
    }
    r.counts.T = r.planned;
    r.counts_dirty = true;
    out_->AppendRaw(line);
    SendCounts(r, events::NowMicros(), true);
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
    Summary(r, ts, interrupted, runner_error, false);
    out_->AppendRaw(line);
    Forget(r);  // the run is over: its scoreboard goes
    return;
  }

  out_->AppendRaw(line);
  if (type == "job.start") {
    if (fields_.Load(event)) {
      int64_t job = fields_.Int("job").value_or(-1);
      r.active[job] = fields_.Int("ts").value_or(0);
      if (r.board) r.board->JobStarted(job, fields_.Str("name").value_or("?"), r.active[job]);
      if (fields_.Int("attempt").value_or(1) > 1) {
        r.retry_pending.erase(job);
        if (r.counts.R > 0) --r.counts.R;  // the retry it was waiting for
      } else if (r.counts.T > 0) {
        --r.counts.T;
      }
      ++r.counts.A;
      r.counts_dirty = true;
      BoardCounts(r, r.active[job]);
    }
  } else if (type == "job.end") {
    if (!fields_.Load(event)) return;
    FinishedJob f;
    f.job = fields_.Int("job").value_or(-1);
    auto verdict = fields_.Str("verdict").value_or("fail");
    bool pass = verdict == "pass", skip = verdict == "skip";
    if (auto name = fields_.Str("name")) f.name = std::string(*name);
    f.duration_us = fields_.Int("duration_us").value_or(0);
    if (r.board) r.board->JobEnded(f.job);
    if (fields_.Bool("retry").value_or(false)) {
      // Not the job's last word: it runs again. Its assertions are in the
      // log; the run's counts take the last attempt's.
      ++r.attempts_retried;
      fields_.StrArray("reasons", &f.reasons);
      r.retry_pending[f.job] = f;
      if (r.active.erase(f.job)) --r.counts.A;
      ++r.counts.R;
      r.counts_dirty = true;
      return;
    }
    bool flaky = (pass || skip) && fields_.Bool("flaky").value_or(false);
    if (fields_.Bool("timed_out").value_or(false)) ++r.jobs_timed_out;
    r.asserts_total += fields_.Int("counts", "run").value_or(0);
    r.asserts_passed += fields_.Int("counts", "passed").value_or(0);
    r.asserts_failed += fields_.Int("counts", "failed").value_or(0);
    r.asserts_skipped += fields_.Int("counts", "skipped").value_or(0);
    r.asserts_todo += fields_.Int("counts", "todo").value_or(0);
    r.asserts_todo_passed += fields_.Int("counts", "todo_passed").value_or(0);
    if (!pass && !skip) fields_.StrArray("reasons", &f.reasons);
    if (r.active.erase(f.job)) {
      --r.counts.A;
    } else if (r.counts.T > 0) {
      --r.counts.T;  // ended without a start (its auditor died early)
    }
    if (flaky) {
      ++r.jobs_flaky;
      f.reasons.push_back(fmt::format("flaky: failed, then passed on attempt {}",
                                      fields_.Int("attempt").value_or(2)));
      r.flaky.push_back(f);
    }
    if ((pass || skip) && !(flaky && r.flaky_fails)) {
      ++r.counts.P;
      ++(skip ? r.jobs_skipped : r.jobs_passed);
    } else {
      ++r.counts.F;
      ++r.jobs_failed;
      r.failed.push_back(f);
    }
    r.counts_dirty = true;
    BoardCounts(r, events::NowMicros());
    r.finished.push_back(std::move(f));
  } else if (type == "error") {
    ++r.harness_errors;
  } else if (type == "bail") {
    r.bailed = true;
  } else if (type == "run.bail") {
    r.bailed = true;
    if (fields_.Load(event)) r.bail_reason = std::string(fields_.Str("reason").value_or(""));
  } else if (type == "job.cancel") {
    // A queued retry that never starts: its failed attempt is the job's
    // last word (counted failed at the end), not a cancellation.
    if (fields_.Load(event) && r.retry_pending.count(fields_.Int("job").value_or(-1)))
      return;
    ++r.jobs_cancelled;
    if (r.counts.T > 0) --r.counts.T;
    r.counts_dirty = true;
  } else if (type == "run.queue") {
    if (fields_.Load(event)) {
      int64_t added = fields_.Int("added").value_or(0);
      r.planned += added;
      r.counts.T += added;
      r.counts_dirty = true;
    }
  }
}

int Overlord::PendingMs(int64_t now_us) const {
  int soonest = -1;
  for (const auto& [id, r] : runs_) {
    if (!r->counts_dirty) continue;
    int64_t wait = r->last_counts_us + kCountsIntervalUs - now_us;
    int ms = wait <= 0 ? 0 : static_cast<int>((wait + 999) / 1000);
    if (soonest < 0 || ms < soonest) soonest = ms;
  }
  return soonest;
}

void Overlord::MaybeCounts(int64_t now_us, bool force) {
  for (auto& [id, r] : runs_) SendCounts(*r, now_us, force);
}

void Overlord::SendCounts(Run& r, int64_t now_us, bool force) {
  if (!r.counts_dirty) return;
  if (!force && now_us - r.last_counts_us < kCountsIntervalUs) return;
  r.counts_dirty = false;
  if (r.counts == r.last_sent && r.last_counts_us != 0) return;
  r.last_counts_us = now_us;
  r.last_sent = r.counts;
  BoardCounts(r, now_us);
  if (!r.id.empty()) out_->set_run(r.id);
  JsonWriter& w = out_->Begin("counts", now_us);
  Key(w, "P");
  w.Int64(r.counts.P);
  Key(w, "F");
  w.Int64(r.counts.F);
  Key(w, "A");
  w.Int64(r.counts.A);
  Key(w, "R");
  w.Int64(r.counts.R);
  Key(w, "T");
  w.Int64(r.counts.T);
  out_->End();
}

void Overlord::Summary(Run& r, int64_t end_ts, bool interrupted, bool runner_error,
                       bool incomplete) {
  if (r.summarised) return;
  r.summarised = true;
  int64_t unfinished = static_cast<int64_t>(r.active.size());
  for (auto& [job, f] : r.retry_pending) {
    // Its retry never started: it failed.
    ++r.jobs_failed;
    ++r.counts.F;
    if (r.counts.R > 0) --r.counts.R;
    r.counts_dirty = true;
    r.failed.push_back(f);
    r.finished.push_back(std::move(f));
  }
  r.retry_pending.clear();
  int64_t cancelled = r.jobs_cancelled + r.counts.T;
  if (unfinished > 0)
    OverlordError(r, fmt::format("{} job(s) never finished", unfinished));
  SendCounts(r, events::NowMicros(), true);

  bool harness = r.harness_errors > 0 || runner_error || incomplete ||
                 unfinished > 0;
  int64_t ran = r.jobs_passed + r.jobs_failed + r.jobs_skipped;
  const char* verdict;
  int code;
  if (harness) {
    code = 3, verdict = "harness error";
  } else if (interrupted) {
    code = 130, verdict = "interrupted";
  } else if (r.jobs_failed > 0 || r.bailed) {
    code = 1, verdict = "fail";
  } else if (ran == 0) {
    code = 4, verdict = "no tests";
  } else {
    code = 0, verdict = "pass";
  }
  // Several runs in the stream (a repeat): the worst of them.
  exit_code_ = summaries_++ ? WorstExit(exit_code_, code) : code;

  if (!r.id.empty()) out_->set_run(r.id);
  JsonWriter& w = out_->Begin("summary");
  Key(w, "verdict");
  String(w, verdict);
  Key(w, "exit");
  w.Int(code);
  Key(w, "jobs");
  w.StartObject();
  Key(w, "planned");
  w.Int64(r.planned);
  Key(w, "passed");
  w.Int64(r.jobs_passed);
  Key(w, "failed");
  w.Int64(r.jobs_failed);
  Key(w, "skipped");
  w.Int64(r.jobs_skipped);
  Key(w, "cancelled");
  w.Int64(cancelled);
  Key(w, "unfinished");
  w.Int64(unfinished);
  Key(w, "flaky");
  w.Int64(r.jobs_flaky);
  Key(w, "retried");
  w.Int64(r.attempts_retried);
  Key(w, "timed_out");
  w.Int64(r.jobs_timed_out);
  w.EndObject();
  Key(w, "assertions");
  w.StartObject();
  Key(w, "total");
  w.Int64(r.asserts_total);
  Key(w, "passed");
  w.Int64(r.asserts_passed);
  Key(w, "failed");
  w.Int64(r.asserts_failed);
  Key(w, "skipped");
  w.Int64(r.asserts_skipped);
  Key(w, "todo");
  w.Int64(r.asserts_todo);
  Key(w, "todo_passed");
  w.Int64(r.asserts_todo_passed);
  w.EndObject();
  Key(w, "wall_us");
  w.Int64(r.run_start_ts > 0 ? end_ts - r.run_start_ts : 0);
  Key(w, "slowest");
  w.StartArray();
  std::vector<const FinishedJob*> by_time;
  for (const auto& f : r.finished) by_time.push_back(&f);
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
  for (const auto& f : r.failed) {
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
  for (const auto& f : r.flaky) {
    w.StartObject();
    Key(w, "job");
    w.Int64(f.job);
    Key(w, "name");
    String(w, f.name);
    w.EndObject();
  }
  w.EndArray();
  if (r.flaky_fails) {
    Key(w, "flaky_fails");
    w.Bool(true);
  }
  Key(w, "interrupted");
  w.Bool(interrupted);
  Key(w, "bailed");
  w.Bool(r.bailed);
  if (!r.bail_reason.empty()) WriteText(w, "bail_reason", r.bail_reason);
  Key(w, "harness_errors");
  w.Int64(r.harness_errors);
  out_->End();
}

void Overlord::End() {
  if (fatal_) return;
  if (!saw_hello_ && serve_ && line_no_ == 0) return;  // served no run
  if (!saw_hello_) {
    // Nothing at all came: whoever was upstream died before starting.
    Run& r = RunOf(out_->run());
    OverlordError(r, "the stream ended before it began (no hello event)");
    Summary(r, events::NowMicros(), false, false, true);
    return;
  }
  // A hello and nothing else is a run that never started.
  if (runs_.empty() && ended_.empty()) RunOf(out_->run());
  // Each run still open: its runner died before its run.end.
  std::vector<Run*> open;
  for (auto& [id, r] : runs_) open.push_back(r.get());
  for (Run* r : open) {
    OverlordError(*r,
                  "the stream ended before run.end: a process upstream "
                  "(weft-runner?) died");
    int64_t now = events::NowMicros();
    Summary(*r, now, false, false, true);
    JsonWriter& w = out_->Begin("run.end", now);
    Key(w, "incomplete");
    w.Bool(true);
    Key(w, "harness_error");
    w.Bool(true);
    out_->End();
    Forget(*r);
  }
}

}  // namespace weft::overlord
