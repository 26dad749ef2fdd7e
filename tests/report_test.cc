// The report renderers (JSON, TAP, JUnit, GitHub) on a real run's log,
// checked with the tools their readers use: Perl's TAP::Parser, xmllint
// against a JUnit XSD, Python's json.
#include <doctest/doctest.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <thread>

#include "support.h"

using namespace weft::testing;

namespace {

// A run with every kind of job, logged once for all the tests here.
struct Suite {
  TempDir d;
  std::string log;
  Suite() {
    d.Write("t/pass.sh", "echo 1..2; echo 'ok 1 - one'; echo 'ok 2 - two'\n");
    d.Write("t/fail.sh",
            "echo 'TAP version 13'; echo 1..2; echo 'ok 1 - fine'\n"
            "echo 'not ok 2 - compare <script>alert(1)</script>'\n"
            "printf '  ---\\n  at: {file: lib/x.pm, line: 42}\\n  got: 1\\n  ...\\n'\n"
            "echo '# expected 2, & more'\n");
    d.Write("t/skip.sh", "echo '1..0 # SKIP no database'\n");
    d.Write("t/todo.sh", "echo 1..2; echo ok 1; echo 'not ok 2 - later # TODO not yet'\n");
    d.Write("t/crash.sh", "echo 1..1; echo ok 1; echo 'dying' >&2; kill -SEGV $$\n");
    d.Write("t/native.sh",
            "printf '{\"type\":\"plan\",\"count\":1}\\n{\"type\":\"assert\",\"ok\":false,"
            "\"description\":\"native\",\"file\":\"src/a.c\",\"line\":7}\\n' >&$WEFT_EVENT_FD\n");
    d.Write("t/ctrl.sh",
            "echo 1..1; printf 'bell \\001 <b>bold</b>\\n'; echo '<script>x</script>' >&2;"
            " echo 'not ok 1'\n");
    RunOptions o;
    o.cwd = d.path();
    Result r = Run({Bin("weft"), "test", "-j2", "--order=name", "--log=run.jsonl"}, o);
    REQUIRE(r.code == 1);
    log = d.path() + "/run.jsonl";
  }
  Result Render(const std::string& name, std::vector<std::string> args = {}) {
    std::vector<std::string> argv = {Bin(name)};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back(log);
    return Run(argv);
  }
};

}  // namespace

