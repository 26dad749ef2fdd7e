// The whole chain, through the real binaries: what a user sees, the exit
// code, the log, and the process table afterwards.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "support.h"

using namespace weft::testing;

namespace {

// Runs `weft test ARGS` in "dir" and returns what it printed.
Result WeftTest(const TempDir& dir, std::vector<std::string> args) {
  std::vector<std::string> argv = {Bin("weft"), "test", "-j1"};
  argv.insert(argv.end(), args.begin(), args.end());
  RunOptions o;
  o.cwd = dir.path();
  return Run(argv, o);
}

std::string fmt_name(int i) { return "t/fork" + std::to_string(100 + i) + ".t"; }

// The summary block: everything from the blank line before "Files:".
std::string SummaryOf(const std::string& out) {
  auto at = out.rfind("\nFiles: ");
  if (at == std::string::npos) return "";
  auto start = out.rfind("\n\n", at);
  return out.substr(start == std::string::npos ? 0 : start);
}

}  // namespace

TEST_CASE("a passing test: summary only, exit 0, and a log that replays the same") {
  TempDir d;
  d.HelperTest("t/pass", "plan 2 ok first ok second");
  Result r = WeftTest(d, {"t/pass"});
  CHECK(r.code == 0);
  CHECK(Normalize(r.out) ==
        "\n"
        "Files: 1 passed, 0 failed (1 in all).\n"
        "Assertions: 2 passed, 0 failed, 0 skipped, 0 todo (2 in all).\n"
        "Slowest: t/pass <t>.\n"
        "Wall time <t>.  Result: PASS\n");
  CHECK(r.err == "");
  // The log holds the run; replaying it shows exactly what the live run did.
  struct stat st;
  REQUIRE(lstat((d.path() + "/.weft/latest").c_str(), &st) == 0);
  CHECK(S_ISLNK(st.st_mode));
  Result replay = Run({Bin("weft"), "replay", d.path() + "/.weft/latest"});
  CHECK(replay.code == 0);
  CHECK(replay.out == r.out);
}

TEST_CASE("a failed assertion shows its diagnostics, stderr and how to rerun it") {
  TempDir d;
  d.HelperTest("t/fail",
               "plan 2 ok first notok second line '#   Failed test' "
               "stderr 'diag on stderr' exit 1");
  Result r = WeftTest(d, {"t/fail"});
  CHECK(r.code == 1);
  CHECK(Normalize(r.out) ==
        "FAIL t/fail (<t>)\n"
        "  exited with status 1\n"
        "  1 of 2 assertions failed (#2)\n"
        "  not ok 2 - second\n"
        "      #   Failed test\n"
        "      diag on stderr\n"
        "  rerun: weft test t/fail\n"
        "\n"
        "Failed tests:\n"
        "  t/fail  exited with status 1; 1 of 2 assertions failed (#2)\n"
        "Files: 0 passed, 1 failed (1 in all).\n"
        "Assertions: 1 passed, 1 failed, 0 skipped, 0 todo (2 in all).\n"
        "Slowest: t/fail <t>.\n"
        "Wall time <t>.  Result: FAIL\n");
  Result replay = Run({Bin("weft"), "replay", d.path() + "/.weft/latest"});
  CHECK(replay.code == 1);
  CHECK(replay.out == r.out);
}

TEST_CASE("a skip-all test is a skipped file and the run passes") {
  TempDir d;
  d.HelperTest("t/skipall", "skipall 'no database'");
  Result r = WeftTest(d, {"-v", "t/skipall"});
  CHECK(r.code == 0);
  CHECK(Normalize(r.out).find("SKIP t/skipall (<t>)\n") != std::string::npos);
  CHECK(SummaryOf(r.out).find("Files: 0 passed, 0 failed, 1 skipped (1 in all).") !=
        std::string::npos);
}

