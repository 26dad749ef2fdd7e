#include "tap.h"

#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <random>
#include <string>
#include <string_view>
#include <vector>

// Counts heap allocations while "g_counting" is set, to check that common
// lines are parsed without allocating.
namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocations{0};
}  // namespace

// Not inlined: GCC would otherwise see free() on memory from "new" at each
// call site and warn (-Wmismatched-new-delete), though the pair matches.
[[gnu::noinline]] void* operator new(std::size_t size) {
  if (g_counting) ++g_allocations;
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}

namespace weft::tap {
namespace {

// Records every Sink call as one line of text:
//   [outer/inner] <what>      for items in subtests (path joined with '/')
//   <what>                    at top level
class Recorder : public Sink {
 public:
  std::string log;
  std::vector<std::string> yamls;  // OnYaml texts, apart from the log
  std::vector<uint64_t> line_numbers;
  bool contexts_consistent = true;

  void OnYaml(std::string_view text, const Context&) override {
    yamls.emplace_back(text);
  }
  void OnVersion(int version, const Context& c) override {
    Add(c, "version " + std::to_string(version));
  }
  void OnPlan(const Plan& p, const Context& c) override {
    std::string s = "plan " + std::to_string(p.count);
    if (p.skip_all) s += " skip_all";
    if (!p.reason.empty()) s += " '" + std::string(p.reason) + "'";
    Add(c, s);
  }
  void OnAssert(const Assertion& a, const Context& c) override {
    std::string s = a.ok ? "ok " : "not ok ";
    if (a.numbered) {
      s += std::to_string(a.number);
    } else {
      s.append("(").append(std::to_string(a.number)).append(")");
    }
    s += " '" + std::string(a.description) + "'";
    if (a.directive == Directive::kSkip) s += " # SKIP";
    if (a.directive == Directive::kTodo) s += " # TODO";
    if (!a.reason.empty()) s += " '" + std::string(a.reason) + "'";
    Add(c, s);
  }
  void OnBail(std::string_view reason, const Context& c) override {
    Add(c, "bail '" + std::string(reason) + "'");
  }
  void OnComment(std::string_view text, const Context& c) override {
    Add(c, "comment '" + std::string(text) + "'");
  }
  void OnSubtestStart(std::string_view name, const Context& c) override {
    Add(c, "subtest '" + std::string(name) + "'");
  }
  void OnOther(std::string_view line, const Context& c) override {
    Add(c, "other '" + std::string(line) + "'");
  }
  void OnParseError(std::string_view message, const Context& c) override {
    Add(c, "error: " + std::string(message));
  }
  void OnPragma(std::string_view name, bool enabled,
                const Context& c) override {
    Add(c, std::string("pragma ") + (enabled ? "+" : "-") + std::string(name));
  }

