// weft merge: several logs (shards, or runs of one suite) as one run.
#include "merge.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <unistd.h>
#include <weft/common/util.h>
#include <weft/events/event.h>
#include <weft/events/input.h>
#include <weft/events/writer.h>

#include <algorithm>

#include "overlord.h"

namespace weft::cli {

int Merge(const std::vector<std::string>& logs, const std::string& output,
          const std::vector<std::string>& argv) {
  constexpr const char* kProg = "weft";
  events::EventWriter ours(NewRunId(), -1);  // our own events
  events::EventWriter out("", -1);           // what the overlord passes on
  overlord::Overlord overlord(&out);
  const std::string& run = ours.run();
  auto feed = [&](std::string_view text) {
    // Whole lines, each with padding after it for the overlord's parser.
    size_t start = 0;
    while (start < text.size()) {
      size_t nl = text.find('\n', start);
      std::string line(text.substr(start, nl - start));
      line.append(events::kPadding, '\0');
      overlord.Line(std::string_view(line.data(), line.size() - events::kPadding));
      start = nl + 1;
    }
  };

  // First pass: the runs' extent, for the merged run.start and run.end.
  int64_t first_ts = -1, last_ts = 0, planned = 0, slots = 0;
  bool interrupted = false, harness_error = false;
  std::string host, cwd;
  std::vector<std::string> sources;
  events::Fields f;
  for (const auto& log : logs) {
    events::InputOptions in;
    in.path = log;
    events::LineReader reader;
    events::PumpHandlers h;
    h.line = [&](std::string_view line) {
      std::string_view type = events::TypeOf(line);
      if (type != "run.start" && type != "run.end") return;
      if (!f.Load(events::Event(line))) return;
      int64_t ts = f.Int("ts").value_or(0);
      if (type == "run.start") {
        if (first_ts < 0 || ts < first_ts) first_ts = ts;
        planned += f.Int("jobs").value_or(0);
        slots += f.Int("slots").value_or(0);
        sources.emplace_back(f.Str("run").value_or(""));
        // The first run's place; shards on other hosts keep theirs in
        // their own logs.
        if (host.empty()) host = std::string(f.Str("host").value_or(""));
        if (cwd.empty()) cwd = std::string(f.Str("cwd").value_or(""));
      } else {
        interrupted = interrupted || f.Bool("interrupted").value_or(false);
        harness_error = harness_error || f.Bool("harness_error").value_or(false);
      }
      last_ts = std::max(last_ts, ts);
    };
    std::string err;
    if (events::ReadInput(in, reader, h, nullptr, &err) == events::PumpEnd::kReadError) {
      Error(kProg, err);
      return 2;
    }
  }
  int fd = STDOUT_FILENO;
  AtomicFile file;
  if (!output.empty()) {
    if (!file.Open(output)) {
      Error(kProg, fmt::format("cannot write {}: {}", output, strerror(errno)));
      return 3;
    }
    fd = file.fd();
  }
  bool ok = true;
  // What is merged goes out as it comes: memory stays small.
  auto drain = [&](bool all) {
    if (!ok || (!all && out.size() < (1u << 20))) return;
    if (!out.Flush(fd)) ok = false;
  };
  ours.Hello("weft merge");
  {
    events::JsonWriter& w = ours.Begin("run.start", first_ts < 0 ? events::NowMicros() : first_ts);
    events::Key(w, "argv");
    w.StartArray();
    for (const auto& a : argv) events::TextValue(w, a);
    w.EndArray();
    events::WriteText(w, "cwd", cwd);
    events::WriteText(w, "host", host);
    events::Key(w, "jobs");
    w.Int64(planned);
    events::Key(w, "slots");
    w.Int64(slots);
    events::Key(w, "merged");
    w.StartArray();
    for (const auto& s : sources) events::TextValue(w, s);
    w.EndArray();
    ours.End();
  }
  feed(ours.batch());
  ours.Clear();

  // Second pass: every job's events, renumbered after the logs before.
  int64_t offset = 0, done = 0;
  for (const auto& log : logs) {
    events::InputOptions in;
    in.path = log;
    events::LineReader reader;
    events::PumpHandlers h;
    int64_t most = 0;
    h.line = [&](std::string_view line) {
      std::string_view type = events::TypeOf(line);
      // The run's frame and what the overlord makes are made anew.
      if (type.empty() || type == "hello" || type == "run.start" || type == "run.end" ||
          type == "summary" || type == "counts")
        return;
      rapidjson::Document doc = events::Event(line).dirty();
      if (doc.HasParseError() || !doc.IsObject()) return;
      if (auto j = doc.FindMember("job"); j != doc.MemberEnd() && j->value.IsInt64()) {
        int64_t job = j->value.GetInt64();
        most = std::max(most, job);
        j->value.SetInt64(job + offset);
        if (type == "job.end" && !(doc.HasMember("retry") && doc["retry"].IsTrue())) ++done;
      }
      if (auto r = doc.FindMember("run"); r != doc.MemberEnd())
        r->value.SetString(run.data(), static_cast<rapidjson::SizeType>(run.size()),
                           doc.GetAllocator());
      rapidjson::StringBuffer buf;
      rapidjson::Writer<rapidjson::StringBuffer> w(buf);
      doc.Accept(w);
      std::string text(buf.GetString(), buf.GetSize());
      text.push_back('\n');
      feed(text);
      drain(false);
    };
    std::string err;
    events::ReadInput(in, reader, h, nullptr, &err);
    offset += most;
  }
  {
    events::JsonWriter& w = ours.Begin("run.end", last_ts > 0 ? last_ts : events::NowMicros());
    events::Key(w, "jobs_done");
    w.Int64(done);
    events::Key(w, "cancelled");
    w.Int64(0);
    events::Key(w, "interrupted");
    w.Bool(interrupted);
    events::Key(w, "harness_error");
    w.Bool(harness_error);
    events::Key(w, "duration_us");
    w.Int64(first_ts >= 0 ? last_ts - first_ts : 0);
    ours.End();
  }
  feed(ours.batch());
  overlord.End();

  drain(true);
  if (!output.empty()) ok = ok && file.Commit();
  if (!ok) {
    Error(kProg, fmt::format("cannot write {}: {}", output.empty() ? "stdout" : output,
                             strerror(errno)));
    return 3;
  }
  return 0;
}

}  // namespace weft::cli
