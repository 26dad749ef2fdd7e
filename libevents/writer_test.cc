#include "weft/events/writer.h"

#include <doctest/doctest.h>
#include <simdjson.h>

#include <cstring>
#include <string>
#include <vector>

#include "weft/events/event.h"

using namespace weft::events;

TEST_CASE("the writer puts type first, then the envelope, one line each") {
  EventWriter w("run-1", 4);
  JsonWriter& j = w.Begin("assert", 42);
  Key(j, "ok");
  j.Bool(true);
  w.End();
  w.Begin("plan", 43).Key("count");
  j.Int(3);
  w.End();
  std::string batch(w.batch());
  CHECK(batch.substr(0, batch.find('\n')) ==
        R"({"type":"assert","run":"run-1","job":4,"seq":0,"ts":42,"ok":true})");
  CHECK(batch.substr(batch.find('\n') + 1) ==
        R"({"type":"plan","run":"run-1","job":4,"seq":1,"ts":43,"count":3})"
        "\n");
  CHECK(w.seq() == 2);
}

TEST_CASE("writer output parses with simdjson, strings escaped") {
  EventWriter w("r", -1);
  JsonWriter& j = w.Begin("output");
  WriteText(j, "text", std::string("quote\" back\\ nl\n tab\t nul\0 end", 31));
  w.End();
  std::string line(w.batch());
  REQUIRE(line.back() == '\n');
  line.pop_back();
  CHECK(line.find("\"job\"") == std::string::npos);
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  REQUIRE_FALSE(parser.parse(line).get(doc));
  std::string_view text;
  REQUIRE_FALSE(doc["text"].get(text));
  CHECK(text == std::string_view("quote\" back\\ nl\n tab\t nul\0 end", 31));
}

TEST_CASE("invalid UTF-8 is replaced for display and kept exactly in base64") {
  EventWriter w("r", 1);
  std::string raw("ok \xff\xfe caf\xc3\xa9 \xc3", 13);
  WriteText(w.Begin("output"), "text", raw);
  w.End();
  std::string line(w.batch());
  line.pop_back();
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  REQUIRE_FALSE(parser.parse(line).get(doc));
  std::string_view text, b64;
  REQUIRE_FALSE(doc["text"].get(text));
  CHECK(text == "ok \xEF\xBF\xBD\xEF\xBF\xBD caf\xc3\xa9 \xEF\xBF\xBD");
  REQUIRE_FALSE(doc["text_b64"].get(b64));
  std::string back;
  REQUIRE(Base64Decode(b64, &back));
  CHECK(back == raw);
}

TEST_CASE("base64 round-trips every length") {
  std::string s;
  for (int i = 0; i < 40; ++i) {
    std::string back;
    REQUIRE(Base64Decode(Base64Encode(s), &back));
    CHECK(back == s);
    s.push_back(static_cast<char>(i * 37));
  }
  std::string out;
  CHECK_FALSE(Base64Decode("abc", &out));
  CHECK_FALSE(Base64Decode("a=bc", &out));
}

TEST_CASE("hello names the schema version and the producer") {
  EventWriter w("r9", -1);
  w.Hello("weft-test");
  std::string line(w.batch());
  CHECK(line.rfind(R"({"type":"hello","run":"r9","seq":0,"ts":)", 0) == 0);
  CHECK(line.find(R"("schema":"1.0","producer":"weft-test")") !=
        std::string::npos);
}