 private:
  void Add(const Context& c, const std::string& what) {
    if (c.path == nullptr || c.path->size() != size_t(c.depth)) {
      contexts_consistent = false;
    }
    if (c.depth > 0 && c.path != nullptr) {
      log += "[";
      for (size_t i = 0; i < c.path->size(); ++i) {
        if (i > 0) log += "/";
        log += (*c.path)[i];
      }
      log += "] ";
    }
    log += what;
    log += "\n";
    line_numbers.push_back(c.line_no);
  }
};

struct Result {
  std::string log;
  std::vector<std::string> yamls;
  Tally tally;
  std::string problems;  // joined with "; "
  std::vector<uint64_t> line_numbers;
};

// Feeds "tap" line by line (split on '\n'; a final '\n' ends the last line
// and does not start another), then ends the stream.
Result Parse(std::string_view tap) {
  Recorder recorder;
  Parser parser(&recorder);
  while (!tap.empty()) {
    size_t nl = tap.find('\n');
    if (nl == std::string_view::npos) nl = tap.size();
    parser.Line(tap.substr(0, nl));
    tap.remove_prefix(nl == tap.size() ? nl : nl + 1);
  }
  parser.End();
  CHECK(recorder.contexts_consistent);
  Result r;
  r.log = recorder.log;
  r.yamls = recorder.yamls;
  r.tally = parser.tally();
  for (const std::string& p : parser.Problems()) {
    if (!r.problems.empty()) r.problems += "; ";
    r.problems += p;
  }
  r.line_numbers = recorder.line_numbers;
  return r;
}

// ---- Version

TEST_CASE("a version line first is reported and a later one is a parse error") {
  Result r = Parse("TAP version 13\n1..1\nok 1\nTAP version 13\n");
  CHECK(r.log ==
        "version 13\n"
        "plan 1\n"
        "ok 1 ''\n"
        "error: TAP version must be the first line of the TAP output\n");
  CHECK(r.tally.parse_errors == 1);
  CHECK(r.problems == "1 TAP parse error");

  r = Parse("TAP version 14\n1..1\nok 1\n");
  CHECK(r.log == "version 14\nplan 1\nok 1 ''\n");
  CHECK(r.problems == "");
}

TEST_CASE("a version line after a plan or test point is a parse error") {
  Result r = Parse("1..1\nTAP version 14\nok 1\n");
  CHECK(r.log ==
        "plan 1\n"
        "error: TAP version must be the first line of the TAP output\n"
        "ok 1 ''\n");
  CHECK(r.tally.parse_errors == 1);
}

TEST_CASE(
    "a version line after comments and output is accepted, as TAP::Parser "
    "does") {
  Result r = Parse("# hello\nbanner\n\nTAP version 14\n1..1\nok 1\n");
  CHECK(r.log ==
        "comment 'hello'\n"
        "other 'banner'\n"
        "version 14\n"
        "plan 1\n"
        "ok 1 ''\n");
  CHECK(r.tally.parse_errors == 0);
}

TEST_CASE("TAP version 12 and unknown versions are parse errors") {
  Result r = Parse("TAP version 12\n1..1\nok 1\n");
  CHECK(r.log ==
        "error: explicit TAP version must be at least 13, got 12\n"
        "plan 1\n"
        "ok 1 ''\n");
  r = Parse("tap VERSION 15\n1..1\nok 1\n");
  CHECK(r.log ==
        "error: unknown TAP version 15\n"
        "plan 1\n"
        "ok 1 ''\n");
  r = Parse("TAP version 99999999999999999999999\n1..1\nok 1\n");
  CHECK(r.log ==
        "error: unknown TAP version (out of range)\n"
        "plan 1\n"
        "ok 1 ''\n");
  CHECK(r.tally.parse_errors == 1);
}

// ---- Plans

TEST_CASE("a plan at the start is reported and recorded in the tally") {
  Result r = Parse("1..2\nok 1 - a\nok 2 - b\n");
  CHECK(r.log == "plan 2\nok 1 'a'\nok 2 'b'\n");
  CHECK(r.tally.plan_seen);
  CHECK(r.tally.planned == 2);
  CHECK(r.tally.run == 2);
  CHECK(r.tally.passed == 2);
  CHECK(r.problems == "");
}

TEST_CASE("a plan at the end is accepted") {
  Result r = Parse("ok 1\nok 2\n1..2\n");
  CHECK(r.log == "ok 1 ''\nok 2 ''\nplan 2\n");
  CHECK(r.tally.parse_errors == 0);
  CHECK(r.problems == "");
}

TEST_CASE("a plan may carry a comment, which is its reason") {
  Result r = Parse("1..2 # two of them\nok 1\nok 2\n");
  CHECK(r.log == "plan 2 'two of them'\nok 1 ''\nok 2 ''\n");
  CHECK(r.problems == "");
}

TEST_CASE("a plan-like line with other text after it is output") {
  Result r = Parse("1..2 tests\n2..3\n1..\n1..x\nok 1\nok 2\n1..2\n");
  CHECK(r.log ==
        "other '1..2 tests'\n"
        "other '2..3'\n"
        "other '1..'\n"
        "other '1..x'\n"
        "ok 1 ''\n"
        "ok 2 ''\n"
        "plan 2\n");
  CHECK(r.problems == "");
}

TEST_CASE("1..0 skips everything and passes, with or without a reason") {
  Result r = Parse("1..0 # SKIP no database\n");
  CHECK(r.log == "plan 0 skip_all 'no database'\n");
  CHECK(r.tally.skip_all);
  CHECK(r.tally.skip_reason == "no database");
  CHECK(r.problems == "");

  r = Parse("1..0\n");
  CHECK(r.log == "plan 0 skip_all\n");
  CHECK(r.tally.skip_all);
  CHECK(r.tally.skip_reason == "");
  CHECK(r.problems == "");

  r = Parse("1..0 # skip\n");
  CHECK(r.log == "plan 0 skip_all\n");
  CHECK(r.problems == "");
}

TEST_CASE(
    "1..0 accepts the skipped: variant and a bare comment as the reason") {
  Result r = Parse("1..0 # Skipped: no network\n");
  CHECK(r.log == "plan 0 skip_all 'no network'\n");
  CHECK(r.tally.skip_reason == "no network");
  r = Parse("1..0 # not on Windows\n");
  CHECK(r.log == "plan 0 skip_all 'not on Windows'\n");
  CHECK(r.problems == "");
}

TEST_CASE("a skip-all plan followed by assertions is a parse error") {
  Result r = Parse("1..0 # SKIP nope\nok 1\nok 2\n");
  CHECK(r.log ==
        "plan 0 skip_all 'nope'\n"
        "ok 1 ''\n"
        "error: test point after a skip-all plan (1..0)\n"
        "ok 2 ''\n");
  CHECK(r.tally.parse_errors == 1);
  CHECK(r.problems == "planned 0 but ran 2; 1 TAP parse error");
}

TEST_CASE("a second plan is a parse error and the first stays in force") {
  Result r = Parse("1..2\nok 1\nok 2\n1..3\n");
  CHECK(r.log ==
        "plan 2\n"
        "ok 1 ''\n"
        "ok 2 ''\n"
        "error: more than one plan (1..3 after 1..2)\n");
  CHECK(r.tally.planned == 2);
  CHECK(r.tally.parse_errors == 1);
  CHECK(r.problems == "1 TAP parse error");
}

TEST_CASE("a plan in the middle is a parse error, as in TAP::Parser") {
  Result r = Parse("ok 1\n1..3\nok 2\nok 3\n");
  CHECK(r.log ==
        "ok 1 ''\n"
        "plan 3\n"
        "ok 2 ''\n"
        "error: plan 1..3 must be at the beginning or end of the TAP output\n"
        "ok 3 ''\n");
  CHECK(r.tally.parse_errors == 1);
  CHECK(r.problems == "1 TAP parse error");
}

TEST_CASE(
    "assertions after a trailing plan are a parse error and overrun the plan") {
  Result r = Parse("ok 1\n1..1\nok 2\n");
  CHECK(r.log ==
        "ok 1 ''\n"
        "plan 1\n"
        "ok 2 ''\n"
        "error: plan 1..1 must be at the beginning or end of the TAP output\n");
  CHECK(r.tally.parse_errors == 1);
  CHECK(r.problems == "planned 1 but ran 2; 1 TAP parse error");
}

TEST_CASE("a plan count beyond 64 bits is a parse error, not a plan") {
  Result r = Parse("1..99999999999999999999999\nok 1\n");
  CHECK(r.log == "error: plan count out of range\nok 1 ''\n");
  CHECK(!r.tally.plan_seen);
  CHECK(r.problems == "no plan; 1 TAP parse error");
  r = Parse("1..9223372036854775808\nok 1\n");  // INT64_MAX + 1
  CHECK(r.log == "error: plan count out of range\nok 1 ''\n");
}

TEST_CASE("a missing plan is a problem but not a parse error") {
  Result r = Parse("ok 1\nok 2\n");
  CHECK(r.tally.parse_errors == 0);
  CHECK(!r.tally.plan_seen);
  CHECK(r.problems == "no plan");
}

TEST_CASE(
    "a plan that does not match the count is a problem but not a parse error") {
  Result r = Parse("1..3\nok 1\nok 2\n");
  CHECK(r.tally.parse_errors == 0);
  CHECK(r.problems == "planned 3 but ran 2");
}

// ---- Test points

TEST_CASE("test points without numbers take the next number") {
  Result r = Parse("1..3\nok\nnot ok - second\nok 3 third\n");
  CHECK(r.log ==
        "plan 3\n"
        "ok (1) ''\n"
        "not ok (2) 'second'\n"
        "ok 3 'third'\n");
  CHECK(r.tally.run == 3);
  CHECK(r.tally.failed == 1);
}

TEST_CASE("the dash before a description is optional and removed") {
  Result r = Parse(
      "ok 1 - with dash\nok 2 without dash\nok 3 -\nok 4 -not a separator\n"
      "ok 5 - - double\nok 6\t-\ttabs\t\n1..6\n");
  CHECK(r.log ==
        "ok 1 'with dash'\n"
        "ok 2 'without dash'\n"
        "ok 3 ''\n"
        "ok 4 '-not a separator'\n"
        "ok 5 '- double'\n"
        "ok 6 'tabs'\n"
        "plan 6\n");
  CHECK(r.problems == "");
}

TEST_CASE("words that only start like ok are not test points") {
  Result r = Parse("okay\nok1\nnot okay\nnot  ok 1\nOK 1\n ok 1\n1..0\n");
  CHECK(r.log ==
        "other 'okay'\n"
        "other 'ok1'\n"
        "other 'not okay'\n"
        "other 'not  ok 1'\n"
        "other 'OK 1'\n"
        "other ' ok 1'\n"
        "plan 0 skip_all\n");
  CHECK(r.problems == "");
}

TEST_CASE("directives are case-insensitive, with or without a reason") {
  Result r = Parse(
      "1..8\n"
      "ok 1 - a # SKIP no db\n"
      "ok 2 - b # skip\n"
      "ok 3 # Skipped: later\n"
      "ok 4 #skipping\n"
      "not ok 5 - e # TODO not yet\n"
      "not ok 6 - f # todo: soon\n"
      "not ok 7 #TODO\n"
      "not ok 8 - h # ToDo   spaced   \n");
  CHECK(r.log ==
        "plan 8\n"
        "ok 1 'a' # SKIP 'no db'\n"
        "ok 2 'b' # SKIP\n"
        "ok 3 '' # SKIP 'later'\n"
        "ok 4 '' # SKIP\n"
        "not ok 5 'e' # TODO 'not yet'\n"
        "not ok 6 'f' # TODO 'soon'\n"
        "not ok 7 '' # TODO\n"
        "not ok 8 'h' # TODO 'spaced'\n");
  CHECK(r.tally.skipped == 4);
  CHECK(r.tally.todo == 4);
  CHECK(r.tally.failed == 0);
  CHECK(r.problems == "");
}

TEST_CASE("a word that merely starts with TODO is not a directive") {
  Result r = Parse("1..2\nnot ok 1 - x # TODOs remain\nnot ok 2 # todo_list\n");
  CHECK(r.log ==
        "plan 2\n"
        "not ok 1 'x # TODOs remain'\n"
        "not ok 2 '# todo_list'\n");
  CHECK(r.tally.failed == 2);
  CHECK(r.problems == "2 of 2 assertions failed (#1, #2)");
}

TEST_CASE(
    "only the first unescaped # can start a directive, as in TAP::Parser") {
  Result r =
      Parse("1..2\nnot ok 1 - a # b # TODO c\nnot ok 2 - a \\# b # TODO c\n");
  CHECK(r.log ==
        "plan 2\n"
        "not ok 1 'a # b # TODO c'\n"
        "not ok 2 'a # b' # TODO 'c'\n");
  CHECK(r.tally.failed == 1);
  CHECK(r.tally.todo == 1);
}

TEST_CASE("escaped hashes and backslashes are unescaped in descriptions") {
  Result r = Parse(
      "1..4\n"
      "ok 1 - issue \\#42\n"
      "ok 2 - C:\\\\temp\\\\x\n"
      "ok 3 - a \\\\# SKIP escaped backslash, real hash\n"
      "ok 4 - other \\n escapes stay\n");
  CHECK(r.log ==
        "plan 4\n"
        "ok 1 'issue #42'\n"
        "ok 2 'C:\\temp\\x'\n"
        "ok 3 'a \\' # SKIP 'escaped backslash, real hash'\n"
        "ok 4 'other \\n escapes stay'\n");
}

TEST_CASE("escapes in a directive's reason are unescaped too") {
  Result r = Parse("1..1\nok 1 - a\\#b # SKIP see \\#7\n");
  CHECK(r.log == "plan 1\nok 1 'a#b' # SKIP 'see #7'\n");
}

TEST_CASE("a TODO that passes still passes and is counted") {
  Result r = Parse("1..2\nok 1 - fixed # TODO was broken\nok 2\n");
  CHECK(r.tally.passed == 2);
  CHECK(r.tally.todo_passed == 1);
  CHECK(r.tally.todo == 0);
  CHECK(r.tally.failed == 0);
  CHECK(r.problems == "");
}

TEST_CASE("a TODO that fails does not fail the stream") {
  Result r = Parse("1..2\nnot ok 1 - broken # TODO later\nok 2\n");
  CHECK(r.tally.todo == 1);
  CHECK(r.tally.failed == 0);
  CHECK(r.tally.passed == 1);
  CHECK(r.problems == "");
}

TEST_CASE("an ok SKIP is counted as skipped and a not ok SKIP fails") {
  Result r = Parse("1..2\nok 1 # SKIP no db\nnot ok 2 # SKIP no db\n");
  CHECK(r.tally.skipped == 1);
  CHECK(r.tally.passed == 1);
  CHECK(r.tally.failed == 1);
  CHECK(r.problems == "1 of 2 assertions failed (#2)");
}

TEST_CASE(
    "a test number beyond 64 bits is a parse error and a failed assertion") {
  Result r = Parse("1..2\nok 99999999999999999999999 - big # TODO x\nok 2\n");
  CHECK(r.log ==
        "plan 2\n"
        "not ok (1) 'big'\n"
        "error: test number out of range\n"
        "ok 2 ''\n");
  CHECK(r.tally.run == 2);
  CHECK(r.tally.failed == 1);
  CHECK(r.tally.parse_errors == 1);
  CHECK(r.problems == "1 of 2 assertions failed (#1); 1 TAP parse error");
  // The largest 64-bit number still parses (and is merely out of sequence).
  r = Parse("ok 18446744073709551615\n");
  CHECK(
      r.log ==
      "ok 18446744073709551615 ''\n"
      "error: test number 18446744073709551615 out of sequence (expected 1)\n");
}

TEST_CASE("ok 0 is a parse error because tests are numbered from 1") {
  Result r = Parse("1..2\nok 0\nok 2\n");
  CHECK(r.log ==
        "plan 2\n"
        "ok 0 ''\n"
        "error: test number 0: tests are numbered from 1\n"
        "ok 2 ''\n");
  CHECK(r.tally.run == 2);
  CHECK(r.tally.parse_errors == 1);
  CHECK(r.problems == "1 TAP parse error");
}

TEST_CASE("a duplicate test number is a parse error") {
  Result r = Parse("1..3\nok 1\nok 1\nok 3\n");
  CHECK(r.log ==
        "plan 3\n"
        "ok 1 ''\n"
        "ok 1 ''\n"
        "error: duplicate test number 1 out of sequence (expected 2)\n"
        "ok 3 ''\n");
  CHECK(r.tally.parse_errors == 1);
}

TEST_CASE("out-of-order test numbers are parse errors, as in TAP::Parser") {
  // Like TAP::Parser, the expected number is the count so far, so a swap
  // costs two errors.
  Result r = Parse("1..3\nok 2\nok 1\nok 3\n");
  CHECK(r.log ==
        "plan 3\n"
        "ok 2 ''\n"
        "error: test number 2 out of sequence (expected 1)\n"
        "ok 1 ''\n"
        "error: test number 1 out of sequence (expected 2)\n"
        "ok 3 ''\n");
  CHECK(r.tally.parse_errors == 2);
  CHECK(r.problems == "2 TAP parse errors");
}

// ---- Failures and problems

TEST_CASE("failing assertions are named in the problems when there are few") {
  Result r =
      Parse("1..10\nok\nnot ok\nok\nok\nnot ok\nok\nok\nnot ok\nok\nok\n");
  CHECK(r.tally.failed == 3);
  CHECK(r.problems == "3 of 10 assertions failed (#2, #5, #8)");
}

TEST_CASE("many failing assertions are counted but not named") {
  std::string tap = "1..12\n";
  for (int i = 0; i < 12; ++i) tap += "not ok\n";
  Result r = Parse(tap);
  CHECK(r.problems == "12 of 12 assertions failed");
  r = Parse("1..1\nnot ok 1\n");
  CHECK(r.problems == "1 of 1 assertion failed (#1)");
}

TEST_CASE("a clean stream has no problems") {
  Result r = Parse(
      "TAP version 14\n1..3\nok 1 - a\nok 2 - b # SKIP c\n"
      "not ok 3 - d # TODO e\n# done\n");
  CHECK(r.problems == "");
  CHECK(r.tally.run == 3);
  CHECK(r.tally.passed == 2);
  CHECK(r.tally.skipped == 1);
  CHECK(r.tally.todo == 1);
}

TEST_CASE("all problems are listed together, bail out first") {
  Result r = Parse("1..3\nok 2\nnot ok 1\nBail out! stop\n");
  CHECK(r.problems ==
        "bailed out: stop; 1 of 2 assertions failed (#1); 2 TAP parse errors");
}

// ---- Bail out, comments, other lines

TEST_CASE(
    "Bail out! is reported with or without a reason and fails the stream") {
  Result r = Parse("1..2\nok 1\nBail out!  database gone  \n");
  CHECK(r.log == "plan 2\nok 1 ''\nbail 'database gone'\n");
  CHECK(r.tally.bailed);
  CHECK(r.tally.bail_reason == "database gone");
  // The unmet plan is not reported: the bail out explains it.
  CHECK(r.problems == "bailed out: database gone");

  r = Parse("Bail out!\n");
  CHECK(r.log == "bail ''\n");
  CHECK(r.tally.bailed);
  CHECK(r.problems == "bailed out");
}

TEST_CASE("the first bail out's reason is the one kept") {
  Result r = Parse("Bail out! first\nBail out! second\n");
  CHECK(r.log == "bail 'first'\nbail 'second'\n");
  CHECK(r.tally.bail_reason == "first");
}

TEST_CASE("comments are reported without the hash and one space") {
  Result r = Parse("# one\n#two\n#   three\n#\n1..0\n");
  CHECK(r.log ==
        "comment 'one'\n"
        "comment 'two'\n"
        "comment '  three'\n"
        "comment ''\n"
        "plan 0 skip_all\n");
}

TEST_CASE("non-TAP lines are kept byte for byte as output") {
  Result r = Parse("hello world  \n  indented by two\n\tok 1\n1..0\n");
  CHECK(r.log ==
        "other 'hello world  '\n"
        "other '  indented by two'\n"
        "other '\tok 1'\n"
        "plan 0 skip_all\n");
  CHECK(r.problems == "");
}

TEST_CASE("blank lines are ignored and not output, but counted as lines") {
  Result r = Parse("\n1..1\n   \n\t\nok 1\n");
  CHECK(r.log == "plan 1\nok 1 ''\n");
  CHECK(r.line_numbers == std::vector<uint64_t>{2, 5});
}

TEST_CASE("a trailing carriage return is stripped") {
  Result r =
      Parse("TAP version 13\r\n1..1 # c\r\nok 1 - x # SKIP y\r\nhello\r\n\r\n");
  CHECK(r.log ==
        "version 13\n"
        "plan 1 'c'\n"
        "ok 1 'x' # SKIP 'y'\n"
        "other 'hello'\n");
  CHECK(r.problems == "");
}

// ---- Pragmas

TEST_CASE(
    "pragma +strict makes non-TAP lines parse errors and -strict ends it") {
  Result r = Parse(
      "TAP version 13\npragma +strict\n1..2\nhello\nok 1\n\npragma -strict\n"
      "again\nok 2\n");
  CHECK(r.log ==
        "version 13\n"
        "pragma +strict\n"
        "plan 2\n"
        "other 'hello'\n"
        "error: non-TAP line under pragma +strict\n"
        "ok 1 ''\n"
        "pragma -strict\n"
        "other 'again'\n"
        "ok 2 ''\n");
  CHECK(r.tally.parse_errors == 1);
  CHECK(r.problems == "1 TAP parse error");
}

TEST_CASE("a pragma line may list several pragmas") {
  Result r = Parse("TAP version 13\npragma +strict , -foo,+bar_2\n1..0\n");
  CHECK(r.log ==
        "version 13\n"
        "pragma +strict\n"
        "pragma -foo\n"
        "pragma +bar_2\n"
        "plan 0 skip_all\n");
}

TEST_CASE("before a TAP version 13 line, a pragma is ordinary output (TAP 12)") {
  Result r = Parse("pragma +strict\n1..1\njunk\nok 1\n");
  CHECK(r.log == "other 'pragma +strict'\nplan 1\nother 'junk'\nok 1 ''\n");
  CHECK(r.problems == "");
}

TEST_CASE("a malformed pragma line is output, not a pragma") {
  Result r = Parse("TAP version 13\npragma strict\npragma +\npragma +a,\npragma\n1..0\n");
  CHECK(r.log ==
        "version 13\n"
        "other 'pragma strict'\n"
        "other 'pragma +'\n"
        "other 'pragma +a,'\n"
        "other 'pragma'\n"
        "plan 0 skip_all\n");
}

TEST_CASE("under strict, YAML and comments are still TAP") {
  Result r =
      Parse("TAP version 13\npragma +strict\n1..1\nok 1\n  ---\n  a: 1\n  ...\n# note\n");
  CHECK(r.tally.parse_errors == 0);
}

// ---- YAML

TEST_CASE(
    "a YAML block after a test point is reported line by line as output") {
  Result r =
      Parse("1..2\nnot ok 1 - x\n  ---\n  got: 1\n\n  want: 2\n  ...\nok 2\n");
  CHECK(r.log ==
        "plan 2\n"
        "not ok 1 'x'\n"
        "other '  ---'\n"
        "other '  got: 1'\n"
        "other ''\n"
        "other '  want: 2'\n"
        "other '  ...'\n"
        "ok 2 ''\n");
  CHECK(r.tally.parse_errors == 0);
  CHECK(r.problems == "1 of 2 assertions failed (#1)");
}

TEST_CASE("TAP-looking lines inside a YAML block are YAML") {
  Result r = Parse("1..1\nok 1\n  ---\n  ok 2\n  1..5\n  Bail out!\n  ...\n");
  CHECK(r.log ==
        "plan 1\n"
        "ok 1 ''\n"
        "other '  ---'\n"
        "other '  ok 2'\n"
        "other '  1..5'\n"
        "other '  Bail out!'\n"
        "other '  ...'\n");
  CHECK(!r.tally.bailed);
  CHECK(r.problems == "");
}

TEST_CASE(
    "a YAML block that never ends stops at the first less indented line") {
  Result r = Parse("1..2\nok 1\n  ---\n  a: 1\nok 2\n");
  CHECK(r.log ==
        "plan 2\n"
        "ok 1 ''\n"
        "other '  ---'\n"
        "other '  a: 1'\n"
        "error: YAML block not terminated by '...'\n"
        "ok 2 ''\n");
  CHECK(r.tally.run == 2);
  CHECK(r.tally.parse_errors == 1);
}

TEST_CASE("a YAML block still open at the end of the stream is a parse error") {
  Result r = Parse("1..1\nok 1\n  ---\n  a: 1\n");
  CHECK(r.log ==
        "plan 1\n"
        "ok 1 ''\n"
        "other '  ---'\n"
        "other '  a: 1'\n"
        "error: YAML block not terminated by '...'\n");
  CHECK(r.tally.parse_errors == 1);
}

TEST_CASE("an indented --- that does not follow a test point is output") {
  Result r = Parse("1..1\n  ---\nok 1\n# c\n  ---\n  ...\n");
  CHECK(r.log ==
        "plan 1\n"
        "other '  ---'\n"
        "ok 1 ''\n"
        "comment 'c'\n"
        "other '  ---'\n"
        "other '  ...'\n");
  CHECK(r.problems == "");
}

// ---- Subtests

TEST_CASE(
    "a # Subtest: comment opens a subtest that its parent's test point "
    "closes") {
  Result r = Parse(
      "TAP version 14\n"
      "1..2\n"
      "# Subtest: inner\n"
      "    1..2\n"
      "    ok 1 - x\n"
      "    ok 2 - y\n"
      "ok 1 - inner\n"
      "ok 2 - after\n");
  CHECK(r.log ==
        "version 14\n"
        "plan 2\n"
        "subtest 'inner'\n"
        "[inner] plan 2\n"
        "[inner] ok 1 'x'\n"
        "[inner] ok 2 'y'\n"
        "ok 1 'inner'\n"
        "ok 2 'after'\n");
  CHECK(r.tally.run == 2);
  CHECK(r.tally.parse_errors == 0);
  CHECK(r.problems == "");
}

TEST_CASE("only top-level items update the tally") {
  Result r = Parse(
      "1..1\n"
      "# Subtest: s\n"
      "    1..3\n"
      "    ok 1 # SKIP a\n"
      "    not ok 2 # TODO b\n"
      "    ok 3 # TODO c\n"
      "ok 1 - s\n");
  CHECK(r.tally.run == 1);
  CHECK(r.tally.passed == 1);
  CHECK(r.tally.skipped == 0);
  CHECK(r.tally.todo == 0);
  CHECK(r.tally.todo_passed == 0);
  CHECK(r.tally.planned == 1);
  CHECK(r.problems == "");
}

TEST_CASE(
    "an indented TAP line without # Subtest: opens a subtest named by its "
    "parent's line") {
  Result r = Parse(
      "    ok 1 - x\n"
      "    1..1\n"
      "ok 1 - implicit\n"
      "1..1\n");
  CHECK(r.log ==
        "subtest ''\n"
        "[] ok 1 'x'\n"
        "[] plan 1\n"
        "ok 1 'implicit'\n"
        "plan 1\n");
  CHECK(r.problems == "");
  // Its name, for messages, comes from the parent's line.
  r = Parse("    not ok 1\n    1..1\nok 1 - named by parent\n1..1\n");
  CHECK(r.log ==
        "subtest ''\n"
        "[] not ok 1 ''\n"
        "[] plan 1\n"
        "ok 1 'named by parent'\n"
        "error: subtest 'named by parent' failed (1 of 1 assertion failed) "
        "but its test point says ok\n"
        "plan 1\n");
}

TEST_CASE("# Subtest: at the child's indentation opens the subtest too") {
  Result r = Parse(
      "1..1\n"
      "    # Subtest: old style\n"
      "    ok 1\n"
      "    1..1\n"
      "ok 1 - old style\n");
  CHECK(r.log ==
        "plan 1\n"
        "subtest 'old style'\n"
        "[old style] ok 1 ''\n"
        "[old style] plan 1\n"
        "ok 1 'old style'\n");
  CHECK(r.problems == "");
}

TEST_CASE(
    "a repeated # Subtest: announcement at the child's indentation does not "
    "nest") {
  Result r = Parse(
      "# Subtest: s\n"
      "    # Subtest: s\n"
      "    ok 1\n"
      "    1..1\n"
      "ok 1 - s\n"
      "1..1\n");
  CHECK(r.log ==
        "subtest 's'\n"
        "[s] comment 'Subtest: s'\n"
        "[s] ok 1 ''\n"
        "[s] plan 1\n"
        "ok 1 's'\n"
        "plan 1\n");
  CHECK(r.problems == "");
}

TEST_CASE("subtests nest to any depth and items carry their depth and path") {
  std::string tap;
  std::string expected;
  const int kLevels = 12;
  for (int i = 0; i < kLevels; ++i) {
    std::string indent(size_t(4 * i), ' ');
    std::string name = std::string("s").append(std::to_string(i));
    tap += indent + "# Subtest: " + name + "\n";
  }
  tap += std::string(4 * kLevels, ' ') + "ok 1 - leaf\n";
  tap += std::string(4 * kLevels, ' ') + "1..1\n";
  for (int i = kLevels - 1; i >= 0; --i) {
    tap +=
        std::string(size_t(4 * i), ' ') + "ok 1 - s" + std::to_string(i) + "\n";
    tap += std::string(size_t(4 * i), ' ') + "1..1\n";
  }
  Result r = Parse(tap);
  CHECK(r.tally.run == 1);
  CHECK(r.tally.parse_errors == 0);
  CHECK(r.problems == "");
  CHECK(r.log.find("[s0/s1/s2/s3/s4/s5/s6/s7/s8/s9/s10/s11] ok 1 'leaf'\n") !=
        std::string::npos);
  CHECK(r.log.find("[s0/s1] ok 1 's2'\n") != std::string::npos);
  CHECK(r.log.find("[s0/s1] subtest 's2'\n") != std::string::npos);
}

TEST_CASE("Test::More's nested subtest output parses as it means") {
  // Verbatim from Test::More 1.302190 (stdout and stderr merged).
  Result r = Parse(
      "ok 1 - a\n"
      "# Subtest: inner\n"
      "    1..2\n"
      "    ok 1 - x\n"
      "    # Subtest: deeper\n"
      "        not ok 1 - y\n"
      "        #   Failed test 'y'\n"
      "        #   at st.pl line 1.\n"
      "        1..1\n"
      "        # Looks like you failed 1 test of 1.\n"
      "    not ok 2 - deeper\n"
      "    #   Failed test 'deeper'\n"
      "    #   at st.pl line 1.\n"
      "    # Looks like you failed 1 test of 2.\n"
      "not ok 2 - inner\n"
      "#   Failed test 'inner'\n"
      "#   at st.pl line 1.\n"
      "1..2\n"
      "# Looks like you failed 1 test of 2.\n");
  CHECK(r.log ==
        "ok 1 'a'\n"
        "subtest 'inner'\n"
        "[inner] plan 2\n"
        "[inner] ok 1 'x'\n"
        "[inner] subtest 'deeper'\n"
        "[inner/deeper] not ok 1 'y'\n"
        "[inner/deeper] comment '  Failed test 'y''\n"
        "[inner/deeper] comment '  at st.pl line 1.'\n"
        "[inner/deeper] plan 1\n"
        "[inner/deeper] comment 'Looks like you failed 1 test of 1.'\n"
        "[inner] not ok 2 'deeper'\n"
        "[inner] comment '  Failed test 'deeper''\n"
        "[inner] comment '  at st.pl line 1.'\n"
        "[inner] comment 'Looks like you failed 1 test of 2.'\n"
        "not ok 2 'inner'\n"
        "comment '  Failed test 'inner''\n"
        "comment '  at st.pl line 1.'\n"
        "plan 2\n"
        "comment 'Looks like you failed 1 test of 2.'\n");
  CHECK(r.tally.parse_errors == 0);
  CHECK(r.problems == "1 of 2 assertions failed (#2)");
}

TEST_CASE(
    "a failing subtest whose parent's line says ok is a top-level parse "
    "error") {
  Result r = Parse(
      "1..1\n"
      "# Subtest: liar\n"
      "    1..2\n"
      "    ok 1\n"
      "    not ok 2\n"
      "ok 1 - liar\n");
  CHECK(r.log ==
        "plan 1\n"
        "subtest 'liar'\n"
        "[liar] plan 2\n"
        "[liar] ok 1 ''\n"
        "[liar] not ok 2 ''\n"
        "ok 1 'liar'\n"
        "error: subtest 'liar' failed (1 of 2 assertions failed) but its "
        "test point says ok\n");
  CHECK(r.tally.failed == 0);
  CHECK(r.tally.parse_errors == 1);
  CHECK(r.problems == "1 TAP parse error");
}

TEST_CASE(
    "a passing subtest whose parent's line says not ok is a parse error") {
  Result r = Parse("1..1\n# Subtest: s\n    1..1\n    ok 1\nnot ok 1 - s\n");
  CHECK(r.log ==
        "plan 1\n"
        "subtest 's'\n"
        "[s] plan 1\n"
        "[s] ok 1 ''\n"
        "not ok 1 's'\n"
        "error: subtest 's' passed but its test point says not ok\n");
  CHECK(r.problems == "1 of 1 assertion failed (#1); 1 TAP parse error");
}

TEST_CASE("a subtest with a bad plan is a parse error of its parent") {
  Result r = Parse(
      "1..2\n# Subtest: a\n    1..3\n    ok 1\nok 1 - a\n"
      "# Subtest: b\n    ok 1\nnot ok 2 - b\n");
  CHECK(r.log ==
        "plan 2\n"
        "subtest 'a'\n"
        "[a] plan 3\n"
        "[a] ok 1 ''\n"
        "ok 1 'a'\n"
        "error: subtest 'a' planned 3 but ran 1\n"
        "subtest 'b'\n"
        "[b] ok 1 ''\n"
        "not ok 2 'b'\n"
        "error: subtest 'b' has no plan\n");
  CHECK(r.tally.parse_errors == 2);
}

TEST_CASE("a skipped subtest passes") {
  Result r = Parse(
      "1..1\n# Subtest: s\n    1..0 # SKIP no db\nok 1 - s # SKIP no db\n");
  CHECK(r.log ==
        "plan 1\n"
        "subtest 's'\n"
        "[s] plan 0 skip_all 'no db'\n"
        "ok 1 's' # SKIP 'no db'\n");
  CHECK(r.problems == "");
}

TEST_CASE("a parse error inside a subtest fails it at the parent") {
  Result r =
      Parse("1..1\n# Subtest: s\n    1..2\n    ok 1\n    ok 1\nok 1 - s\n");
  CHECK(r.log ==
        "plan 1\n"
        "subtest 's'\n"
        "[s] plan 2\n"
        "[s] ok 1 ''\n"
        "[s] ok 1 ''\n"
        "[s] error: duplicate test number 1 out of sequence (expected 2)\n"
        "ok 1 's'\n"
        "error: subtest 's' failed (1 TAP parse error) but its test point says "
        "ok\n");
  // Only the error at the top level counts.
  CHECK(r.tally.parse_errors == 1);
}

TEST_CASE("a subtest failure propagates one level at a time") {
  Result r = Parse(
      "1..1\n"
      "# Subtest: a\n"
      "    1..1\n"
      "    # Subtest: b\n"
      "        1..1\n"
      "        not ok 1\n"
      "    ok 1 - b\n"
      "ok 1 - a\n");
  CHECK(r.log ==
        "plan 1\n"
        "subtest 'a'\n"
        "[a] plan 1\n"
        "[a] subtest 'b'\n"
        "[a/b] plan 1\n"
        "[a/b] not ok 1 ''\n"
        "[a] ok 1 'b'\n"
        "[a] error: subtest 'b' failed (1 of 1 assertion failed) but its test "
        "point says ok\n"
        "ok 1 'a'\n"
        "error: subtest 'a' failed (1 TAP parse error) but its test point says "
        "ok\n");
  CHECK(r.tally.parse_errors == 1);
}

TEST_CASE("a subtest left open at the end of the stream is a parse error") {
  Result r = Parse("1..1\nok 1\n# Subtest: late\n    ok 1\n");
  CHECK(r.log ==
        "plan 1\n"
        "ok 1 ''\n"
        "subtest 'late'\n"
        "[late] ok 1 ''\n"
        "error: subtest 'late' ended without a test point\n");
  CHECK(r.tally.parse_errors == 1);
  CHECK(r.problems == "1 TAP parse error");
}

TEST_CASE(
    "a subtest abandoned by a parent-level plan or subtest is a parse error") {
  Result r = Parse("    ok 1\n1..0\n");
  CHECK(r.log ==
        "subtest ''\n"
        "[] ok 1 ''\n"
        "error: subtest ended without a test point\n"
        "plan 0 skip_all\n");
  r = Parse(
      "# Subtest: a\n    ok 1\n# Subtest: b\n    ok 1\n    1..1\nok 1 - "
      "b\n1..1\n");
  CHECK(r.log ==
        "subtest 'a'\n"
        "[a] ok 1 ''\n"
        "error: subtest 'a' ended without a test point\n"
        "subtest 'b'\n"
        "[b] ok 1 ''\n"
        "[b] plan 1\n"
        "ok 1 'b'\n"
        "plan 1\n");
  CHECK(r.tally.parse_errors == 1);
}

TEST_CASE("a parent's test point skipping a level abandons the deeper one") {
  Result r = Parse(
      "# Subtest: a\n    # Subtest: b\n        ok 1\n        1..1\n"
      "ok 1 - a\n1..1\n");
  CHECK(r.log ==
        "subtest 'a'\n"
        "[a] subtest 'b'\n"
        "[a/b] ok 1 ''\n"
        "[a/b] plan 1\n"
        "[a] error: subtest 'b' ended without a test point\n"
        "ok 1 'a'\n"
        "error: subtest 'a' has no plan\n"
        "plan 1\n");
  CHECK(r.tally.parse_errors == 1);
}

TEST_CASE(
    "lines at the parent's indentation that are not test points do not close a "
    "subtest") {
  Result r = Parse(
      "1..1\n"
      "# Subtest: s\n"
      "    ok 1\n"
      "# a parent comment\n"
      "stray output\n"
      "  two spaces\n"
      "    1..1\n"
      "ok 1 - s\n");
  CHECK(r.log ==
        "plan 1\n"
        "subtest 's'\n"
        "[s] ok 1 ''\n"
        "comment 'a parent comment'\n"
        "other 'stray output'\n"
        "other '  two spaces'\n"
        "[s] plan 1\n"
        "ok 1 's'\n");
  CHECK(r.problems == "");
}

TEST_CASE("an indented comment with no subtest open is output, not a subtest") {
  Result r = Parse("1..1\n    # just indented\nok 1\n");
  CHECK(r.log == "plan 1\nother '    # just indented'\nok 1 ''\n");
  CHECK(r.problems == "");
}

TEST_CASE("a bail out inside a subtest bails out the whole stream") {
  Result r = Parse("1..2\n# Subtest: s\n    ok 1\n    Bail out! no disk\n");
  CHECK(r.log ==
        "plan 2\n"
        "subtest 's'\n"
        "[s] ok 1 ''\n"
        "[s] bail 'no disk'\n");
  CHECK(r.tally.bailed);
  CHECK(r.tally.bail_reason == "no disk");
  // The bail out explains the subtest it left open: no parse error.
  CHECK(r.problems == "bailed out: no disk");
}

TEST_CASE(
    "a YAML block in a subtest is indented from the subtest's test point") {
  Result r = Parse(
      "# Subtest: s\n"
      "    not ok 1\n"
      "      ---\n"
      "      a: 1\n"
      "      ...\n"
      "    1..1\n"
      "not ok 1 - s\n"
      "  ---\n"
      "  ...\n"
      "1..1\n");
  CHECK(r.log ==
        "subtest 's'\n"
        "[s] not ok 1 ''\n"
        "[s] other '      ---'\n"
        "[s] other '      a: 1'\n"
        "[s] other '      ...'\n"
        "[s] plan 1\n"
        "not ok 1 's'\n"
        "other '  ---'\n"
        "other '  ...'\n"
        "plan 1\n");
  CHECK(r.tally.parse_errors == 0);
}

TEST_CASE("an unterminated YAML block in a subtest ends at the parent's line") {
  Result r =
      Parse("# Subtest: s\n    ok 1\n      ---\n    1..1\nok 1 - s\n1..1\n");
  CHECK(r.log ==
        "subtest 's'\n"
        "[s] ok 1 ''\n"
        "[s] other '      ---'\n"
        "[s] error: YAML block not terminated by '...'\n"
        "[s] plan 1\n"
        "ok 1 's'\n"
        "error: subtest 's' failed (1 TAP parse error) but its test point says "
        "ok\n"
        "plan 1\n");
}

TEST_CASE("pragma +strict applies to its own level only") {
  Result r = Parse(
      "TAP version 14\n"
      "pragma +strict\n"
      "# Subtest: s\n"
      "    junk in child\n"
      "    pragma +strict\n"
      "    more junk\n"
      "    1..0\n"
      "ok 1 - s\n"
      "1..1\n");
  CHECK(r.log ==
        "version 14\n"
        "pragma +strict\n"
        "subtest 's'\n"
        "[s] other '    junk in child'\n"
        "[s] pragma +strict\n"
        "[s] other '    more junk'\n"
        "[s] error: non-TAP line under pragma +strict\n"
        "[s] plan 0 skip_all\n"
        "ok 1 's'\n"
        "error: subtest 's' failed (1 TAP parse error) but its test point says "
        "ok\n"
        "plan 1\n");
}

TEST_CASE("subtest nesting beyond the limit is output and a parse error") {
  std::string deep(4 * 1000, ' ');
  Result r = Parse("1..1\n" + deep + "ok 1\nok 1\n");
  CHECK(r.log ==
        "plan 1\n"
        "other '" +
            deep +
            "ok 1'\n"
            "error: subtests nested deeper than 256 levels\n"
            "ok 1 ''\n");
  CHECK(r.tally.parse_errors == 1);
}

// ---- Robustness

TEST_CASE("End is idempotent and context line numbers count every line") {
  Recorder recorder;
  Parser parser(&recorder);
  parser.Line("1..1");
  parser.Line("");
  parser.Line("    ok 1");
  parser.End();
  parser.End();
  CHECK(recorder.log ==
        "plan 1\n"
        "subtest ''\n"
        "[] ok 1 ''\n"
        "error: subtest ended without a test point\n");
  CHECK(recorder.line_numbers == std::vector<uint64_t>{1, 3, 3, 3});
  CHECK(parser.tally().parse_errors == 1);
}

TEST_CASE(
    "binary garbage, NUL bytes and invalid UTF-8 never crash the parser") {
  std::mt19937 rng(12345);
  const std::vector<std::string> seeds = {"ok ",
                                          "not ok ",
                                          "1..",
                                          "# Subtest: ",
                                          "    ",
                                          "  ---",
                                          "  ...",
                                          "#",
                                          "\\",
                                          "\\#",
                                          "Bail out!",
                                          "TAP version ",
                                          "pragma +",
                                          "9999999999999999999999",
                                          std::string("\0", 1),
                                          "\xff\xfe",
                                          "\xc3",
                                          " # TODO",
                                          " # SKIP",
                                          "\r",
                                          "\t"};
  Sink null_sink;
  for (int round = 0; round < 300; ++round) {
    Recorder recorder;
    Parser parser(round % 2 ? &recorder : &null_sink);
    for (int line = 0; line < 60; ++line) {
      std::string text;
      const int parts = int(rng() % 6);
      for (int p = 0; p < parts; ++p) {
        if (rng() % 3 == 0) {
          for (int b = int(rng() % 8); b > 0; --b)
            text.push_back(char(rng() % 256));
        } else {
          text += seeds[rng() % seeds.size()];
        }
      }
      parser.Line(text);
    }
    parser.End();
    CHECK(recorder.contexts_consistent);
    const Tally& t = parser.tally();
    CHECK(t.run == t.passed + t.failed + t.todo);
    // At most: bail out, failures, plan, parse errors.
    CHECK(parser.Problems().size() <= 4);
  }
  // NUL bytes are ordinary bytes.
  Result r = Parse(std::string("1..1\nok 1 - a\0b\n\0\n", 18));
  CHECK(r.log == std::string("plan 1\nok 1 'a\0b'\nother '\0'\n", 28));
}

TEST_CASE("a 100 MB line is parsed without trouble") {
  const size_t kSize = 100u << 20;
  Sink null_sink;
  Parser parser(&null_sink);
  parser.Line("1..3");
  std::string line = "ok 1 - ";
  line.append(kSize, 'x');
  line += " # TODO \\# why";
  parser.Line(line);
  std::string spaces(kSize, ' ');
  parser.Line(spaces);  // blank
  spaces += "ok 2";
  parser.Line(spaces);  // too deep: output and a parse error
  std::string garbage(kSize, '\\');
  parser.Line(std::string("not ok 2 ") + garbage);
  parser.End();
  CHECK(parser.tally().run == 2);
  CHECK(parser.tally().todo_passed == 1);
  CHECK(parser.tally().failed == 1);
  CHECK(parser.tally().parse_errors == 1);
}

TEST_CASE("common lines are parsed without allocating") {
  Sink null_sink;
  Parser parser(&null_sink);
  const std::vector<std::string> lines = {
      "TAP version 14", "1..1000",
      "ok 1 - first",   "# a comment",
      "some output",    "not ok 2 - second # TODO later",
      "  ---",          "  a: 1",
      "  ...",          "ok 3 - escaped \\# hash # SKIP reason"};
  for (const std::string& l : lines) parser.Line(l);  // warm up the buffers
  std::vector<std::string> body;
  for (int i = 4; i <= 1000; ++i) {
    body.push_back("ok " + std::to_string(i) + " - case \\#" +
                   std::to_string(i));
  }
  // The counter itself works.
  g_allocations = 0;
  g_counting = true;
  {
    std::vector<char> probe(100);
    CHECK(probe.size() == 100);
  }
  g_counting = false;
  CHECK(g_allocations == 1);

  g_allocations = 0;
  g_counting = true;
  for (const std::string& l : body) {
    parser.Line(l);
    parser.Line("# note");
    parser.Line("random output");
    parser.Line("");
  }
  g_counting = false;
  CHECK(g_allocations == 0);
  parser.End();
  CHECK(parser.Problems().empty());
}

TEST_CASE("a terminated YAML block is handed over whole, its indentation removed") {
  Result r = Parse(
      "1..1\r\n"
      "not ok 1 - x\n"
      "  ---\n"
      "  got: 1\n"
      "  expected:\n"
      "    - 2\n"
      "\n"
      "  ...\n");
  REQUIRE(r.yamls.size() == 1);
  CHECK(r.yamls[0] == "got: 1\nexpected:\n  - 2\n\n");
  Result open = Parse("1..1\nok 1\n  ---\n  a: 1\nok 2\n");
  CHECK(open.yamls.empty());  // unterminated: no block, a parse error
  CHECK(open.tally.parse_errors == 1);
}

TEST_CASE("TAP 12: a todo list in the plan makes those tests TODO") {
  Result r = Parse("1..3 todo 2 3\nok 1\nnot ok 2\nok 3\n");
  CHECK(r.log == "plan 3\nok 1 ''\nnot ok 2 '' # TODO\nok 3 '' # TODO\n");
  CHECK(r.tally.todo == 1);
  CHECK(r.tally.todo_passed == 1);
  CHECK(r.problems == "");
  // From TAP 13 on, it is not a plan.
  Result v13 = Parse("TAP version 13\n1..3 todo 2 3\nok 1\n");
  CHECK_FALSE(v13.tally.plan_seen);
}

}  // namespace
}  // namespace weft::tap