TEST_CASE("a failing TODO assertion does not fail the test") {
  TempDir d;
  d.HelperTest("t/todo", "plan 2 ok one todo later");
  Result r = WeftTest(d, {"t/todo"});
  CHECK(r.code == 0);
  CHECK(SummaryOf(r.out).find(
            "Assertions: 1 passed, 0 failed, 0 skipped, 1 todo (2 in all).") !=
        std::string::npos);
}

TEST_CASE("a test killed by SIGSEGV fails with the signal named") {
  TempDir d;
  d.HelperTest("t/segv", "plan 2 ok one segv");
  Result r = WeftTest(d, {"t/segv"});
  CHECK(r.code == 1);
  CHECK(Normalize(r.out).rfind(
            "FAIL t/segv (<t>)\n"
            "  killed by SIGSEGV\n"
            "  planned 2 but ran 1\n"
            "  rerun: weft test t/segv\n",
            0) == 0);
}

TEST_CASE("a non-zero exit fails even when every assertion passed") {
  TempDir d;
  d.HelperTest("t/exit3", "plan 1 ok one exit 3");
  Result r = WeftTest(d, {"t/exit3"});
  CHECK(r.code == 1);
  CHECK(Normalize(r.out).rfind(
            "FAIL t/exit3 (<t>)\n  exited with status 3\n", 0) == 0);
  CHECK(SummaryOf(r.out).find("Assertions: 1 passed, 0 failed") !=
        std::string::npos);
}

TEST_CASE("a wrong plan and a missing plan fail with the reason") {
  TempDir d;
  d.HelperTest("t/a-wrongplan", "plan 3 ok a ok b");
  d.HelperTest("t/b-noplan", "ok a ok b");
  Result r = WeftTest(d, {"t"});
  CHECK(r.code == 1);
  std::string out = Normalize(r.out);
  CHECK(out.find("FAIL t/a-wrongplan (<t>)\n  planned 3 but ran 2\n") !=
        std::string::npos);
  CHECK(out.find("FAIL t/b-noplan (<t>)\n  no plan\n") != std::string::npos);
  CHECK(SummaryOf(r.out).find("Files: 0 passed, 2 failed (2 in all).") !=
        std::string::npos);
}

TEST_CASE("a test that only writes to stderr fails for want of a plan, and its stderr is shown") {
  TempDir d;
  d.HelperTest("t/stderronly", "stderr 'only stderr here'");
  Result r = WeftTest(d, {"t/stderronly"});
  CHECK(r.code == 1);
  CHECK(Normalize(r.out).rfind(
            "FAIL t/stderronly (<t>)\n"
            "  no plan\n"
            "  last 1 lines of other output:\n"
            "    stderr: only stderr here\n"
            "  rerun: weft test t/stderronly\n",
            0) == 0);
}

TEST_CASE("binary garbage is kept byte for byte in the log and shown safely") {
  TempDir d;
  d.HelperTest("t/garbage", "plan 1 ok one garbage 300 line '' notok two");
  Result r = WeftTest(d, {"t/garbage"});
  CHECK(r.code == 1);  // the garbage is not TAP; "not ok 2" after it counts
  // No raw control bytes reach the terminal.
  for (char c : r.out) {
    unsigned char u = static_cast<unsigned char>(c);
    CHECK_MESSAGE((u >= 0x20 || u == '\n' || u == '\t'), "control byte ", int(u), " in output");
  }
  // The log is valid JSONL and holds the exact bytes (base64) of invalid lines.
  std::string log = d.Read(".weft/latest");
  CHECK(log.find("\"text_b64\":") != std::string::npos);
  for (const auto& line : Lines(log)) {
    CHECK(line.rfind("{\"type\":\"", 0) == 0);
    CHECK(line.back() == '}');
  }
}