TEST_CASE("weft-render-tap: one TAP stream that TAP::Parser and weft read the same way") {
  Suite s;
  Result tap14 = s.Render("weft-render-tap");
  REQUIRE(tap14.code == 0);
  CHECK(tap14.out.rfind("TAP version 14\n", 0) == 0);
  CHECK(Has(tap14.out, "# Subtest: t/fail.sh\n    ok 1 - fine\n"
                       "    not ok 2 - compare <script>alert(1)</script>\n"));
  CHECK(Has(tap14.out, "ok 6 - t/skip.sh # SKIP no database\n"));
  CHECK(Has(tap14.out, "    not ok 2 - later # TODO not yet\n"));
  CHECK(Has(tap14.out, "\n1..7\n"));
  // TAP::Parser 3.44 knows no TAP 14: --tap-version 13 is the same stream.
  Result tap13 = s.Render("weft-render-tap", {"--tap-version=13"});
  CHECK(tap13.out.substr(tap13.out.find('\n')) == tap14.out.substr(tap14.out.find('\n')));
  s.d.Write("out13.tap", tap13.out);
  Result perl = Run(
      {"/usr/bin/perl", "-MTAP::Parser", "-e",
       "my $p = TAP::Parser->new({source => $ARGV[0]}); 1 while $p->next;"
       "print join(' ', 'run', $p->tests_run, 'failed', $p->failed, 'skipped',"
       " $p->skipped, 'errors', scalar($p->parse_errors)), qq(\\n);",
       s.d.path() + "/out13.tap"});
  // Jobs in name order: crash ctrl fail native pass skip todo.
  CHECK(perl.out == "run 7 failed 1 2 3 4 skipped 6 errors 0\n");
  // prove reads it as one test file, the jobs its tests.
  RunOptions in_dir;
  in_dir.cwd = s.d.path();
  Result prove = Run({"/usr/bin/prove", "out13.tap"}, in_dir);
  CHECK(prove.code == 1);
  CHECK(Has(prove.out, "out13.tap (Wstat: 0 Tests: 7 Failed: 4)\n  Failed tests:  1-4\n"));
  CHECK(!Has(prove.out, "Parse errors"));
  // weft's own parser (TAP 14, subtests judged) agrees.
  s.d.Write("out14.tap", tap14.out);
  Result weft = Run({Bin("weft-auditor"), "--", "cat", s.d.path() + "/out14.tap"});
  CHECK(Has(weft.out, R"x("reasons":["4 of 7 assertions failed (#1, #2, #3, #4)"])x"));
  CHECK(Has(weft.out, R"("parse_errors":0)"));
}

TEST_CASE("weft-render-junit: a retried job's failed attempts, as flaky or rerun failures") {
  TempDir d;
  d.Write("t/flaky.sh",
          "echo 1..1\n"
          "if [ \"$WEFT_ATTEMPT\" = 1 ]; then echo 'not ok 1 - first try'; else echo ok 1; fi\n");
  d.Write("t/broken.sh", "echo 1..1; echo \"not ok 1 - try $WEFT_ATTEMPT\"\n");
  RunOptions o;
  o.cwd = d.path();
  REQUIRE(Run({Bin("weft"), "test", "-j1", "--retries=1", "--order=name", "--log=run.jsonl"}, o)
              .code == 1);
  for (bool per_job : {false, true}) {
    CAPTURE(per_job);
    std::vector<std::string> argv = {Bin("weft-render-junit"), "-o", d.path() + "/junit.xml"};
    if (per_job) argv.push_back("--per-job");
    argv.push_back(d.path() + "/run.jsonl");
    REQUIRE(Run(argv).code == 0);
    Result lint = Run({"/usr/bin/xmllint", "--noout", "--schema",
                       std::string(WEFT_SOURCE) + "/tests/junit/junit.xsd", d.path() + "/junit.xml"});
    CHECK(lint.code == 0);
    std::string j = d.Read("junit.xml");
    // The flaky job passed in the end: no failure, its first attempt a
    // flakyFailure; the broken one failed twice: its first a rerunFailure.
    CHECK(Has(j, "<flakyFailure message=\"attempt 1: 1 of 1 assertion failed (#1)\" "
                 "type=\"weft.attempt\">"));
    CHECK(Has(j, "<rerunFailure message=\"attempt 1: 1 of 1 assertion failed (#1)\" "
                 "type=\"weft.attempt\">"));
    CHECK(!Has(j, "<flakyFailure message=\"attempt 2"));
    CHECK(!Has(j, "<rerunFailure message=\"attempt 2"));
    size_t flaky = j.find("classname=\"t/flaky.sh\"");
    if (per_job) flaky = j.find("<testcase name=\"t/flaky.sh\"");
    REQUIRE(flaky != std::string::npos);
    std::string flaky_case = j.substr(flaky, j.find("</testcase>", flaky) - flaky);
    CHECK(!Has(flaky_case, "<failure"));
    CHECK(Has(flaky_case, "<flakyFailure"));
    if (per_job)
      CHECK(Has(j, "tests=\"2\" failures=\"1\" errors=\"0\""));
    else
      CHECK(Has(j, "<testsuite name=\"t/flaky.sh\" tests=\"2\" failures=\"0\" errors=\"0\""));
  }
}

TEST_CASE("weft-render-junit: valid JUnit XML, escaped, with failures where they happened") {
  Suite s;
  Result xml = s.Render("weft-render-junit", {"-o", s.d.path() + "/junit.xml"});
  REQUIRE(xml.code == 0);
  CHECK(xml.out == "");
  Result lint = Run({"/usr/bin/xmllint", "--noout", "--schema", std::string(WEFT_SOURCE) + "/tests/junit/junit.xsd",
                     s.d.path() + "/junit.xml"});
  CHECK(lint.code == 0);
  CHECK(lint.err == s.d.path() + "/junit.xml validates\n");
  std::string j = s.d.Read("junit.xml");
  CHECK(!Has(j, "<script>"));
  CHECK(!Has(j, "\x01"));
  CHECK(Has(j, "<testcase name=\"2 - compare &lt;script&gt;alert(1)&lt;/script&gt;\" "
               "classname=\"t/fail.sh\""));
  CHECK(Has(j, "<failure message=\"compare &lt;script&gt;alert(1)&lt;/script&gt;\" "
               "type=\"weft.assertion\">at lib/x.pm line 42\n  ---\n  at: {file: lib/x.pm, "
               "line: 42}\n  got: 1\n  ...\n# expected 2, &amp; more</failure>"));
  CHECK(Has(j, "<testsuite name=\"t/skip.sh\" tests=\"1\" failures=\"0\" errors=\"0\" skipped=\"1\""));
  CHECK(Has(j, "<failure message=\"killed by SIGSEGV\" type=\"weft.job\">"));
  CHECK(Has(j, "<system-err>dying\n</system-err>"));
  CHECK(Has(j, "bell \xEF\xBF\xBD &lt;b&gt;bold&lt;/b&gt;"));
  Result per_job = s.Render("weft-render-junit", {"--per-job"});
  s.d.Write("per-job.xml", per_job.out);
  CHECK(Run({"/usr/bin/xmllint", "--noout", "--schema", std::string(WEFT_SOURCE) + "/tests/junit/junit.xsd",
             s.d.path() + "/per-job.xml"})
            .code == 0);
  CHECK(Has(per_job.out, "tests=\"7\" failures=\"4\" errors=\"0\" skipped=\"1\""));
}

TEST_CASE("weft-render-json: one object a script can read") {
  Suite s;
  Result json = s.Render("weft-render-json");
  REQUIRE(json.code == 0);
  s.d.Write("out.json", json.out);
  Result py = Run({"/usr/bin/python3", "-c",
                   "import json,sys; r = json.load(open(sys.argv[1]));"
                   "print(r['verdict'], r['exit'], r['counts']);"
                   "f = [j for j in r['jobs'] if j['name'] == 't/fail.sh'][0];"
                   "print(f['verdict'], f['failures'][0]['file'], f['failures'][0]['line'],"
                   " f['failures'][0]['description']);"
                   "c = [j for j in r['jobs'] if j['name'] == 't/crash.sh'][0];"
                   "print(c['signal'], c['reasons'])",
                   s.d.path() + "/out.json"});
  CHECK(py.out ==
        "fail 1 {'jobs': 7, 'passed': 2, 'failed': 4, 'skipped': 1, 'flaky': 0, 'cancelled': 0}\n"
        "fail lib/x.pm 42 compare <script>alert(1)</script>\n"
        "SIGSEGV ['killed by SIGSEGV']\n");
}

TEST_CASE("weft-render-github: annotations at the failing lines, and per failed test") {
  Suite s;
  Result gh = s.Render("weft-render-github");
  REQUIRE(gh.code == 0);
  CHECK(Has(gh.out, "::error file=lib/x.pm,line=42,title=t/fail.sh::not ok 2 - compare "
                    "<script>alert(1)</script>%0A  ---%0A"));
  CHECK(Has(gh.out, "::error file=src/a.c,line=7,title=t/native.sh::not ok - native\n"));
  CHECK(Has(gh.out, "::error title=t/crash.sh failed::killed by SIGSEGV\n"));
  CHECK(!Has(gh.out, "t/pass.sh"));
}

TEST_CASE("every renderer prints the same from stdin, a log, a compressed log and a growing one") {
  Suite s;
  std::string whole = s.d.Read("run.jsonl");
  REQUIRE(Run({"/usr/bin/zstd", "-q", s.log, "-o", s.d.path() + "/run.jsonl.zst"}).code == 0);
  size_t half = whole.find('\n', whole.size() / 2) + 1;
  for (const char* name : {"weft-render-term", "weft-render-json", "weft-render-tap",
                           "weft-render-junit", "weft-render-github", "weft-render-html"}) {
    CAPTURE(name);
    Result file = s.Render(name);
    CHECK(file.out.size() > 100);
    Result in = Run({"/bin/sh", "-c", "exec \"$0\" < \"$1\"", Bin(name), s.log});
    CHECK(in.out == file.out);
    CHECK(in.code == file.code);
    Result zst = Run({Bin(name), s.d.path() + "/run.jsonl.zst"});
    CHECK(zst.out == file.out);
    CHECK(zst.code == file.code);
    // Half the run is there; the rest comes while it follows.
    s.d.Write("growing.jsonl", whole.substr(0, half));
    RunOptions o;
    Child renderer({Bin(name), "--follow", s.d.path() + "/growing.jsonl"}, o);
    usleep(300 * 1000);
    CHECK(Alive(renderer.pid()));  // the run has not ended yet: it waits
    s.d.Append("growing.jsonl", whole.substr(half));
    Result followed = renderer.Wait();
    CHECK(followed.out == file.out);
    CHECK(followed.code == file.code);
  }
}

TEST_CASE("report renderers: an unknown schema is refused, a missing log is named") {
  TempDir d;
  d.Write("new.jsonl", "{\"type\":\"hello\",\"schema\":\"2.0\",\"producer\":\"x\"}\n");
  for (const char* name : {"weft-render-json", "weft-render-tap", "weft-render-junit",
                           "weft-render-github"}) {
    CAPTURE(name);
    Result r = Run({Bin(name), d.path() + "/new.jsonl"});
    CHECK(r.code == 2);
    CHECK(r.err.rfind(std::string(name) + ": error: ", 0) == 0);
    r = Run({Bin(name), d.path() + "/missing.jsonl"});
    CHECK(r.code == 3);
    CHECK(r.err == std::string(name) + ": error: cannot open " + d.path() +
                       "/missing.jsonl: No such file or directory\n");
  }
}

TEST_CASE("every reader of the stream survives events that break off in the middle") {
  // Each breaks where a reader looks on past it (simdjson On-Demand, read
  // on after such an error, read out of bounds: a crash, before).
  std::string stream =
      R"({"type":"hello","schema":"1.0","producer":"x"})" "\n"
      R"({"type":"run.start","run":"r1","ts":1,"slots":1})" "\n"
      R"({"type":"job.start","run":"r1","job":1,"ts":2,"name":"t/a.t","argv" ["t/a.t"]})" "\n"
      R"({"type":"assert","run":"r1","job":1,"ok":false,"number":1,"description" "x","yaml":{}})" "\n"
      R"({"type":"output","run":"r1","job":1,"stream":"stdout","text":"hi","x":[1,})" "\n"
      R"({"type":"job.end","run":"r1","job":1,"ts":3,"name":"t/a.t","verdict":"fail","exit":{"code" 1},"counts":{"run":1,"failed":1},"duration_us":5})" "\n"
      R"({"type":"job.end","run":"r1","job":2,"ts":3,"name":"t/b.t","verdict":"pass","reasons":["a",],"counts":{"run":1}})" "\n"
      R"({"type":"summary","run":"r1","verdict":"fail","exit":1,"jobs":{"planned":2 "passed":1}})" "\n"
      R"({"type":"run.end","run":"r1","ts":4})" "\n";
  RunOptions o;
  o.input = stream;
  for (std::string name : {"weft-render-json", "weft-render-tap", "weft-render-junit",
                           "weft-render-github", "weft-render-html", "weft-render-term",
                           "weft-overlord"}) {
    CAPTURE(name);
    Result r = Run({Bin(name)}, o);
    CHECK(r.signal == 0);
    CHECK(r.code >= 0);
    CHECK(r.code <= 3);
    CHECK(r.err.find("Sanitizer") == std::string::npos);
  }
  // What could be read is there: the second job, whole.
  Result json = Run({Bin("weft-render-json")}, o);
  CHECK(json.out.find(R"("name":"t/b.t","verdict":"pass")") != std::string::npos);
}

TEST_CASE("weft-render-html: one self-contained page; test output is text, never markup") {
  Suite s;
  Result html = s.Render("weft-render-html", {"-o", s.d.path() + "/run.html"});
  REQUIRE(html.code == 0);
  std::string page = s.d.Read("run.html");
  // Self-contained: nothing fetched from anywhere.
  CHECK(!Has(page, "http://"));
  CHECK(!Has(page, "https://"));
  CHECK(!Has(page, "<link"));
  // The tests' "<script>" and "<b>" are text; the page's own script is one.
  CHECK(Has(page, "compare &lt;script&gt;alert(1)&lt;/script&gt;"));
  CHECK(Has(page, "&lt;b&gt;bold&lt;/b&gt;"));
  size_t scripts = 0;
  for (size_t at = page.find("<script"); at != std::string::npos; at = page.find("<script", at + 1))
    ++scripts;
  CHECK(scripts == 1);
  // What a browser makes of it: Debian's chromium, headless, reading the
  // DOM after the page's script ran (sorting by duration, longest first).
  Result dom = Run({"/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu",
                    "--no-first-run", "--dump-dom",
                    "file://" + s.d.path() + "/run.html?sort=duration-desc"});
  REQUIRE(dom.code == 0);
  CHECK(Has(dom.out, "<title>weft run "));
  CHECK(Has(dom.out, ": FAIL</title>"));
  CHECK(Has(dom.out, "data-sorted=\"duration-desc\""));
  // Seven rows, and no element the tests' output would have made.
  size_t rows = 0;
  for (size_t at = dom.out.find("<tr><td"); at != std::string::npos; at = dom.out.find("<tr><td", at + 1))
    ++rows;
  CHECK(rows == 7);
  CHECK(!Has(dom.out, "<b>bold</b>"));
  CHECK(Has(dom.out, "<svg id=\"timeline\""));
  CHECK(Has(dom.out, "2 passed, 4 failed, 1 skipped"));
}

TEST_CASE("a big report is written as it is made: whole to stdout or -o FILE, a failed write said") {
  TempDir d;
  // 3,000 jobs: a JSON report of some 700 KB, written 64 KiB at a time.
  std::string log =
      R"({"type":"hello","run":"r1","seq":0,"ts":1,"schema":"1.0","producer":"weft-runner","version":"0.1.0"})"
      "\n"
      R"({"type":"run.start","run":"r1","seq":1,"ts":2,"argv":[],"cwd":"/","host":"h","jobs":3000})"
      "\n";
  for (int j = 1; j <= 3000; ++j) {
    std::string job = R"("run":"r1","job":)" + std::to_string(j);
    log += R"({"type":"job.start",)" + job + R"(,"seq":1,"ts":3,"name":"t/)" +
           std::to_string(j) + ".t\"}\n";
    log += R"({"type":"job.end",)" + job + R"(,"seq":2,"ts":4,"name":"t/)" + std::to_string(j) +
           R"(.t","verdict":")" + (j % 1000 ? "pass" : "fail") +
           R"(","reasons":[],"exit":{"code":0,"signal":null},"duration_us":5})" + "\n";
  }
  log += R"({"type":"summary","run":"r1","seq":2,"ts":5,"verdict":"fail","exit":1,"wall_us":9})"
         "\n"
         R"({"type":"run.end","run":"r1","seq":3,"ts":6})"
         "\n";
  d.Write("run.jsonl", log);
  std::string path = d.path() + "/run.jsonl";
  Result json = Run({Bin("weft-render-json"), path});
  REQUIRE(json.code == 0);
  CHECK(json.out.size() > 500000);
  d.Write("out.json", json.out);
  Result py = Run({"/usr/bin/python3", "-c",
                   "import json,sys; r = json.load(open(sys.argv[1]));"
                   "print(len(r['jobs']), r['counts']['failed'], r['jobs'][-1]['name'])",
                   d.path() + "/out.json"});
  CHECK(py.out == "3000 3 t/3000.t\n");
  // -o FILE: the same bytes, and nothing else left in the directory.
  std::string dir = d.path() + "/reports";
  REQUIRE(Run({"/bin/mkdir", dir}).code == 0);
  Result to_file = Run({Bin("weft-render-json"), "-o", dir + "/r.json", path});
  CHECK(to_file.code == 0);
  CHECK(to_file.out.empty());
  CHECK(d.Read("reports/r.json") == json.out);
  CHECK(Run({"/bin/ls", "-A", dir}).out == "r.json\n");
  // A write to FILE that fails halfway (a file size limit): said, exit 3,
  // and no FILE, no part of it left.
  Result half = Run({"/bin/sh", "-c", "ulimit -f 100; trap '' XFSZ; exec \"$0\" -o \"$1\" \"$2\"",
                     Bin("weft-render-json"), dir + "/half.json", path});
  CHECK(half.code == 3);
  CHECK(half.err == "weft-render-json: error: cannot write " + dir + "/half.json: File too large\n");
  CHECK(Run({"/bin/ls", "-A", dir}).out == "r.json\n");
  // A write that fails: said, exit 3 (for a report made whole, too).
  for (const char* name : {"weft-render-json", "weft-render-tap"}) {
    CAPTURE(name);
    Result full = Run({"/bin/sh", "-c", "\"$0\" \"$1\" > /dev/full", Bin(name), path});
    CHECK(full.code == 3);
    CHECK(full.err ==
          std::string(name) + ": error: cannot write the report: No space left on device\n");
    Result nowhere = Run({Bin(name), "-o", d.path() + "/missing/r.out", path});
    CHECK(nowhere.code == 3);
    CHECK(nowhere.err == std::string(name) + ": error: cannot write " + d.path() +
                             "/missing/r.out: No such file or directory\n");
  }
}