namespace weft::tap {
namespace {

TEST_CASE("a buffered subtest (Test2's ok N - name {) counts its test point at its closing brace") {
  Result r = Parse(
      "ok 1 - foo {\n"
      "    ok 1 - inner\n"
      "    1..1\n"
      "}\n"
      "not ok 2 - skipped one # TODO later {\n"
      "    not ok 1 - broken\n"
      "    1..1\n"
      "}\n"
      "1..2\n");
  CHECK(r.log ==
        "subtest 'foo'\n"
        "[foo] ok 1 'inner'\n"
        "[foo] plan 1\n"
        "ok 1 'foo'\n"
        "subtest 'skipped one'\n"
        "[skipped one] not ok 1 'broken'\n"
        "[skipped one] plan 1\n"
        "not ok 2 'skipped one' # TODO 'later'\n"
        "plan 2\n");
  CHECK(r.problems == "");
}

TEST_CASE("a buffered subtest without its closing brace is a parse error; its test point still counts") {
  Result r = Parse("ok 1 - foo {\n    ok 1 - inner\n    1..1\n1..1\n");
  CHECK(r.tally.run == 1);
  CHECK(r.tally.passed == 1);
  CHECK(r.tally.parse_errors == 1);
  CHECK(r.log.find("error: subtest 'foo' ended without its closing '}'") != std::string::npos);
}

}  // namespace
}  // namespace weft::tap