TEST_CASE("weft test where there are no tests exits 4 and says so") {
  TempDir d;
  d.Write("t/README", "not a test\n");
  Result r = WeftTest(d, {"t"});
  CHECK(r.code == 4);
  CHECK(r.err.find("weft-runner: warning: no tests found in t") != std::string::npos);
  CHECK(r.out.find("Result: NO TESTS (nothing ran)") != std::string::npos);
  // Without paths and without t/ or tests/: the same, with the reason.
  TempDir empty;
  Result r2 = WeftTest(empty, {});
  CHECK(r2.code == 4);
  CHECK(r2.err.find("no t/ or tests/ directory") != std::string::npos);
}

TEST_CASE("a path that does not exist is a usage error") {
  TempDir d;
  Result r = WeftTest(d, {"nope"});
  CHECK(r.code == 2);
  CHECK(r.err == "weft: error: nope: No such file or directory\n");
  CHECK(r.out == "");
}

TEST_CASE("a test that cannot be started fails with the reason, not a crash") {
  TempDir d;
  d.Write("t/badinterp", "#!/nonexistent/interpreter\n", true);
  Result r = WeftTest(d, {"t/badinterp"});
  CHECK(r.code == 1);
  CHECK(Normalize(r.out).rfind(
            "FAIL t/badinterp (<t>)\n"
            "  cannot start t/badinterp: no such file or directory\n",
            0) == 0);
}

TEST_CASE("a hanging test is stopped by --timeout and the run goes on") {
  TempDir d;
  d.HelperTest("t/a-hang", "plan 2 ok one hang");
  d.HelperTest("t/b-pass", "plan 1 ok one");
  Result r = WeftTest(d, {"--timeout=0.5", "--kill-grace=0.5", "t"});
  CHECK(r.code == 1);
  std::string out = Normalize(r.out);
  CHECK(out.find("TIMEOUT t/a-hang (<t>)\n  timed out after <t>\n  killed by SIGTERM\n") !=
        std::string::npos);
  CHECK(SummaryOf(r.out).find("Files: 1 passed, 1 failed (1 timed out) (2 in all).") !=
        std::string::npos);
}

namespace {

// Starts `weft test` on a test that hangs after writing its pid, and waits
// (on the pid file, not a clock) until the test runs.
struct HangingRun {
  TempDir d;
  std::unique_ptr<Child> weft;
  pid_t test_pid = -1;

  HangingRun() {
    d.HelperTest("t/hang", "plan 1 pidfile " + d.path() + "/pid hang");
    RunOptions o;
    o.cwd = d.path();
    o.new_group = true;
    weft = std::make_unique<Child>(
        std::vector<std::string>{Bin("weft"), "test", "--kill-grace=1", "t"}, o);
    REQUIRE(WaitFor(30, [&] {
      std::ifstream in(d.path() + "/pid");
      return static_cast<bool>(in >> test_pid);
    }));
    REQUIRE(Alive(test_pid));
  }

  // The chain's processes by name: children of weft, and their children.
  pid_t Find(const std::string& name) {
    std::vector<pid_t> todo = {weft->pid()};
    while (!todo.empty()) {
      pid_t p = todo.back();
      todo.pop_back();
      std::ifstream comm("/proc/" + std::to_string(p) + "/comm");
      std::string c;
      comm >> c;
      if (c == name.substr(0, 15)) return p;
      for (pid_t k : ChildrenOf(p)) todo.push_back(k);
    }
    return -1;
  }
};

}  // namespace

TEST_CASE("a chain process killed mid-run gives exit 3 and leaves no process behind") {
  for (const char* victim : {"weft-overlord", "weft-logger", "weft-render-term"}) {
    CAPTURE(victim);
    HangingRun run;
    pid_t runner = run.Find("weft-runner");
    pid_t auditor = run.Find("weft-auditor");
    pid_t pid = run.Find(victim);
    REQUIRE(pid > 0);
    REQUIRE(runner > 0);
    REQUIRE(auditor > 0);
    kill(pid, SIGKILL);
    Result r = run.weft->Wait();
    CHECK(r.code == 3);
    CHECK(r.err.find(std::string("weft: error: ") + victim +
                     " was killed by SIGKILL") != std::string::npos);
    for (pid_t p : {run.test_pid, runner, auditor})
      CHECK_MESSAGE(WaitFor(10, [&] { return !Alive(p); }), "pid ", p, " left behind");
  }
}

