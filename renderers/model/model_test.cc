#include "model.h"

#include <doctest/doctest.h>
#include <weft/events/event.h>

#include <string>
#include <vector>

using weft::render::Model;

namespace {
struct Feed {
  std::vector<std::string> store;
  void Line(Model& m, std::string line) {
    line.append(weft::events::kPadding, '\0');
    store.push_back(std::move(line));
    const std::string& s = store.back();
    m.Line(std::string_view(s.data(), s.size() - weft::events::kPadding));
  }
};
}  // namespace

TEST_CASE("the report model parses only the types it needs; a retry keeps the failed attempt") {
  Model m;
  Feed f;
  f.Line(m, R"({"type":"run.start","run":"R","seq":1,"ts":10,"jobs":1,"slots":1,"host":"h"})");
  f.Line(m, R"({"type":"job.start","run":"R","job":1,"seq":1,"ts":11,"name":"t/a.t","argv":["t/a.t"],"attempt":1,"attempts":2})");
  f.Line(m, R"({"type":"assert","run":"R","job":1,"seq":2,"ts":12,"number":1,"ok":false,"description":"x","source":"tap","yaml":{"at":{"file":"lib/A.pm","line":"9"}}})");
  f.Line(m, R"x({"type":"job.end","run":"R","job":1,"seq":3,"ts":13,"name":"t/a.t","verdict":"fail","reasons":["1 of 1 assertions failed (#1)"],"attempt":1,"attempts":2,"retry":true,"duration_us":2})x");
  uint64_t before = m.decoded();
  for (int i = 0; i < 100; ++i) {
    f.Line(m, R"({"type":"counts","run":"R","seq":4,"ts":14,"P":0,"F":0,"A":1,"R":1,"T":0})");
    f.Line(m, R"({"type":"pragma","run":"R","job":1,"seq":4,"ts":14,"name":"strict","enabled":true})");
    f.Line(m, R"({"type":"subtest","run":"R","job":1,"seq":4,"ts":14,"name":"s"})");
  }
  CHECK(m.decoded() == before);  // 300 lines of types it does not need
  f.Line(m, R"({"type":"job.start","run":"R","job":1,"seq":1,"ts":15,"name":"t/a.t","argv":["t/a.t"],"attempt":2,"attempts":2})");
  f.Line(m, R"({"type":"assert","run":"R","job":1,"seq":2,"ts":16,"number":1,"ok":true,"description":"x","source":"tap"})");
  f.Line(m, R"({"type":"job.end","run":"R","job":1,"seq":3,"ts":17,"name":"t/a.t","verdict":"pass","reasons":[],"attempt":2,"attempts":2,"flaky":true,"duration_us":2})");
  REQUIRE(m.runs().size() == 1);
  const auto& job = m.runs()[0].jobs.at(1);
  CHECK(job.verdict == "pass");
  CHECK(job.flaky);
  REQUIRE(job.failed_attempts.size() == 1);
  CHECK(job.failed_attempts[0].first == 1);
  CHECK(job.failed_attempts[0].second == std::vector<std::string>{"1 of 1 assertions failed (#1)"});
  REQUIRE(job.asserts.size() == 1);
  CHECK(job.asserts[0].ok);
}

TEST_CASE("a failed assertion's location comes from its YAML block or its own fields") {
  Model m;
  Feed f;
  f.Line(m, R"({"type":"run.start","run":"R","seq":1,"ts":10,"jobs":1,"slots":1})");
  f.Line(m, R"({"type":"assert","run":"R","job":1,"seq":2,"ts":12,"number":1,"ok":false,"description":"x","source":"tap","yaml":{"at":{"file":"lib/A.pm","line":"9"}}})");
  f.Line(m, R"({"type":"assert","run":"R","job":1,"seq":3,"ts":12,"ok":false,"description":"y","source":"fd","file":"src/b.c","line":12})");
  f.Line(m, R"({"type":"assert","run":"R","job":1,"seq":4,"ts":12,"number":3,"ok":false,"description":"z","source":"tap","yaml":{"file":"c.py","line":3}})");
  const auto& a = m.runs()[0].jobs.at(1).asserts;
  REQUIRE(a.size() == 3);
  CHECK(a[0].file() == "lib/A.pm");
  CHECK(a[0].line() == 9);
  CHECK(a[1].file() == "src/b.c");
  CHECK(a[1].line() == 12);
  CHECK(a[2].file() == "c.py");
  CHECK(a[2].line() == 3);
}

TEST_CASE("reports that list only failures keep only failed assertions, and decode no passing TAP one") {
  // weft-render-json, -github and -html: Model(false, false).
  for (bool passing : {true, false}) {
    CAPTURE(passing);
    Model m(false, passing);
    Feed f;
    f.Line(m, R"({"type":"run.start","run":"R","seq":1,"ts":10,"jobs":1,"slots":1})");
    f.Line(m, R"({"type":"job.start","run":"R","job":7,"seq":1,"ts":11,"name":"t/a.t"})");
    uint64_t before = m.decoded();
    for (int i = 1; i <= 50; ++i)
      f.Line(m, R"({"type":"assert","run":"R","job":7,"seq":2,"ts":12,"number":)" + std::to_string(i) +
                    R"(,"ok":true,"description":"fine","elapsed_us":3,"source":"tap"})");
    // Canonical TAP passes: read from the text alone when not listed.
    CHECK(m.decoded() - before == (passing ? 50u : 0u));
    f.Line(m, R"({"type":"assert","run":"R","job":7,"seq":3,"ts":12,"number":51,"ok":false,"description":"broken","source":"tap"})");
    f.Line(m, R"({"type":"comment","run":"R","job":7,"seq":4,"ts":12,"text":"got 1","source":"tap"})");
    // A passing test point ends the failure's diagnostics, decoded or not.
    f.Line(m, R"({"type":"assert","run":"R","job":7,"seq":5,"ts":12,"number":52,"ok":true,"description":"fine","source":"tap"})");
    f.Line(m, R"({"type":"comment","run":"R","job":7,"seq":6,"ts":12,"text":"unrelated","source":"tap"})");
    // A todo that fails, and a native pass (decoded: not TAP's canonical
    // form), are not failures: not kept either.
    f.Line(m, R"({"type":"assert","run":"R","job":7,"seq":7,"ts":12,"number":53,"ok":false,"directive":"todo","description":"later","source":"tap"})");
    f.Line(m, R"({"type":"assert","run":"R","job":7,"seq":8,"ts":12,"ok":true,"description":"native","source":"fd"})");
    // Nor does "ok":true inside a failed one's YAML make it a pass.
    f.Line(m, R"({"type":"assert","run":"R","job":7,"seq":9,"ts":12,"number":54,"ok":false,"description":"yaml","source":"tap","yaml":{"a":"1","ok":"true","b":"2"}})");
    const auto& a = m.runs()[0].jobs.at(7).asserts;
    if (passing) {
      CHECK(a.size() == 55);
      continue;
    }
    REQUIRE(a.size() == 2);
    CHECK(a[0].description == "broken");
    CHECK(a[0].diag() == std::vector<std::string>{"# got 1"});
    CHECK(a[1].description == "yaml");
  }
}
