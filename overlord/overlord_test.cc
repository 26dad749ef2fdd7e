#include "overlord.h"

#include <doctest/doctest.h>
#include <weft/events/line_reader.h>

#include <string>
#include <vector>

using weft::events::EventWriter;
using weft::overlord::Overlord;

namespace {

// Feeds lines through a LineReader (for the padding Fields needs) and
// returns what the overlord wrote.
struct Harness {
  EventWriter out{"", -1};
  Overlord o{&out};
  weft::events::LineReader reader;

  std::string Feed(const std::string& lines) {
    reader.Append(lines.data(), lines.size());
    std::string_view line;
    while (reader.Next(&line)) o.Line(line);
    std::string got(out.batch());
    out.Clear();
    return got;
  }
  std::string End() {
    o.End();
    std::string got(out.batch());
    out.Clear();
    return got;
  }
};

const std::string kHello =
    R"({"type":"hello","run":"r","seq":0,"ts":1,"schema":"1.0"})" "\n";
std::string Start(int jobs) {
  return R"({"type":"run.start","run":"r","seq":1,"ts":10,"jobs":)" +
         std::to_string(jobs) + "}\n";
}
std::string JobStart(int job) {
  return R"({"type":"job.start","run":"r","job":)" + std::to_string(job) +
         R"(,"seq":0,"ts":20,"name":"t)" + std::to_string(job) + "\"}\n";
}
std::string JobEnd(int job, const char* verdict) {
  return R"({"type":"job.end","run":"r","job":)" + std::to_string(job) +
         R"(,"seq":9,"ts":30,"name":"t)" + std::to_string(job) +
         R"(","verdict":")" + verdict +
         R"(","reasons":["why"],"counts":{"run":2,"passed":1,"failed":1,"skipped":0,"todo":0,"todo_passed":0},"duration_us":7})" "\n";
}
const std::string kEnd =
    R"({"type":"run.end","run":"r","seq":5,"ts":1000010,"interrupted":false,"harness_error":false})" "\n";

}  // namespace

TEST_CASE("every input line passes through unchanged, in order") {
  Harness h;
  std::string in = kHello + Start(1) + JobStart(1) + JobEnd(1, "pass");
  std::string out = h.Feed(in);
  // Our own counts event comes right after run.start; the rest is the input.
  size_t at = 0;
  for (const std::string& line : {kHello, Start(1), JobStart(1), JobEnd(1, "pass")}) {
    size_t found = out.find(line, at);
    REQUIRE(found != std::string::npos);
    at = found + line.size();
  }
}

TEST_CASE("exit codes: pass 0, a failure 1, nothing ran 4, interrupted 130, harness 3") {
  {
    Harness h;
    h.Feed(kHello + Start(1) + JobStart(1) + JobEnd(1, "pass") + kEnd);
    CHECK(h.o.exit_code() == 0);
  }
  {
    Harness h;
    h.Feed(kHello + Start(2) + JobStart(1) + JobEnd(1, "pass") + JobStart(2) +
           JobEnd(2, "fail") + kEnd);
    CHECK(h.o.exit_code() == 1);
  }
  {
    Harness h;
    h.Feed(kHello + Start(0) + kEnd);
    CHECK(h.o.exit_code() == 4);
  }
  {
    Harness h;
    h.Feed(kHello + Start(3) + JobStart(1) + JobEnd(1, "fail") +
           R"({"type":"run.end","run":"r","seq":5,"ts":99,"interrupted":true,"cancelled":2})" "\n");
    CHECK(h.o.exit_code() == 130);
  }
  {
    Harness h;
    h.Feed(kHello + Start(1) + JobStart(1) +
           R"({"type":"error","run":"r","seq":3,"ts":40,"source":"weft-runner","message":"x"})" "\n" +
           JobEnd(1, "pass") + kEnd);
    CHECK(h.o.exit_code() == 3);
  }
}

TEST_CASE("a skipped file counts as passed for the run") {
  Harness h;
  std::string out = h.Feed(kHello + Start(1) + JobStart(1) + JobEnd(1, "skip") + kEnd);
  CHECK(h.o.exit_code() == 0);
  CHECK(out.find(R"("jobs":{"planned":1,"passed":0,"failed":0,"skipped":1,"cancelled":0,"unfinished":0,"flaky":0,"retried":0,"timed_out":0})") !=
        std::string::npos);
}

TEST_CASE("counts and summary come before run.end, which stays last") {
  Harness h;
  std::string out = h.Feed(kHello + Start(1) + JobStart(1) + JobEnd(1, "pass") + kEnd);
  size_t summary = out.find(R"({"type":"summary")");
  size_t end = out.find(R"({"type":"run.end")");
  REQUIRE(summary != std::string::npos);
  REQUIRE(end != std::string::npos);
  CHECK(summary < end);
  CHECK(out.substr(end) == kEnd);
  // The last counts before the summary are the final state.
  size_t last_counts = out.rfind(R"({"type":"counts")", summary);
  REQUIRE(last_counts != std::string::npos);
  CHECK(out.find(R"("P":1,"F":0,"A":0,"R":0,"T":0)", last_counts) < summary);
}