TEST_CASE("the runner killed with SIGKILL takes its auditors and tests with it") {
  HangingRun run;
  pid_t runner = run.Find("weft-runner");
  pid_t auditor = run.Find("weft-auditor");
  REQUIRE(runner > 0);
  REQUIRE(auditor > 0);
  kill(runner, SIGKILL);
  Result r = run.weft->Wait();
  CHECK(r.code == 3);
  CHECK(r.out.find("HARNESS ERROR weft-overlord: the stream ended before run.end") !=
        std::string::npos);
  CHECK(WaitFor(10, [&] { return !Alive(auditor); }));
  CHECK(WaitFor(10, [&] { return !Alive(run.test_pid); }));
  // The log is still whole lines, ending with the overlord's run.end.
  auto lines = Lines(run.d.Read(".weft/latest"));
  REQUIRE(!lines.empty());
  CHECK(lines.back().rfind("{\"type\":\"run.end\"", 0) == 0);
}

TEST_CASE("Ctrl-C stops the tests, closes the log and exits 130") {
  HangingRun run;
  pid_t auditor = run.Find("weft-auditor");
  REQUIRE(auditor > 0);
  // What a terminal does: SIGINT to the whole foreground process group.
  kill(-run.weft->pid(), SIGINT);
  Result r = run.weft->Wait();
  CHECK_MESSAGE(r.code == 130, r.out, r.err);
  CHECK(Normalize(r.out).find("FAIL t/hang (<t>)\n  interrupted\n") != std::string::npos);
  CHECK(r.out.find("Result: INTERRUPTED") != std::string::npos);
  CHECK(WaitFor(10, [&] { return !Alive(run.test_pid); }));
  CHECK(WaitFor(10, [&] { return !Alive(auditor); }));
  auto lines = Lines(run.d.Read(".weft/latest"));
  REQUIRE(!lines.empty());
  CHECK(lines.back().find("\"interrupted\":true") != std::string::npos);
}

TEST_CASE("SIGTERM sent to weft alone stops the run the same way") {
  HangingRun run;
  kill(run.weft->pid(), SIGTERM);
  Result r = run.weft->Wait();
  CHECK(r.code == 130);
  CHECK(WaitFor(10, [&] { return !Alive(run.test_pid); }));
}

TEST_CASE("weft itself killed with SIGKILL: the runner stops the run, no test is left") {
  HangingRun run;
  pid_t runner = run.Find("weft-runner");
  REQUIRE(runner > 0);
  kill(run.weft->pid(), SIGKILL);
  Result r = run.weft->Wait();
  CHECK(r.signal == SIGKILL);
  CHECK(WaitFor(10, [&] { return !Alive(run.test_pid); }));
  CHECK(WaitFor(10, [&] { return !Alive(runner); }));
  // The log still ends with the run's end.
  CHECK(WaitFor(10, [&] {
    auto lines = Lines(run.d.Read(".weft/latest"));
    return !lines.empty() && lines.back().rfind("{\"type\":\"run.end\"", 0) == 0;
  }));
}

TEST_CASE("regression: a bail-out reason that is not UTF-8 fails the job, not the harness") {
  TempDir d;
  d.HelperTest("t/bail", "plan 2 ok one bail 'bad\xff reason'");
  Result r = WeftTest(d, {"t/bail"});
  CHECK(r.code == 1);
  CHECK(r.out.find("HARNESS ERROR") == std::string::npos);
  CHECK(r.out.find("Bail out!  bad\xEF\xBF\xBD reason") != std::string::npos);
}

