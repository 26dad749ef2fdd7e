// The runner as a scheduler, through the real binaries: weft.toml, job
// specs, ordering, groups, retries, bail out, Ctrl-C.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "support.h"

using namespace weft::testing;

namespace {

Result Weft(const TempDir& dir, std::vector<std::string> args,
            const std::string& input = "") {
  std::vector<std::string> argv = {Bin("weft")};
  argv.insert(argv.end(), args.begin(), args.end());
  RunOptions o;
  o.cwd = dir.path();
  o.input = input;
  return Run(argv, o);
}

Result Runner(const TempDir& dir, std::vector<std::string> args,
              const std::string& input = "") {
  std::vector<std::string> argv = {Bin("weft-runner")};
  argv.insert(argv.end(), args.begin(), args.end());
  RunOptions o;
  o.cwd = dir.path();
  o.input = input;
  return Run(argv, o);
}

// The job names of `weft list` output, in order.
std::vector<std::string> Names(const std::string& jsonl) {
  std::vector<std::string> names;
  for (const auto& line : Lines(jsonl)) {
    auto at = line.find("\"name\":\"");
    if (at == std::string::npos) continue;
    at += 8;
    names.push_back(line.substr(at, line.find('"', at) - at));
  }
  return names;
}

}  // namespace

TEST_CASE("weft.toml errors name the file, the line and the key, and exit 2") {
  TempDir d;
  d.Write("t/a.sh", "echo 1..1; echo ok 1\n");
  struct Case {
    std::string toml, err;
  } cases[] = {
      {"jobs = 2\ntimout = 3\n",
       "weft: error: weft.toml:2: timout: unknown key (did you mean \"timeout\"?)\n"},
      {"timeout = \"ten\"\n", "weft: error: weft.toml:1: timeout: must be a number of seconds\n"},
      {"jobs = 0\n", "weft: error: weft.toml:1: jobs: must be from 1 to 100000\n"},
      {"leaks = \"maybe\"\n",
       "weft: error: weft.toml:1: leaks: must be one of \"fail\", \"warn\"\n"},
      {"[[group]]\nname = \"db\"\n", "weft: error: weft.toml:1: group: needs paths\n"},
      {"[[override]]\npaths = [\"t/*\"]\nretires = 2\n",
       "weft: error: weft.toml:3: retires: unknown key (did you mean \"retries\"?)\n"},
      {"[render]\ncolour = \"never\"\n",
       "weft: error: weft.toml:2: colour: unknown key (did you mean \"color\"?)\n"},
      {"[render.colors]\nfial = 1\n",
       "weft: error: weft.toml:2: render.colors.fial: unknown key (did you mean \"fail\"?)\n"},
      {"[render.colors]\npass = 256\n",
       "weft: error: weft.toml:2: render.colors.pass: must be a 256-colour number (0-255) "
       "or \"#rrggbb\"\n"},
      {"[render.colors]\npass = \"green\"\n",
       "weft: error: weft.toml:2: render.colors.pass: must be a 256-colour number (0-255) "
       "or \"#rrggbb\"\n"},
      {"[[service]]\nname = \"db\"\ncomand = \"x\"\n",
       "weft: error: weft.toml:3: comand: unknown key (did you mean \"command\"?)\n"},
      {"[[service]]\nname = \"db\"\ncommand = \"x\"\nready_port = 1\nready_file = \"f\"\n",
       "weft: error: weft.toml:1: service: takes one of ready_port, ready_file and "
       "ready_line\n"},
      {"[[service]]\nname = \"db\"\ncommand = \"x\"\nready_port = 70000\n",
       "weft: error: weft.toml:4: ready_port: must be from 1 to 65535\n"},
      {"[[service]]\ncommand = \"x\"\n", "weft: error: weft.toml:1: service: needs a name\n"},
      {"jobs = [\n", ""},  // a TOML syntax error: its own message
  };
  for (const auto& c : cases) {
    CAPTURE(c.toml);
    d.Write("weft.toml", c.toml);
    Result r = Weft(d, {"test"});
    CHECK(r.code == 2);
    CHECK(r.out == "");
    if (!c.err.empty())
      CHECK(r.err == c.err);
    else
      CHECK(r.err.rfind("weft: error: weft.toml:", 0) == 0);
    // The runner alone says the same, under its own name.
    Result runner = Runner(d, {"--list"});
    CHECK(runner.code == 2);
    if (!c.err.empty()) CHECK(runner.err == "weft-runner" + c.err.substr(4));
  }
}

