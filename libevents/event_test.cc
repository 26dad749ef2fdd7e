#include "weft/events/event.h"

#include <doctest/doctest.h>

#include <string>

#include "weft/events/line_reader.h"
#include "weft/events/writer.h"

using namespace weft::events;

namespace {
// Feeds one line through a LineReader so it carries the padding Fields needs.
struct Padded {
  LineReader reader;
  std::string_view line;
  explicit Padded(std::string_view text) {
    reader.Append(text.data(), text.size());
    reader.Append("\n", 1);
    REQUIRE(reader.Next(&line));
  }
};
}  // namespace

TEST_CASE("type() reads the type of every event type without parsing") {
  for (const char* t :
       {"hello", "run.start", "job.start", "plan", "assert", "comment",
        "output", "bail", "parse_error", "job.end", "counts", "summary",
        "run.end", "error"}) {
    std::string line = std::string("{\"type\":\"") + t + "\",\"seq\":1}";
    CHECK(Event(line).type() == t);
  }
}

TEST_CASE("type() of a line that is not a weft event is empty") {
  CHECK(TypeOf("").empty());
  CHECK(TypeOf("ok 1").empty());
  CHECK(TypeOf("{\"seq\":1,\"type\":\"x\"}").empty());
  CHECK(TypeOf("{\"type\":\"unterminated").empty());
  CHECK(TypeOf("{\"type\":\"a\\\"b\"}").empty());
  CHECK_FALSE(LooksLikeEvent("{\"type\":\"x\",\"a\":1"));
  CHECK(LooksLikeEvent("{\"type\":\"x\",\"a\":1}"));
}

TEST_CASE("fields are decoded on demand, in any order, nested too") {
  Padded p(
      R"({"type":"job.end","run":"r1","job":7,"seq":3,"ts":12,"verdict":"fail","exit":{"code":1,"signal":"SIGSEGV"},"ok":false,"reasons":["a","b\n"]})");
  Fields f;
  REQUIRE(f.Load(Event(p.line)));
  CHECK(f.Str("verdict") == "fail");
  CHECK(f.Int("job") == 7);
  CHECK(f.Int("exit", "code") == 1);
  CHECK(f.Str("exit", "signal") == "SIGSEGV");
  CHECK(f.Bool("ok") == false);
  std::vector<std::string> reasons;
  CHECK(f.StrArray("reasons", &reasons));
  CHECK(reasons == std::vector<std::string>{"a", "b\n"});
  CHECK_FALSE(f.Int("missing").has_value());
  CHECK_FALSE(f.Str("job").has_value());  // wrong type is absent, not a crash
  CHECK(f.Raw("exit") == R"({"code":1,"signal":"SIGSEGV"})");
}

TEST_CASE("Load reports a line that is not JSON") {
  Padded p("{\"type\":\"x\", nope}");
  Fields f;
  std::string err;
  // On-Demand validates as it goes: a bad field is found when read.
  bool loaded = f.Load(Event(p.line), &err);
  CHECK((!loaded || !f.Int("nope").has_value()));
  Padded q("[1,2]");
  CHECK_FALSE(f.Load(Event(q.line), &err));
  CHECK_FALSE(err.empty());
}

TEST_CASE("dirty() gives a mutable copy that re-serialises with type first") {
  Event e(R"({"type":"assert","seq":1,"ok":true,"description":"x"})");
  rapidjson::Document d = e.dirty();
  REQUIRE_FALSE(d.HasParseError());
  d["ok"].SetBool(false);
  d.AddMember("extra", 5, d.GetAllocator());
  CHECK(Serialize(d) ==
        R"({"type":"assert","seq":1,"ok":false,"description":"x","extra":5})");
}

TEST_CASE("a hello of another major schema version is refused with a message") {
  Fields f;
  Padded good(R"({"type":"hello","seq":0,"ts":1,"schema":"1.7"})");
  REQUIRE(f.Load(Event(good.line)));
  std::string err;
  CHECK(CheckHello(f, &err));
  Padded bad(R"({"type":"hello","seq":0,"ts":1,"schema":"2.0"})");
  REQUIRE(f.Load(Event(bad.line)));
  CHECK_FALSE(CheckHello(f, &err));
  CHECK(err.find("schema 2.0") != std::string::npos);
  CHECK(err.find("schema 1.0") != std::string::npos);
}

TEST_CASE("an array of objects reads as a table of string columns") {
  Padded p(R"({"type":"timeout","last_lines":[{"stream":"stdout","text":"a"},{"text":"b","stream":"stderr"},{"stream":"x"}]})");
  Fields f;
  REQUIRE(f.Load(Event(p.line)));
  std::vector<std::vector<std::string>> rows;
  REQUIRE(f.StrTable("last_lines", {"stream", "text"}, &rows));
  CHECK(rows == std::vector<std::vector<std::string>>{
                    {"stdout", "a"}, {"stderr", "b"}, {"x", ""}});
  CHECK_FALSE(f.StrTable("type", {"a"}, &rows));
}