TEST_CASE("ValidUtf8 agrees with simdjson on valid, invalid and edge sequences") {
  const char* cases[] = {"", "plain ascii that is longer than eight bytes",
                         "caf\xc3\xa9", "\xe2\x82\xac euro", "\xf0\x9f\x98\x80",
                         "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                         "abcdefgh\xff", "\xe2\x82", "ok\x80ok"};
  for (const char* c : cases) {
    CAPTURE(c);
    CHECK(ValidUtf8(c) == simdjson::validate_utf8(c, strlen(c)));
  }
}

TEST_CASE("keys: a name in our code, a text made at run time, one that needs escaping") {
  EventWriter w("r", -1);
  JsonWriter& j = w.Begin("x");
  Key(j, "duration_us");  // a literal: copied out whole
  j.Int(1);
  std::string made = "made_" + std::to_string(2);
  Key(j, made);  // run-time text without escapes: the same bytes
  j.Int(2);
  Key(j, std::string_view("quote\"and\\back"));  // escaped, not copied raw
  j.Int(3);
  const char* plain = "plain";
  Key(j, plain);
  j.Int(4);
  Key(j, "empty");
  String(j, std::string_view());  // no bytes, no pointer: ""
  w.End();
  std::string line(w.batch());
  CHECK(line.find(R"(,"duration_us":1,"made_2":2,"quote\"and\\back":3,"plain":4,"empty":""})"
                  "\n") != std::string::npos);
}

TEST_CASE("each event's envelope is right as types, jobs and runs change under it") {
  EventWriter w("run-a", 7);
  std::string long_run(300, 'r');
  struct Want {
    std::string type, run;
    int64_t job;  // -1: none
  };
  std::vector<Want> want;
  auto add = [&](std::string_view type, int64_t job_arg, Want expect) {
    JsonWriter& j = w.Begin(type, 100 + static_cast<int64_t>(want.size()), job_arg);
    Key(j, "n");
    j.Int64(static_cast<int64_t>(want.size()));
    w.End();
    want.push_back(std::move(expect));
  };
  add("assert", -2, {"assert", "run-a", 7});
  add("assert", -2, {"assert", "run-a", 7});
  add("plan", -2, {"plan", "run-a", 7});
  add("assert", 9, {"assert", "run-a", 9});  // another job for one event
  add("assert", -2, {"assert", "run-a", 7});
  add("job.end", -1, {"job.end", "run-a", -1});  // a run-level event
  add("odd \"type\"\n", -2, {"odd \"type\"\n", "run-a", 7});  // escaped
  w.set_run("quote\"d\\run");
  add("assert", -2, {"assert", "quote\"d\\run", 7});
  w.set_run(long_run);  // longer than the envelope's buffer
  add("assert", -2, {"assert", long_run, 7});
  add("assert", -2, {"assert", long_run, 7});
  w.set_run("");
  add("assert", -2, {"assert", "", 7});
  std::string all(w.batch());
  simdjson::dom::parser parser;
  size_t i = 0;
  for (size_t at = 0; at < all.size(); ++i) {
    size_t nl = all.find('\n', at);
    REQUIRE(nl != std::string::npos);
    std::string line = all.substr(at, nl - at);
    at = nl + 1;
    CAPTURE(line);
    REQUIRE(i < want.size());
    CHECK(line.rfind("{\"type\":", 0) == 0);  // type first
    simdjson::dom::element doc;
    REQUIRE_FALSE(parser.parse(line).get(doc));
    std::string_view type, run;
    int64_t job = -1, seq = -1, ts = -1, n = -1;
    REQUIRE_FALSE(doc["type"].get(type));
    CHECK(type == want[i].type);
    if (want[i].run.empty()) {
      CHECK(doc["run"].error() == simdjson::NO_SUCH_FIELD);
    } else {
      REQUIRE_FALSE(doc["run"].get(run));
      CHECK(run == want[i].run);
    }
    if (want[i].job < 0) {
      CHECK(doc["job"].error() == simdjson::NO_SUCH_FIELD);
    } else {
      REQUIRE_FALSE(doc["job"].get(job));
      CHECK(job == want[i].job);
    }
    REQUIRE_FALSE(doc["seq"].get(seq));
    CHECK(seq == static_cast<int64_t>(i));
    REQUIRE_FALSE(doc["ts"].get(ts));
    CHECK(ts == 100 + static_cast<int64_t>(i));
    REQUIRE_FALSE(doc["n"].get(n));
    CHECK(n == static_cast<int64_t>(i));
  }
  CHECK(i == want.size());
}
