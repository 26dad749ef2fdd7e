#include "term.h"

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <weft/events/event.h>

#include <string>
#include <vector>

using weft::term::Options;
using weft::term::Renderer;

namespace {

// Lines as a LineReader hands them out: with padding after each.
struct Feed {
  std::vector<std::string> store;
  void Line(Renderer& r, std::string line) {
    line.append(weft::events::kPadding, '\0');
    store.push_back(std::move(line));
    const std::string& s = store.back();
    r.Line(std::string_view(s.data(), s.size() - weft::events::kPadding));
  }
};

}  // namespace

TEST_CASE("the terminal view parses only what it shows: passing assertions and quiet output are skipped unparsed") {
  Renderer r(Options{});
  Feed feed;
  feed.Line(r, R"({"type":"hello","run":"R","seq":0,"ts":1,"schema":"1.0","producer":"t","version":"0"})");
  feed.Line(r, R"({"type":"run.start","run":"R","seq":1,"ts":1,"jobs":1,"slots":1})");
  feed.Line(r, R"({"type":"job.start","run":"R","job":1,"seq":1,"ts":2,"name":"t/a.t","argv":["t/a.t"]})");
  uint64_t before = r.decoded();
  for (int i = 1; i <= 1000; ++i) {
    feed.Line(r, fmt::format(R"({{"type":"assert","run":"R","job":1,"seq":{},"ts":3,"number":{},"ok":true,"description":"d","elapsed_us":1,"source":"tap"}})", i + 1, i));
    feed.Line(r, fmt::format(R"({{"type":"output","run":"R","job":1,"seq":{},"ts":3,"stream":"stderr","text":"noise {}"}})", i + 1, i));
    feed.Line(r, fmt::format(R"({{"type":"comment","run":"R","job":1,"seq":{},"ts":3,"text":"note","source":"tap"}})", i + 1));
    feed.Line(r, R"({"type":"pragma","run":"R","job":1,"seq":9,"ts":3,"name":"strict","enabled":true,"source":"tap"})");
  }
  // 4000 lines, none of them parsed.
  CHECK(r.decoded() == before);
  // A failure is parsed, and so is what follows it (its diagnostics).
  feed.Line(r, R"({"type":"assert","run":"R","job":1,"seq":9,"ts":3,"number":1001,"ok":false,"description":"broken","elapsed_us":1,"source":"tap"})");
  feed.Line(r, R"({"type":"comment","run":"R","job":1,"seq":9,"ts":3,"text":"got 1","source":"tap"})");
  CHECK(r.decoded() == before + 2);
  feed.Line(r, R"x({"type":"job.end","run":"R","job":1,"seq":9,"ts":4,"name":"t/a.t","verdict":"fail","reasons":["1 of 1001 assertions failed (#1001)"],"exit":{"code":0,"signal":null},"duration_us":5})x");
  std::string shown = r.Take();
  CHECK(shown.find("FAIL t/a.t") != std::string::npos);
  CHECK(shown.find("      # got 1") != std::string::npos);
  // The raw output kept for the tail is decoded only now, for the failure.
  CHECK(shown.find("stderr: noise 1000") != std::string::npos);
}
