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

TEST_CASE("indexed fields read as walked ones: absent keys, objects in turn, strings kept") {
  Padded p(
      R"({"type":"job.end","job":7,"name":"t/a.t","exit":{"code":1,"signal":"SIGSEGV"},"counts":{"planned":3,"run":2,"passed":1},"duration_us":9})");
  for (auto lookup : {Fields::Lookup::kWalk, Fields::Lookup::kIndexed}) {
    CAPTURE(static_cast<int>(lookup));
    Fields f(lookup);
    REQUIRE(f.Load(Event(p.line)));
    auto name = f.Str("name");
    CHECK(f.Int("duration_us") == 9);
    CHECK_FALSE(f.Int("attempt").has_value());
    CHECK(f.Int("counts", "planned") == 3);
    CHECK(f.Int("exit", "code") == 1);  // another object, then back
    CHECK(f.Int("counts", "passed") == 1);
    CHECK(f.Int("counts", "run") == 2);  // further back in the same one
    CHECK_FALSE(f.Int("counts", "todo").has_value());
    CHECK(f.Str("exit", "signal") == "SIGSEGV");
    CHECK_FALSE(f.Str("nope", "x").has_value());
    CHECK_FALSE(f.Int("name", "x").has_value());  // not an object
    CHECK(f.Int("job") == 7);
    CHECK(name == "t/a.t");  // still valid after all that
    // The next event: nothing of the last one is left over.
    Padded q(R"({"type":"job.end","job":8,"counts":{"run":5}})");
    REQUIRE(f.Load(Event(q.line)));
    CHECK_FALSE(f.Int("duration_us").has_value());
    CHECK(f.Int("counts", "run") == 5);
    CHECK_FALSE(f.Int("counts", "planned").has_value());
    CHECK_FALSE(f.Int("", "run").has_value());  // "" is a name like another
    CHECK(f.Int("job") == 8);
  }
  // A malformed event reads the same either way, and reading on past
  // where it breaks is no crash (On-Demand checks what it reads, not what
  // it skips: the first two give "a").
  for (const char* text : {R"({"type":"x","a":1,"b":[1,2,},"c":3})",
                           R"({"type":"x","a":1,"b" 2,"c":3})", R"({"type":"x","a":1,)",
                           R"({"type":"x","a":1,"b":"\u12"})", R"({"type":"x","b":{"c":[}}})"}) {
    CAPTURE(text);
    Padded bad(text);
    Fields walk, indexed(Fields::Lookup::kIndexed);
    REQUIRE(walk.Load(Event(bad.line)));
    REQUIRE(indexed.Load(Event(bad.line)));
    for (Fields* f : {&walk, &indexed}) {
      std::vector<std::string> v;
      std::vector<std::vector<std::string>> rows;
      f->Int("b", "c");
      f->Str("b");
      f->StrArray("b", &v);
      f->StrMap("b", &v);
      f->StrTable("b", {"c"}, &rows);
      f->Raw("b");
      f->Int("c");
      f->Str("type");
    }
    Fields walk2, indexed2(Fields::Lookup::kIndexed);
    REQUIRE(walk2.Load(Event(bad.line)));
    REQUIRE(indexed2.Load(Event(bad.line)));
    CHECK(indexed2.Int("a") == walk2.Int("a"));
    CHECK(indexed2.Int("c") == walk2.Int("c"));
    CHECK(indexed2.Str("type") == walk2.Str("type"));
  }
  Padded first(R"({"type":"x","a":1,"b" 2,"c":3})");
  Fields f(Fields::Lookup::kIndexed);
  REQUIRE(f.Load(Event(first.line)));
  CHECK(f.Int("a") == 1);
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