TEST_CASE("regression: control bytes in a test's name never reach the terminal") {
  TempDir d;
  d.HelperTest("t/esc\x1b[31mred", "plan 1 notok x");
  Result r = WeftTest(d, {"t"});
  CHECK(r.code == 1);
  CHECK(r.out.find('\x1b') == std::string::npos);
  CHECK(r.out.find("FAIL t/esc^[[31mred") != std::string::npos);
}

TEST_CASE("regression: what a timed-out test's own children were doing is not called a leak") {
  TempDir d;
  d.Write("t/hang.sh", "echo 1..1\nsleep 600\n");
  Result r = WeftTest(d, {"--timeout=0.3", "--kill-grace=0.5", "t"});
  CHECK(r.code == 1);
  std::string log = d.Read(".weft/latest");
  CHECK(log.find("\"timed_out\":true") != std::string::npos);
  CHECK(log.find("\"leaked\"") == std::string::npos);
}

TEST_CASE("a test that goes quiet is stopped by --idle-timeout, with its last lines shown") {
  TempDir d;
  d.HelperTest("t/quiet", "plan 2 ok first stderr 'working on 2' hang");
  Result r = WeftTest(d, {"--idle-timeout=0.3", "--kill-grace=0.5", "t"});
  CHECK(r.code == 1);
  CHECK(Normalize(r.out).rfind(
            "TIMEOUT t/quiet (<t>)\n"
            "  no output for <t> (idle timeout)\n"
            "  killed by SIGTERM\n"
            "  planned 2 but ran 1\n"
            "  idle timeout; its last 3 lines of output:\n"
            "    stdout: 1..2\n"
            "    stdout: ok 1 - first\n"
            "    stderr: working on 2\n",
            0) == 0);
  std::string log = d.Read(".weft/latest");
  CHECK(log.find(R"("kind":"idle","after_s":0.3,"last_lines":[)") != std::string::npos);
  CHECK(log.find(R"("timed_out":true,"timeout":"idle")") != std::string::npos);
}

TEST_CASE("the wall-clock timeout names itself in a timeout event") {
  TempDir d;
  d.HelperTest("t/slow", "plan 1 flood 3 hang");
  Result r = WeftTest(d, {"--timeout=0.3", "--kill-grace=0.5", "t"});
  CHECK(r.code == 1);
  std::string log = d.Read(".weft/latest");
  CHECK(log.find(R"("kind":"wall","after_s":0.3,"last_lines":[{"stream":"stdout","text":"1..1"},)") !=
        std::string::npos);
}

TEST_CASE("native events on WEFT_EVENT_FD count like TAP, stamped by the auditor") {
  TempDir d;
  d.HelperTest("t/native",
               R"(event '{"type":"plan","count":2}' )"
               R"(event '{"type":"assert","ok":true,"description":"native one"}' )"
               R"(event '{"type":"note","message":"for people"}' )"
               R"(event '{"type":"assert","ok":false,"description":"native two"}' )"
               R"(event '{"type":"diag","message":"got 1, wanted 2"}')");
  Result r = WeftTest(d, {"t"});
  CHECK(r.code == 1);
  CHECK(Normalize(r.out).rfind(
            "FAIL t/native (<t>)\n"
            "  1 of 2 native assertions failed\n"
            "  not ok - native two\n"
            "      diag: got 1, wanted 2\n",
            0) == 0);
  CHECK(SummaryOf(r.out).find("Assertions: 1 passed, 1 failed, 0 skipped, 0 todo (2 in all).") !=
        std::string::npos);
  std::string log = d.Read(".weft/latest");
  // Spliced: the test's own bytes follow the envelope the auditor wrote.
  CHECK(log.find(R"(,"job":1,"seq":)") != std::string::npos);
  CHECK(log.find(R"(,"source":"fd","ok":true,"description":"native one"})") != std::string::npos);
}

