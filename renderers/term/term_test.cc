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

TEST_CASE("--colors: roles take 0-255 or #rrggbb; a mistake is named") {
  weft::term::Colours c;
  std::string err;
  CHECK(weft::term::ParseColours("fail=#FF0080,pass=40", &c, &err));
  CHECK(c.fail == "38;2;255;0;128");
  CHECK(c.pass == "38;5;40");
  CHECK(c.timeout == "38;5;201");  // untouched
  CHECK(!weft::term::ParseColours("fial=1", &c, &err));
  CHECK(err == "unknown colour role \"fial\" (pass, fail, active, retry, todo, warn, flaky, timeout)");
  CHECK(!weft::term::ParseColours("pass=256", &c, &err));
  CHECK(err == "pass: \"256\" is not a colour (0-255, or #rrggbb)");
  CHECK(!weft::term::ParseColours("pass", &c, &err));
  CHECK(err == "colour role \"pass\" needs a value: pass=N (0-255) or pass=#rrggbb");
  CHECK(!weft::term::ParseColours("warn=#12345g", &c, &err));
}

TEST_CASE("keys without a control channel: q says how to stop, or stops following a log") {
  Options o;
  Renderer r(o);
  CHECK(r.Key('q', 0) == weft::term::KeyAction::kNone);
  CHECK(r.Take() == "q: this view has no control channel to the runner (weft-render-term "
                    "--control); Ctrl-C stops the run.\n");
  CHECK(r.Key('f', 0) == weft::term::KeyAction::kNone);
  CHECK(r.Take() == "No failures so far.\n");
  CHECK(r.Key('x', 0) == weft::term::KeyAction::kNone);
  CHECK(r.Take() == "");
  Options follow;
  follow.follow = true;
  Renderer f(follow);
  CHECK(f.Key('q', 0) == weft::term::KeyAction::kStopFollowing);
  CHECK(f.Take() == "Not following any more (q).\n");
  CHECK(f.Key('?', 0) == weft::term::KeyAction::kNone);
  CHECK(f.Take() == "Keys: v verbose on/off, f failures so far, q stop following, ? these keys.\n");
}

TEST_CASE("a job a timeout ended is a TIMEOUT, listed and counted apart") {
  Renderer r(Options{});
  Feed feed;
  feed.Line(r, R"({"type":"run.start","run":"R","seq":1,"ts":1,"jobs":2,"slots":1})");
  feed.Line(r, R"({"type":"job.start","run":"R","job":1,"seq":1,"ts":2,"name":"t/hang.t","argv":["t/hang.t"]})");
  feed.Line(r, R"x({"type":"job.end","run":"R","job":1,"seq":9,"ts":4,"name":"t/hang.t","verdict":"fail","reasons":["timed out after 2s","killed by SIGTERM"],"exit":{"code":null,"signal":"SIGTERM"},"timed_out":true,"timeout":"wall","duration_us":2000000})x");
  feed.Line(r, R"({"type":"summary","run":"R","seq":4,"ts":5,"verdict":"fail","exit":1,"jobs":{"planned":1,"passed":0,"failed":1,"skipped":0,"cancelled":0,"unfinished":0,"flaky":0,"retried":0,"timed_out":1},"assertions":{"total":0,"passed":0,"failed":0,"skipped":0,"todo":0,"todo_passed":0},"wall_us":2000000})");
  std::string shown = r.Take();
  CHECK(shown.find("TIMEOUT t/hang.t (2.00s)\n  timed out after 2s\n  killed by SIGTERM\n") == 0);
  CHECK(shown.find("Failed tests:\n  t/hang.t  timed out after 2s; killed by SIGTERM\n"
                   "Files: 0 passed, 1 failed (1 timed out) (1 in all).\n") != std::string::npos);
}