TEST_CASE("weft.toml sets paths, interpreters, env, include/exclude and per-path limits; flags win") {
  TempDir d;
  d.Write("weft.toml",
          "paths = [\"checks\"]\n"
          "exclude = [\"checks/skip-me*\"]\n"
          "timeout = 30\n"
          "[env]\nGREETING = \"hello\"\nDEBUG = true\n"
          "[interpreters]\n\".chk\" = [\"sh\", \"-e\"]\n"
          "[[override]]\npaths = [\"checks/slow*\"]\ntimeout = 120\n"
          "env = { GREETING = \"slowly\" }\n");
  d.Write("checks/a.chk", "echo 1..1; echo \"ok 1 - $GREETING $DEBUG $WEFT_JOBS\"\n");
  d.Write("checks/slow.chk", "echo 1..1; echo \"ok 1 - $GREETING\"\n");
  d.Write("checks/skip-me.chk", "exit 1\n");
  Result list = Weft(d, {"list", "-j3"});
  REQUIRE(list.code == 0);
  auto lines = Lines(list.out);
  REQUIRE(lines.size() == 2);
  CHECK(Has(lines[0], R"("name":"checks/a.chk","argv":[")"));
  CHECK(Has(lines[0], R"(/sh","-e","checks/a.chk"],"env":{"DEBUG":"1","GREETING":"hello"},"timeout_s":30.0,)"));
  CHECK(Has(lines[1], R"("env":{"DEBUG":"1","GREETING":"slowly"},"timeout_s":120.0,)"));
  // A flag given wins over the file, per-path overrides included.
  Result flagged = Weft(d, {"list", "--timeout=5", "--env=GREETING=flag"});
  for (const auto& line : Lines(flagged.out)) {
    CHECK(Has(line, R"("timeout_s":5.0,)"));
    CHECK(Has(line, R"("GREETING":"flag")"));
  }
  Result run = Weft(d, {"test", "-j3", "-v"});
  CHECK(run.code == 0);
  CHECK(Has(run.out, "checks/a.chk: ok 1 - hello 1 3\n"));
  CHECK(Has(run.out, "checks/slow.chk: ok 1 - slowly\n"));
  CHECK(!Has(run.out, "skip-me"));
}

TEST_CASE("weft.toml in a directory above: the tests run from the project root") {
  TempDir d;
  d.Write("weft.toml", "paths = \"t\"\n");
  d.Write("t/where.sh", "echo 1..1; echo \"ok 1 - in $(basename \"$PWD\")\"\n");
  d.Write("t/sub/x.sh", "echo 1..1; echo ok 1\n");
  d.Write("docs/README", "");
  RunOptions o;
  o.cwd = d.path() + "/docs";
  Result r = Run({Bin("weft"), "list"}, o);
  CHECK(Names(r.out) == std::vector<std::string>{"t/sub/x.sh", "t/where.sh"});
  // A path given from below the root means the same file.
  o.cwd = d.path() + "/t";
  r = Run({Bin("weft"), "list", "sub"}, o);
  CHECK(Names(r.out) == std::vector<std::string>{"t/sub/x.sh"});
  r = Run({Bin("weft"), "test", "-v", "where.sh"}, o);
  CHECK(r.code == 0);
  CHECK(Has(r.out, "t/where.sh: ok 1 - in " +
                       d.path().substr(d.path().rfind('/') + 1) + "\n"));
  // The log is the project's, at the root.
  CHECK(!d.Read(".weft/latest").empty());
}

TEST_CASE("job specs from weft list run as they are through --jobs-from") {
  TempDir d;
  d.Write("t/a.sh", "echo 1..1; echo \"ok 1 - a $X\"\n");
  d.Write("t/b.sh", "echo 1..1; echo \"ok 1 - b $X\"\n");
  Result list = Weft(d, {"list", "--env=X=from-list"});
  REQUIRE(list.code == 0);
  d.Write("jobs.jsonl", list.out);
  // From a file, and from stdin (a stream), the same run.
  for (const std::string& from : {std::string("jobs.jsonl"), std::string("-")}) {
    CAPTURE(from);
    Result r = Runner(d, {"--jobs-from", from}, from == "-" ? list.out : "");
    CHECK(r.code == 0);
    CHECK(Has(r.out, R"("description":"a from-list")"));
    CHECK(Has(r.out, R"("description":"b from-list")"));
    CHECK(Has(r.out, R"("type":"run.end")"));
  }
  // A spec with only argv; a bad line is an error naming file and line.
  d.Write("bad.jsonl", "{\"type\":\"job\",\"argv\":[\"sh\",\"t/a.sh\"]}\n{\"type\":\"job\"}\n");
  Result bad = Runner(d, {"--jobs-from", "bad.jsonl"});
  CHECK(bad.code == 2);
  CHECK(bad.err == "weft-runner: error: bad.jsonl:2: \"argv\" must be a non-empty array of strings\n");
}

TEST_CASE("a control stream on stdin: jobs as they come, then stop") {
  TempDir d;
  d.Write("t/a.sh", "echo 1..1; echo ok 1\n");
  std::string input =
      "{\"type\":\"job\",\"name\":\"first\",\"argv\":[\"sh\",\"t/a.sh\"]}\n"
      "{\"type\":\"reload\"}\n"
      "{\"type\":\"nonsense\"}\n"
      "{\"type\":\"job\",\"name\":\"second\",\"argv\":[\"sh\",\"t/a.sh\"]}\n";
  Result r = Runner(d, {"--jobs-from", "-"}, input);
  CHECK(r.code == 0);  // the nonsense line is the controller's mistake: said, skipped
  CHECK(r.err == "weft-runner: warning: -:3: not a job spec or control line (job, stop, "
                 "bail, reload): {\"type\":\"nonsense\"}\n");
  CHECK(Has(r.out, R"("type":"warning")"));
  CHECK(Has(r.out, R"("type":"run.queue")"));
  CHECK(Has(r.out, R"("name":"first")"));
  CHECK(Has(r.out, R"("name":"second")"));
  CHECK(Has(r.out, R"("type":"reload")"));
  // Through the overlord, jobs announced on the way are counted.
  Result ok = Runner(d, {"--jobs-from", "-"},
                     "{\"type\":\"job\",\"argv\":[\"sh\",\"t/a.sh\"]}\n");
  CHECK(ok.code == 0);
  RunOptions o;
  o.input = ok.out;
  Result summary = Run({Bin("weft-overlord")}, o);
  CHECK(Has(summary.out, R"("jobs":{"planned":1,"passed":1,"failed":0,)"));
}

TEST_CASE("--shuffle: the same seed gives the same order; a new job leaves the others' order") {
  TempDir d;
  for (int i = 0; i < 12; ++i)
    d.Write("t/" + std::string(1, static_cast<char>('a' + i)) + ".sh", "echo 1..0\n");
  auto order = [&](std::vector<std::string> args) {
    args.insert(args.begin(), "list");
    return Names(Weft(d, args).out);
  };
  auto by_name = order({"--order=name"});
  auto s42 = order({"--shuffle", "--seed=42"});
  CHECK(s42 == order({"--order=shuffle", "--seed=42"}));
  CHECK(s42 != by_name);
  CHECK(s42 != order({"--shuffle", "--seed=43"}));
  std::vector<std::string> sorted = s42;
  std::sort(sorted.begin(), sorted.end());
  CHECK(sorted == by_name);
  d.Write("t/new.sh", "echo 1..0\n");
  auto with_new = order({"--shuffle", "--seed=42"});
  with_new.erase(std::find(with_new.begin(), with_new.end(), "t/new.sh"));
  CHECK(with_new == s42);
  // The seed is in run.start, and on the terminal, to reproduce a run.
  Result run = Runner(d, {"--shuffle", "--seed=7"});
  CHECK(Has(run.out, R"("order":"shuffle","seed":7)"));
  CHECK(Has(Weft(d, {"test", "--shuffle", "--seed=7"}).out,
            "Shuffled: --seed 7 runs them in this order again.\n"));
}

TEST_CASE("a group with max_parallel = 1 never runs two of its jobs at once") {
  TempDir d;
  d.Write("weft.toml",
          "jobs = 4\n[[group]]\nname = \"db\"\npaths = [\"t/db\"]\n");
  // Each db test marks the group busy; finding it busy is a failure.
  std::string db =
      "echo 1..1\n"
      "if ! mkdir \"$LOCK\" 2>/dev/null; then echo 'not ok 1 - overlap'; exit; fi\n"
      "sleep 0.2; rmdir \"$LOCK\"; echo ok 1\n";
  for (int i = 0; i < 4; ++i) d.Write("t/db/" + std::to_string(i) + ".sh", db);
  d.Write("t/free.sh", "echo 1..1; sleep 0.2; echo ok 1\n");
  Result r = Weft(d, {"test", "--env=LOCK=" + d.path() + "/lock"});
  CHECK(r.code == 0);
  CHECK(Has(r.out, "Files: 5 passed, 0 failed (5 in all)."));
  // (In the order of their durations in the history: either may be first.)
  Result list = Weft(d, {"list", "t/db/0.sh", "t/free.sh"});
  auto lines = Lines(list.out);
  REQUIRE(lines.size() == 2);
  if (Has(lines[0], "t/free.sh")) std::swap(lines[0], lines[1]);
  CHECK(Has(lines[0], R"("name":"t/db/0.sh")"));
  CHECK(Has(lines[0], R"("group":"db")"));
  CHECK(Has(lines[1], R"("name":"t/free.sh")"));
  CHECK(!Has(lines[1], R"("group")"));
}

TEST_CASE("--retries: a test that fails then passes is FLAKY; --flaky-fails fails the run") {
  TempDir d;
  d.Write("t/flaky.sh",
          "echo 1..1\n"
          "if [ \"$WEFT_ATTEMPT\" = 1 ]; then echo 'not ok 1 - first try'; else echo ok 1; fi\n");
  d.Write("t/ok.sh", "echo 1..1; echo ok 1\n");
  Result r = Weft(d, {"test", "-j1", "--retries=2", "--order=name"});
  CHECK(r.code == 0);
  // (The slowest list's order is the machine's; it is not what is tested.)
  std::string out = Normalize(r.out);
  size_t slow = out.find("Slowest: ");
  REQUIRE(slow != std::string::npos);
  out.erase(slow, out.find('\n', slow) + 1 - slow);
  CHECK(out ==
        "RETRY t/flaky.sh (<t>, attempt 1 of 3)\n"
        "  1 of 1 assertion failed (#1)\n"
        "  not ok 1 - first try\n"
        "FLAKY t/flaky.sh (<t>): passed on attempt 2 of 3\n"
        "\n"
        "Flaky tests (failed, then passed on a retry):\n"
        "  t/flaky.sh\n"
        "Files: 2 passed (1 flaky), 0 failed (2 in all).\n"
        "Assertions: 2 passed, 0 failed, 0 skipped, 0 todo (2 in all).\n"
        "Wall time <t>.  Result: PASS\n");
  // Every attempt is in the log, with its number.
  std::string log = d.Read(".weft/latest");
  CHECK(Has(log, R"("attempt":1,"attempts":3,"retry":true)"));
  CHECK(Has(log, R"("attempt":2,"attempts":3,"flaky":true)"));
  Result strict = Weft(d, {"test", "--retries=1", "--flaky-fails"});
  CHECK(strict.code == 1);
  CHECK(Has(strict.out, "Flaky tests (failed, then passed on a retry; --flaky-fails "
                        "counts them as failed):\n  t/flaky.sh\n"));
  CHECK(Has(strict.out, "Files: 1 passed, 1 failed (1 flaky) (2 in all).\n"));
  CHECK(Has(strict.out, "Result: FAIL\n"));
  // Without retries it simply fails.
  CHECK(Weft(d, {"test"}).code == 1);
}

TEST_CASE("--retries: a test that always fails runs 1 + N times and fails once") {
  TempDir d;
  d.Write("t/bad.sh", "echo 1..1; echo \"not ok 1 - attempt $WEFT_ATTEMPT\"\n");
  Result r = Weft(d, {"test", "--retries=2"});
  CHECK(r.code == 1);
  std::string out = Normalize(r.out);
  CHECK(Has(out, "RETRY t/bad.sh (<t>, attempt 1 of 3)\n"));
  CHECK(Has(out, "RETRY t/bad.sh (<t>, attempt 2 of 3)\n"));
  CHECK(Has(out, "FAIL t/bad.sh (<t>, attempt 3 of 3)\n  1 of 1 assertion failed (#1)\n"
                 "  not ok 1 - attempt 3\n"));
  CHECK(Has(out, "Files: 0 passed, 1 failed (1 in all).\n"));
}

TEST_CASE("a test's Bail out! stops the run: queued jobs cancelled, running ones stopped") {
  TempDir d;
  d.Write("t/a-bail.sh", "echo 1..2; echo ok 1; echo 'Bail out! no database'; sleep 60\n");
  d.Write("t/b-slow.sh", "echo 1..1; echo $$ > \"$PIDS/b\"; sleep 60; echo ok 1\n");
  for (int i = 0; i < 3; ++i)
    d.Write("t/c" + std::to_string(i) + ".sh", "echo 1..1; echo ok 1\n");
  Result r = Weft(d, {"test", "-j2", "--order=name", "--env=PIDS=" + d.path()});
  CHECK(r.code == 1);
  std::string out = Normalize(r.out);
  CHECK(Has(out, "BAIL t/a-bail.sh bailed out: no database; stopping the run\n"));
  CHECK(Has(out, "FAIL t/b-slow.sh (<t>)\n  stopped: the run bailed out\n"));
  CHECK(Has(out, "Files: 0 passed, 2 failed, 3 cancelled (5 in all).\n"));
  CHECK(Has(out, "Result: FAIL\n"));
  std::string log = d.Read(".weft/latest");
  CHECK(Has(log, R"("type":"run.bail")"));
  CHECK(Has(log, R"("type":"job.cancel")"));
  CHECK(Has(log, R"("bailed":"t/a-bail.sh bailed out: no database")"));
  // (Stopped before it could say its pid, it left nothing to look for.)
  if (std::string b = d.Read("b"); !b.empty() && b.back() == '\n') {
    pid_t pid = std::stoi(b);
    CHECK(WaitFor(10, [&] { return !Alive(pid); }));
  }
}

TEST_CASE("--bail N stops the run after N failed tests") {
  TempDir d;
  for (int i = 0; i < 5; ++i)
    d.Write("t/f" + std::to_string(i) + ".sh", "echo 1..1; echo 'not ok 1'\n");
  Result r = Weft(d, {"test", "-j1", "--bail=2"});
  CHECK(r.code == 1);
  CHECK(Has(r.out, "BAIL 2 tests failed (--bail 2); stopping the run\n"));
  CHECK(Has(r.out, "Files: 0 passed, 2 failed, 3 cancelled (5 in all).\n"));
}

TEST_CASE("Ctrl-C twice: the second kills tests that ignore SIGTERM at once") {
  TempDir d;
  d.HelperTest("t/stubborn", "plan 1 ignore-term pidfile " + d.path() + "/pid hang");
  RunOptions o;
  o.cwd = d.path();
  o.new_group = true;
  Child weft({Bin("weft"), "test", "--kill-grace=600", "t"}, o);
  pid_t test_pid = -1;
  REQUIRE(WaitFor(30, [&] {
    std::ifstream in(d.path() + "/pid");
    return static_cast<bool>(in >> test_pid);
  }));
  kill(-weft.pid(), SIGINT);
  // The test ignores the TERM; the grace is 10 minutes. A second Ctrl-C:
  usleep(300 * 1000);
  CHECK(Alive(test_pid));
  kill(-weft.pid(), SIGINT);
  Result r = weft.Wait();
  CAPTURE(r.out);
  CAPTURE(r.err);
  CHECK(r.code == 130);
  CHECK(Has(r.out, "Result: INTERRUPTED"));
  CHECK(WaitFor(10, [&] { return !Alive(test_pid); }));
  auto lines = Lines(d.Read(".weft/latest"));
  REQUIRE(!lines.empty());
  CHECK(Has(lines.back(), R"("type":"run.end")"));
}

TEST_CASE("history: longest first from earlier runs, --failed-first, --rerun-failed, a corrupt index rebuilt") {
  TempDir d;
  d.Write("t/a-quick.sh", "echo 1..1; echo ok 1\n");
  d.Write("t/b-slow.sh", "echo 1..1; sleep 0.5; echo ok 1\n");
  d.Write("t/c-fails.sh", "echo 1..1; echo 'not ok 1'\n");
  d.Write("t/d-quick.sh", "echo 1..1; echo ok 1\n");
  // No history yet: discovery order.
  CHECK(Names(Weft(d, {"list"}).out) ==
        std::vector<std::string>{"t/a-quick.sh", "t/b-slow.sh", "t/c-fails.sh", "t/d-quick.sh"});
  CHECK(Weft(d, {"test"}).code == 1);
  // The slow one first now; a test new since then first of all.
  d.Write("t/e-new.sh", "echo 1..1; echo ok 1\n");
  auto order = Names(Weft(d, {"list"}).out);
  REQUIRE(order.size() == 5);
  CHECK(order[0] == "t/e-new.sh");
  CHECK(order[1] == "t/b-slow.sh");
  CHECK(Has(Weft(d, {"list", "t/b-slow.sh"}).out, R"("expected_us":)"));
  CHECK(!Has(Weft(d, {"list", "t/b-slow.sh"}).out, R"("expected_us":null)"));
  order = Names(Weft(d, {"list", "--failed-first"}).out);
  CHECK(order[0] == "t/c-fails.sh");
  CHECK(Names(Weft(d, {"list", "--rerun-failed"}).out) ==
        std::vector<std::string>{"t/c-fails.sh"});
  // A corrupt index is rebuilt from the logs, with a warning.
  d.Write(".weft/history.sqlite", "not a database at all");
  Result r = Weft(d, {"list", "--rerun-failed"});
  CHECK(Names(r.out) == std::vector<std::string>{"t/c-fails.sh"});
  CHECK(Has(r.err, "weft-runner: warning: .weft/history.sqlite: file is not a database; "
                   "rebuilding it from the logs\n"));
  Result rebuilt = Weft(d, {"history", "rebuild"});
  CHECK(rebuilt.code == 0);
  CHECK(rebuilt.out ==
        "indexed 1 run (4 job results) from .weft/runs into .weft/history.sqlite\n");
  // Once it passes, nothing is left to rerun.
  d.Write("t/c-fails.sh", "echo 1..1; echo ok 1\n");
  CHECK(Weft(d, {"test", "--rerun-failed"}).code == 0);
  r = Weft(d, {"test", "--rerun-failed"});
  CHECK(r.code == 4);
  CHECK(Has(r.err, "--rerun-failed: nothing failed in the latest run ("));
}

TEST_CASE("under make -jN the runner takes its slots from make's jobserver") {
  TempDir d;
  // Each test counts the tests running beside it (itself included).
  std::string count =
      "echo 1..1; touch \"$RUNDIR/$$\"; ls \"$RUNDIR\" | wc -l >> \"$MAX\"\n"
      "sleep 0.4; rm \"$RUNDIR/$$\"; echo ok 1\n";
  for (int i = 0; i < 6; ++i) d.Write("t/" + std::to_string(i) + ".sh", count);
  d.Write("Makefile", "all:\n\t+" + Bin("weft-runner") + " --env=RUNDIR=" + d.path() +
                          "/run --env=MAX=" + d.path() + "/max t > " + d.path() +
                          "/events.jsonl\n");
  d.Write("run/.keep", "");
  RunOptions o;
  o.cwd = d.path();
  Result r = Run({"/usr/bin/make", "-s", "-j3"}, o);
  CHECK(r.code == 0);
  CHECK(r.err == "");
  int most = 0;
  std::istringstream in(d.Read("max"));
  for (int n; in >> n;) most = std::max(most, n);  // (ls skips .keep)
  CHECK(most == 3);
  CHECK(Has(d.Read("events.jsonl"), R"("type":"run.end")"));
}

TEST_CASE("a test that bails out is not retried, and the run's counts add up") {
  TempDir d;
  d.Write("t/a.sh", "echo 1..1; echo 'Bail out! broken'\n");
  for (int i = 0; i < 3; ++i) d.Write("t/b" + std::to_string(i) + ".sh", "echo 1..1; echo ok 1\n");
  Result r = Weft(d, {"test", "-j1", "--retries=2", "--order=name"});
  CHECK(r.code == 1);
  CHECK(!Has(r.out, "RETRY"));
  CHECK(Has(r.out, "  t/a.sh  bailed out: broken\n"));
  CHECK(Has(r.out, "Files: 0 passed, 1 failed, 3 cancelled (4 in all).\n"));
  std::string log = d.Read(".weft/latest");
  CHECK(Has(log, R"("jobs_done":1,"cancelled":3,)"));
}

TEST_CASE("from a subdirectory, relative --jobs-from and --stdin still name the same files") {
  TempDir d;
  d.Write("weft.toml", "");
  d.Write("t/read.sh", "echo 1..1; read line; echo \"ok 1 - $line\"\n");
  d.Write("sub/in.txt", "fed\n");
  d.Write("sub/specs.jsonl", "{\"type\":\"job\",\"argv\":[\"sh\",\"t/read.sh\"]}\n");
  RunOptions o;
  o.cwd = d.path() + "/sub";
  Result r = Run({Bin("weft-runner"), "--jobs-from=specs.jsonl", "--stdin=in.txt"}, o);
  CHECK(r.code == 0);
  CHECK(Has(r.out, R"("description":"fed")"));
  r = Run({Bin("weft"), "test", "-v", "--stdin=in.txt", "--log=here.jsonl", "../t"}, o);
  CHECK(r.code == 0);
  CHECK(Has(r.out, "t/read.sh: ok 1 - fed\n"));
  CHECK(Has(d.Read("sub/here.jsonl"), R"("type":"run.end")"));
}

TEST_CASE("a job spec's directory that does not exist is named in the failure") {
  TempDir d;
  d.Write("specs.jsonl",
          "{\"type\":\"job\",\"name\":\"x\",\"argv\":[\"true\"],\"cwd\":\"/nonexistent/dir\"}\n");
  Result r = Runner(d, {"--jobs-from=specs.jsonl"});
  CHECK(Has(r.out, R"("reasons":["cannot start true: cannot run it in /nonexistent/dir: No such file or directory"])"));
  // Its clock started, like any job's: no duration since 1970.
  CHECK(!Has(r.out, R"("ts":0,)"));
  Result shown = Run({Bin("weft-render-term")}, RunOptions{.input = r.out});
  CHECK(Has(shown.out, "FAIL x ("));
  CHECK(!Has(shown.out, "m05s"));
  CHECK(Lines(shown.out).front().size() < 20);
}

TEST_CASE("a file named on the command line runs even when weft.toml excludes it") {
  TempDir d;
  d.Write("weft.toml", "exclude = [\"t/manual\"]\n");
  d.Write("t/manual/poke.sh", "echo 1..1; echo ok 1\n");
  d.Write("t/auto.sh", "echo 1..1; echo ok 1\n");
  CHECK(Names(Weft(d, {"list"}).out) == std::vector<std::string>{"t/auto.sh"});
  CHECK(Names(Weft(d, {"list", "t/manual/poke.sh"}).out) ==
        std::vector<std::string>{"t/manual/poke.sh"});
}

TEST_CASE("--include, --exclude and --interpreter replace weft.toml's for one run") {
  TempDir d;
  d.Write("weft.toml", "exclude = [\"t/b*\"]\n[interpreters]\nsh = [\"sh\", \"-e\"]\n");
  d.Write("t/a.sh", "echo 1..0\n");
  d.Write("t/b.sh", "echo 1..0\n");
  d.Write("t/c.sh", "echo 1..0\n");
  CHECK(Names(Weft(d, {"list"}).out) == std::vector<std::string>{"t/a.sh", "t/c.sh"});
  CHECK(Names(Weft(d, {"list", "--exclude=t/c*"}).out) ==
        std::vector<std::string>{"t/a.sh", "t/b.sh"});
  CHECK(Names(Weft(d, {"list", "--include=t/c*", "--include", "t/a*"}).out) ==
        std::vector<std::string>{"t/a.sh", "t/c.sh"});
  Result r = Weft(d, {"list", "--interpreter", ".sh=bash -x", "t/a.sh"});
  CHECK(Has(r.out, R"(/bash","-x","t/a.sh"])"));
  CHECK(Has(Weft(d, {"list", "t/a.sh"}).out, R"(/sh","-e","t/a.sh"])"));
  r = Weft(d, {"list", "--interpreter", "sh"});
  CHECK(r.code == 2);
  CHECK(Has(r.err, "must be EXT=COMMAND"));
}

TEST_CASE("--control: a named pipe of control lines while the run goes on; controllers may come and go") {
  TempDir d;
  d.HelperTest("t/hang", "plan 1 pidfile " + d.path() + "/pid hang");
  std::string fifo = d.path() + "/control";
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  RunOptions o;
  o.cwd = d.path();
  Child runner({Bin("weft-runner"), "--control", "control", "--kill-grace=1", "t"}, o);
  REQUIRE(WaitFor(30, [&] { return access((d.path() + "/pid").c_str(), F_OK) == 0; }));
  auto say = [&](const std::string& line) {
    // Each write is a controller of its own: it opens, writes, closes.
    int fd = open(fifo.c_str(), O_WRONLY);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()));
    close(fd);
  };
  say("{\"type\":\"job\",\"argv\":[\"true\"]}\n");
  say("{\"type\":\"stop\"}\n");
  Result r = runner.Wait();
  CHECK(r.code == 130);
  CHECK(r.err == "weft-runner: warning: control:1: job specs come through --jobs-from, "
                 "not --control; skipped\n");
  CHECK(Has(r.out, R"("type":"warning")"));
  CHECK(Has(r.out, R"("interrupted":true)"));
  CHECK(Has(r.out, R"("jobs_done":1)"));
  CHECK(!Has(r.out, R"("argv":["true"])"));
}

