#include "model.h"

#include <fmt/format.h>
#include <rapidjson/document.h>

#include <algorithm>

namespace weft::render {

namespace {

constexpr size_t kDiagLines = 40;  // kept per failed assertion

// Where a failed assertion was, when its YAML block says: "at: {file, line}"
// (Test::More style diagnostics) or top-level "file" and "line".
void LocationFromYaml(std::string_view yaml, std::string* file, int64_t* line) {
  rapidjson::Document doc;
  doc.Parse(yaml.data(), yaml.size());
  if (doc.HasParseError() || !doc.IsObject()) return;
  const rapidjson::Value* where = &doc;
  if (auto at = doc.FindMember("at"); at != doc.MemberEnd() && at->value.IsObject())
    where = &at->value;
  auto f = where->FindMember("file");
  auto l = where->FindMember("line");
  if (f == where->MemberEnd() || !f->value.IsString()) return;
  *file = f->value.GetString();
  if (l != where->MemberEnd()) {
    if (l->value.IsInt64()) *line = l->value.GetInt64();
    else if (l->value.IsString()) *line = std::atoll(l->value.GetString());
  }
}

}  // namespace

std::string FormatSeconds(int64_t us) {
  if (us < 0) us = 0;
  return fmt::format("{}.{:03}", us / 1000000, (us / 1000) % 1000);
}

Model::Model(bool passing_output, bool passing_asserts)
    : passing_output_(passing_output), passing_asserts_(passing_asserts) {}

bool Model::Wants(std::string_view type) {
  return type == "run.start" || type == "run.end" || type == "run.bail" ||
         type == "summary" || type == "job.start" || type == "job.end" ||
         type == "job.cancel" || type == "assert" || type == "plan" ||
         type == "output" || type == "comment" || type == "diag" ||
         type == "timeout" || type == "hello";
}

Run& Model::CurrentRun() {
  if (runs_.empty()) runs_.emplace_back();
  return runs_.back();
}

Job& Model::JobOf(int64_t id) {
  Run& run = CurrentRun();
  auto [it, added] = run.jobs.try_emplace(id);
  if (added) {
    it->second.id = id;
    run.order.push_back(id);
  }
  return it->second;
}

void Model::Line(std::string_view line) {
  if (!fatal_.empty() || line.empty()) return;
  std::string_view type = events::TypeOf(line);
  if (!Wants(type)) return;
  if (!passing_asserts_ && type == "assert" && events::PassingTapAssert(line)) {
    // Not listed: only its end of the job's run of diagnostics matters.
    if (auto id = events::JobIdOf(line)) attach_.erase(*id);
    return;
  }
  events::Event e(line);
  if (!f_.Load(e)) return;
  ++decoded_;
  if (type == "hello") {
    std::string err;
    if (!events::CheckHello(f_, &err)) fatal_ = err;
    return;
  }
  if (type == "run.start") {
    // A new run in the stream (a persistent runner serves many).
    Run& last = CurrentRun();
    if (!last.id.empty() || !last.jobs.empty()) runs_.emplace_back();
    Run& run = runs_.back();
    run.id = std::string(f_.Str("run").value_or(""));
    run.start_ts = f_.Int("ts").value_or(0);
    run.host = std::string(f_.Str("host").value_or(""));
    run.cwd = std::string(f_.Str("cwd").value_or(""));
    run.slots = f_.Int("slots").value_or(0);
    attach_.clear();
    return;
  }
  if (type == "run.end") {
    Run& run = CurrentRun();
    run.ended = true;
    run.end_ts = f_.Int("ts").value_or(0);
    run.interrupted = f_.Bool("interrupted").value_or(false);
    if (auto b = f_.Str("bailed")) run.bailed = std::string(*b);
    return;
  }
  if (type == "run.bail") {
    CurrentRun().bailed = std::string(f_.Str("reason").value_or(""));
    return;
  }
  if (type == "summary") {
    Run& run = CurrentRun();
    run.summarised = true;
    run.verdict = std::string(f_.Str("verdict").value_or(""));
    run.exit = f_.Int("exit").value_or(-1);
    run.wall_us = f_.Int("wall_us").value_or(0);
    return;
  }
  int64_t id = f_.Int("job").value_or(-1);
  if (id < 0) return;
  Job& job = JobOf(id);
  if (type == "job.start") {
    int64_t attempt = f_.Int("attempt").value_or(1);
    if (attempt > 1 && job.ended) {
      // A retry: the failed attempt's reasons stay, the rest starts over.
      job.failed_attempts.emplace_back(job.attempt, job.reasons);
      Job fresh;
      fresh.id = job.id;
      fresh.failed_attempts = std::move(job.failed_attempts);
      job = std::move(fresh);
    }
    job.started = true;
    job.attempt = attempt;
    job.attempts = f_.Int("attempts").value_or(attempt);
    job.start_ts = f_.Int("ts").value_or(0);
    job.name = std::string(f_.Str("name").value_or(job.name));
    f_.StrArray("argv", &job.argv);
    attach_.erase(id);
  } else if (type == "job.end") {
    job.ended = true;
    job.end_ts = f_.Int("ts").value_or(0);
    if (auto n = f_.Str("name")) job.name = std::string(*n);
    job.verdict = std::string(f_.Str("verdict").value_or("fail"));
    f_.StrArray("reasons", &job.reasons);
    job.exit_code = f_.Int("exit", "code");
    job.signal = std::string(f_.Str("exit", "signal").value_or(""));
    // (In the order the fields are written: each look goes on from the
    // last, where one further back goes round the whole event.)
    job.planned = f_.Int("counts", "planned");
    job.run = f_.Int("counts", "run").value_or(0);
    job.passed = f_.Int("counts", "passed").value_or(0);
    job.failed = f_.Int("counts", "failed").value_or(0);
    job.skipped = f_.Int("counts", "skipped").value_or(0);
    job.todo = f_.Int("counts", "todo").value_or(0);
    job.skip_reason = std::string(f_.Str("skip_reason").value_or(""));
    job.bail_reason = std::string(f_.Str("bail_reason").value_or(""));
    job.timeout = std::string(f_.Str("timeout").value_or(""));
    job.attempt = f_.Int("attempt").value_or(job.attempt);
    job.attempts = f_.Int("attempts").value_or(job.attempts);
    job.flaky = f_.Bool("flaky").value_or(false);
    job.duration_us = f_.Int("duration_us").value_or(0);
    attach_.erase(id);
    if (job.verdict != "fail" && !passing_output_) {
      std::vector<OutputLine>().swap(job.output);
      job.output_bytes = 0;
    }
  } else if (type == "job.cancel") {
    job.cancelled = true;
    job.name = std::string(f_.Str("name").value_or(job.name));
    job.cancel_reason = std::string(f_.Str("reason").value_or(""));
  } else if (type == "assert") {
    Assertion a;
    a.number = f_.Int("number").value_or(0);
    a.ok = f_.Bool("ok").value_or(false);
    a.description = std::string(f_.Str("description").value_or(""));
    if (auto d = f_.Str("directive"); d && !d->empty()) a.More().directive = std::string(*d);
    if (auto r = f_.Str("reason"); r && !r->empty()) a.More().reason = std::string(*r);
    a.depth = f_.Int("depth").value_or(0);
    a.elapsed_us = f_.Int("elapsed_us").value_or(-1);
    bool failed = !a.ok && a.directive() != "todo";
    if (failed) {
      if (auto y = f_.Raw("yaml")) {
        Assertion::Detail& more = a.More();
        more.yaml = std::string(*y);
        LocationFromYaml(more.yaml, &more.file, &more.line);
      }
      if (auto file = f_.Str("file")) {
        Assertion::Detail& more = a.More();
        more.file = std::string(*file);
        more.line = f_.Int("line").value_or(0);
        if (!more.line) more.line = std::atoll(std::string(f_.Str("line").value_or("0")).c_str());
      }
    }
    if (failed || passing_asserts_) job.asserts.push_back(std::move(a));
    if (failed)
      attach_[id] = static_cast<int64_t>(job.asserts.size()) - 1;
    else
      attach_.erase(id);
  } else if (type == "plan") {
    if (f_.Int("depth").value_or(0) == 0) job.planned = f_.Int("count");
  } else if (type == "timeout") {
    job.timeout = std::string(f_.Str("kind").value_or(""));
  } else {  // output, comment, diag
    std::string text;
    bool is_stderr = false;
    if (type == "output") {
      is_stderr = f_.Str("stream").value_or("") == "stderr";
      text = std::string(f_.Str("text").value_or(""));
    } else if (type == "comment") {
      text = "# " + std::string(f_.Str("text").value_or(""));
    } else {
      text = "# " + std::string(f_.Str("message").value_or(""));
    }
    if (auto it = attach_.find(id); it != attach_.end()) {
      auto& diag = job.asserts[static_cast<size_t>(it->second)].More().diag;
      if (diag.size() < kDiagLines) diag.push_back(text);
    }
    if (type == "output" || type == "comment") {
      // The first kOutputBytes; from the first line that does not fit on,
      // nothing more (the rest is in the log).
      if (job.output_dropped == 0 && job.output_bytes + text.size() <= kOutputBytes) {
        job.output_bytes += text.size() + 1;
        job.output.push_back({is_stderr, std::move(text)});
      } else {
        ++job.output_dropped;
      }
    }
  }
}

}  // namespace weft::render