TEST_CASE("a test cannot forge run-level events or another job's through the event fd") {
  TempDir d;
  d.HelperTest("t/forger",
               R"(plan 1 ok fine )"
               R"(event '{"type":"summary","verdict":"pass","exit":0}' )"
               R"(event '{"type":"job.end","verdict":"pass"}' )"
               R"(event '{"type":"assert","ok":true,"job":99}' )"
               R"(event '{"type":"assert","ok":true' )"
               R"(event 'not json')");
  Result r = WeftTest(d, {"t"});
  CHECK(r.code == 1);
  std::string out = Normalize(r.out);
  CHECK(out.find("  5 bad lines on the event fd\n") != std::string::npos);
  CHECK(out.find("bad event on the event fd at line 1: type \"summary\" is not one a test may send") !=
        std::string::npos);
  CHECK(out.find("bad event on the event fd at line 3: a test may not set \"job\": the auditor stamps it") !=
        std::string::npos);
  // Only one summary in the log: the overlord's.
  std::string log = d.Read(".weft/latest");
  CHECK(log.find(R"({"type":"summary")") == log.rfind(R"({"type":"summary")"));
  // The forged job id survives only as quoted text inside a parse_error.
  CHECK(log.find(R"("job":99)") == std::string::npos);
}

TEST_CASE("a run leaves no TMPDIR behind but those of failed tests, which it names") {
  TempDir d;
  TempDir tmp;
  for (const char* name : {"t/a.sh", "t/b.sh", "t/c.sh"})
    d.Write(name, "echo 1..1; touch \"$TMPDIR/scratch\"; echo ok 1\n");
  d.Write("t/d.sh", "echo 1..1; touch \"$TMPDIR/evidence\"; echo not ok 1\n");
  RunOptions o;
  o.cwd = d.path();
  o.env = {"TMPDIR=" + tmp.path()};
  Result r = Run({Bin("weft"), "test", "-j1", "t"}, o);
  CHECK(r.code == 1);
  std::vector<std::string> left;
  for (const auto& e : std::filesystem::directory_iterator(tmp.path()))
    left.push_back(e.path().string());
  REQUIRE(left.size() == 1);
  CHECK(std::filesystem::exists(left[0] + "/evidence"));
  CHECK(d.Read(".weft/latest").find("\"tmpdir\":\"" + left[0] + "\"") != std::string::npos);
}

TEST_CASE("diagnostics attach to the failure before them, until the next passing assertion") {
  TempDir d;
  d.HelperTest("t/mixed", "plan 2 notok a line '# about a' ok b stderr 'after b'");
  Result r = WeftTest(d, {"t"});
  CHECK(r.code == 1);
  CHECK(Normalize(r.out).rfind(
            "FAIL t/mixed (<t>)\n"
            "  1 of 2 assertions failed (#1)\n"
            "  not ok 1 - a\n"
            "      # about a\n"
            "  last 1 lines of other output:\n"
            "    stderr: after b\n",
            0) == 0);
}

TEST_CASE("regression: a child the test forked and never waited for, still ending as the test exits, is no leak") {
  // Perl's t/Legacy/fork.t does this: the child exits at once, the parent
  // does not wait; the child may still be in its global destruction when
  // the parent has gone. Many at once, so that the race is run often.
  TempDir d;
  for (int i = 0; i < 30; ++i)
    d.Write(fmt_name(i), "my $p = fork; exit 0 if !$p; print \"1..1\\nok 1\\n\";\n");
  RunOptions o;
  o.cwd = d.path();
  Result r = Run({Bin("weft"), "test", "-j2", "t"}, o);
  CHECK(r.code == 0);
  CHECK(r.out.find("left 1 process running") == std::string::npos);
  CHECK(SummaryOf(r.out).find("Files: 30 passed, 0 failed (30 in all).") != std::string::npos);
}