TEST_CASE("a Perl test with -T on its #! line runs in taint mode, PERL5LIB passed as -I (as prove does)") {
  TempDir d;
  d.Write("lib/Here.pm", "package Here; sub v { 42 } 1;\n");
  d.Write("t/taint.t",
          "#!/usr/bin/env perl -T\n"
          "use Here;\n"
          "print \"1..2\\n\";\n"
          "print ${^TAINT} == 1 ? \"ok 1 - tainted\\n\" : \"not ok 1 - tainted\\n\";\n"
          "print Here::v() == 42 ? \"ok 2 - lib found\\n\" : \"not ok 2\\n\";\n");
  d.Write("t/plain.t", "#!/usr/bin/perl -w\nprint \"1..1\\nok 1 - plain ${^TAINT}\\n\";\n");
  RunOptions o;
  o.cwd = d.path();
  o.env = {"PERL5LIB=" + d.path() + "/lib"};
  Result list = Run({Bin("weft"), "list", "t"}, o);
  CHECK(Has(list.out, R"("argv":["/usr/bin/perl","-T","-I)" + d.path() + R"(/lib","t/taint.t"])"));
  CHECK(Has(list.out, R"("argv":["/usr/bin/perl","t/plain.t"])"));
  Result r = Run({Bin("weft"), "test", "-v", "t"}, o);
  CHECK(r.code == 0);
  CHECK(Has(r.out, "t/taint.t: ok 2 - lib found"));
  CHECK(Has(r.out, "t/plain.t: ok 1 - plain 0"));
}