TEST_CASE("counts are rate-limited to one per 100 ms, and the last is never lost") {
  Harness h;
  h.Feed(kHello + Start(50));
  int64_t now = weft::events::NowMicros();
  h.o.MaybeCounts(now, true);
  h.out.Clear();
  std::string all;
  for (int j = 1; j <= 50; ++j) {
    all += h.Feed(JobStart(j) + JobEnd(j, "pass"));
    h.o.MaybeCounts(now + j * 1000, false);  // 1 ms apart: 50 ms in all
    all += std::string(h.out.batch());
    h.out.Clear();
  }
  size_t n = 0;
  for (size_t at = all.find(R"("type":"counts")"); at != std::string::npos;
       at = all.find(R"("type":"counts")", at + 1))
    ++n;
  CHECK(n == 0);  // within 100 ms of the last one
  // Due 100 ms after the last counts (sent at run.start, a moment before
  // "now": on a slow machine, a millisecond or more).
  int pending = h.o.PendingMs(now + 50 * 1000);
  CHECK(pending <= 50);
  CHECK(pending >= 40);
  h.o.MaybeCounts(now + 100 * 1000, false);
  CHECK(std::string(h.out.batch()).find(R"("P":50,"F":0,"A":0,"R":0,"T":0)") !=
        std::string::npos);
}

TEST_CASE("a stream cut mid-run ends with an error, a summary and a run.end") {
  Harness h;
  h.Feed(kHello + Start(2) + JobStart(1));
  std::string out = h.End();
  CHECK(h.o.exit_code() == 3);
  CHECK(out.find(R"("message":"1 job(s) never finished")") != std::string::npos);
  CHECK(out.find(R"("verdict":"harness error","exit":3)") != std::string::npos);
  CHECK(out.find(R"({"type":"run.end","run":"r")") != std::string::npos);
}

namespace {
// The same events, of another run.
std::string Of(std::string lines, const std::string& run) {
  for (size_t at = 0; (at = lines.find(R"("run":"r")", at)) != std::string::npos;)
    lines.replace(at, 9, R"("run":")" + run + "\""), at += run.size() + 8;
  return lines;
}
// The lines of "out" of one type.
std::vector<std::string> OfType(const std::string& out, const std::string& type) {
  std::vector<std::string> found;
  std::string key = R"({"type":")" + type + "\"";
  for (size_t at = 0, nl; at < out.size(); at = nl + 1) {
    nl = out.find('\n', at);
    if (nl == std::string::npos) nl = out.size();
    if (out.compare(at, key.size(), key) == 0) found.push_back(out.substr(at, nl - at));
  }
  return found;
}
}  // namespace

TEST_CASE("two runs interleaved in one stream are kept apart by their run id") {
  Harness h;
  std::string out = h.Feed(kHello);
  out += h.Feed(Of(Start(2), "A") + Of(Start(1), "B"));
  out += h.Feed(Of(JobStart(1), "A") + Of(JobStart(1), "B") + Of(JobStart(2), "A"));
  out += h.Feed(Of(JobEnd(1, "fail"), "B") + Of(JobEnd(1, "pass"), "A"));
  CHECK(h.o.open_runs() == 2);
  out += h.Feed(Of(kEnd, "B"));  // B ends while A still runs
  CHECK(h.o.open_runs() == 1);
  CHECK(h.o.exit_code() == 1);
  out += h.Feed(Of(JobEnd(2, "pass"), "A") + Of(kEnd, "A"));
  CHECK(h.o.exit_code() == 1);  // the stream's: the worst of its runs' codes
  CHECK(h.o.open_runs() == 0);
  // A straggler of an ended run passes through and opens nothing.
  out += h.Feed(Of(JobEnd(2, "pass"), "B"));
  CHECK(h.o.open_runs() == 0);
  out += h.End();

  auto summaries = OfType(out, "summary");
  REQUIRE(summaries.size() == 2);
  CHECK(summaries[0].find(R"("run":"B")") != std::string::npos);
  CHECK(summaries[0].find(R"("verdict":"fail","exit":1,"jobs":{"planned":1,"passed":0,"failed":1,)") !=
        std::string::npos);
  CHECK(summaries[1].find(R"("run":"A")") != std::string::npos);
  CHECK(summaries[1].find(R"("verdict":"pass","exit":0,"jobs":{"planned":2,"passed":2,"failed":0,)") !=
        std::string::npos);
  // Each run's counts are its own: B's last has F:1; A's never does.
  for (const auto& c : OfType(out, "counts")) {
    if (c.find(R"("run":"A")") != std::string::npos)
      CHECK(c.find(R"("F":0)") != std::string::npos);
    else
      CHECK(c.find(R"("run":"B")") != std::string::npos);
  }
  CHECK(OfType(out, "error").empty());
}

TEST_CASE("a stream that ends with two runs open completes each, as a harness error") {
  Harness h;
  h.Feed(kHello + Of(Start(1), "A") + Of(Start(1), "B") + Of(JobStart(1), "A"));
  std::string out = h.End();
  auto ends = OfType(out, "run.end");
  REQUIRE(ends.size() == 2);
  CHECK(ends[0].find(R"("run":"A")") != std::string::npos);
  CHECK(ends[1].find(R"("run":"B")") != std::string::npos);
  CHECK(OfType(out, "summary").size() == 2);
  CHECK(h.o.exit_code() == 3);
}
