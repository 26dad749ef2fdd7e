// Stages (preloading), through the real binaries: a test forked by a
// long-lived Perl or Python process is supervised like a spawned one.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "support.h"

using namespace weft::testing;

namespace {

Result Weft(const TempDir& dir, std::vector<std::string> args) {
  std::vector<std::string> argv = {Bin("weft")};
  argv.insert(argv.end(), args.begin(), args.end());
  RunOptions o;
  o.cwd = dir.path();
  return Run(argv, o);
}

// A module that counts how many times it is loaded (a line per load).
void SlowModule(TempDir& d) {
  d.Write("lib/Slow.pm",
          "package Slow;\nopen(my $fh, '>>', \"" + d.path() +
              "/loads\") or die; print $fh \"loaded\\n\"; close $fh;\n"
              "sub answer { 42 }\n1;\n");
}

// A stage of our own in Python for t/*.sh, in d/stage.py: it says it is
// ready, then for each job's connection ("c", its request read) runs
// "on_job" (Python, indented 4). "toml" goes before the [[stage]].
void FakeStage(TempDir& d, const std::string& on_job, const std::string& toml = "") {
  d.Write("stage.py",
          "import json, os, socket, subprocess, sys\n"
          "a = sys.argv\n"
          "path, name = a[a.index('--socket') + 1], a[a.index('--name') + 1]\n"
          "s = socket.socket(socket.AF_UNIX)\n"
          "s.bind(path)\n"
          "s.listen(8)\n"
          "print(json.dumps({'t': 'ready', 'name': name, 'pid': os.getpid(), 'lang': 'py',\n"
          "                  'socket': path, 'preloaded': [], 'load_ms': 0}), flush=True)\n"
          "kept = []\n"
          "while True:\n"
          "    c, _ = s.accept()\n"
          "    c.makefile('rb').readline()\n" +
              on_job);
  d.Write("weft.toml", toml + "[[stage]]\nname = \"fake\"\nlang = \"py\"\ncommand = [\"python3\", \"" +
                           d.path() + "/stage.py\"]\npaths = [\"t/*.sh\"]\n");
}

// weft-runner --serve in "d", its stream in out.jsonl, its control pipe
// at d/control.
class Serving {
 public:
  explicit Serving(const TempDir& d) : d_(d), fifo_(d.path() + "/control") {
    REQUIRE(mkfifo(fifo_.c_str(), 0600) == 0);
    RunOptions o;
    o.cwd = d.path();
    child_ = std::make_unique<Child>(
        std::vector<std::string>{"/bin/sh", "-c",
                                 Bin("weft-runner") + " --serve --control=control > out.jsonl"},
        o);
  }
  void Say(const std::string& line) {
    int fd = open(fifo_.c_str(), O_WRONLY);
    REQUIRE(fd >= 0);
    std::string l = line + "\n";
    CHECK(write(fd, l.data(), l.size()) == static_cast<ssize_t>(l.size()));
    close(fd);
  }
  size_t RunsEnded() const { return Count(d_.Read("out.jsonl"), R"("type":"run.end")"); }
  Result Wait() { return child_->Wait(); }

 private:
  const TempDir& d_;
  std::string fifo_;
  std::unique_ptr<Child> child_;
};

}  // namespace

TEST_CASE("a Perl stage preloads once; its tests pass and fail as they would alone") {
  TempDir d;
  SlowModule(d);
  d.Write("weft.toml",
          "[[stage]]\nname = \"perl\"\ninc = [\"lib\"]\npreload = [\"Slow\", \"Test::More\"]\n"
          "paths = [\"t/*.t\"]\n");
  for (int i = 0; i < 3; ++i)
    d.Write("t/ok" + std::to_string(i) + ".t",
            "use lib 'lib';\nuse Slow;\nuse Test::More;\nis(Slow::answer(), 42, 'answer');\n"
            "is($ENV{WEFT_STAGE}, 'perl', 'forked by the stage');\ndone_testing;\n");
  d.Write("t/fails.t", "use Test::More;\nok(0, 'wrong');\ndone_testing;\n");
  d.Write("t/dies.t", "use Test::More tests => 2;\nok(1);\ndie \"no database\\n\";\n");
  Result r = Weft(d, {"test", "-j2"});
  CHECK(r.code == 1);
  CHECK(Has(r.out, "Files: 3 passed, 2 failed (5 in all)."));
  CHECK(Has(r.out, "t/fails.t  exited with status 1; 1 of 1 assertion failed (#1)"));
  CHECK(Has(r.out, "t/dies.t  exited with status 255; planned 2 but ran 1"));
  CHECK(Has(r.out, "no database"));
  CHECK(d.Read("loads") == "loaded\n");  // once, in the stage
  std::string log = d.Read(".weft/latest");
  CHECK(Count(log, R"("type":"stage.ready")") == 1);
  CHECK(Count(log, R"(,"stage":")") == 5);  // every job.start names it

  // Without the stage, each test loads it itself.
  d.Write("loads", "");
  r = Weft(d, {"test", "--no-config", "t/ok0.t", "t/ok1.t"});
  CHECK(r.code == 1);  // (not forked by the stage)
  CHECK(d.Read("loads") == "loaded\nloaded\n");
}

TEST_CASE("a staged test is supervised like a spawned one: timeout, leftovers, a stage that dies") {
  TempDir d;
  d.Write("weft.toml", "[[stage]]\nname = \"perl\"\npreload = [\"Test::More\"]\npaths = [\"t/*.t\"]\n");
  d.Write("t/hangs.t", "use Test::More;\nok(1);\nsleep 60;\ndone_testing;\n");
  d.Write("t/leaves.t",
          "use Test::More;\nmy $pid = fork // die;\nif (!$pid) { sleep 60; exit 0 }\n"
          "open(my $fh, '>', 'left.pid'); print $fh \"$pid\\n\"; close $fh;\nok(1);\ndone_testing;\n");
  Result r = Weft(d, {"test", "--timeout=1", "--leaks=fail"});
  CHECK(r.code == 1);
  CHECK(Has(r.out, "TIMEOUT t/hangs.t"));
  CHECK(Has(r.out, "FAIL t/leaves.t"));
  CHECK(Has(r.out, "  left 1 process running: "));
  pid_t left = std::atoi(d.Read("left.pid").c_str());
  REQUIRE(left > 0);
  CHECK(WaitFor(10, [&] { return !Alive(left); }));
}

TEST_CASE("a stage that cannot start: its tests run without it, and say why") {
  TempDir d;
  d.Write("weft.toml",
          "[[stage]]\nname = \"perl\"\npreload = [\"No::Such::Module\"]\npaths = [\"t/*.t\"]\n");
  d.Write("t/a.t", "print \"1..1\\nok 1\\n\";\n");
  Result r = Weft(d, {"test"});
  CHECK(r.code == 0);
  std::string log = d.Read(".weft/latest");
  CHECK(Count(log, R"("type":"stage.end")") == 1);
  CHECK(Has(log, "cannot preload No::Such::Module"));
  CHECK(Has(r.out, "STAGE perl: cannot preload No::Such::Module: Can't locate No/Such/Module.pm"));
  CHECK(Has(r.out, "; its tests run without it\n"));
  CHECK(!Has(log, R"(,"stage":")"));
}

TEST_CASE("a Python stage imports once and forks each test") {
  TempDir d;
  d.Write("mod/slowmod.py", "open('" + d.path() + "/loads', 'a').write('loaded\\n')\nANSWER = 42\n");
  d.Write("weft.toml",
          "[[stage]]\nname = \"py\"\nlang = \"python\"\ninc = [\"mod\"]\npreload = [\"slowmod\"]\n"
          "paths = [\"t/*.py\"]\n");
  for (int i = 0; i < 3; ++i)
    d.Write("t/t" + std::to_string(i) + ".py",
            "import os, sys\nsys.path.insert(0, 'mod')\nimport slowmod\nprint('1..2')\n"
            "print('ok 1' if slowmod.ANSWER == 42 else 'not ok 1')\n"
            "print('ok 2 - staged' if os.environ.get('WEFT_STAGE') == 'python' else 'not ok 2')\n");
  d.Write("t/exits.py", "print('1..1')\nprint('ok 1')\nraise SystemExit(4)\n");
  // A child process of a staged test has the test's stdout.
  d.Write("t/child.py", "import os, sys\nprint('1..1')\nsys.stdout.flush()\nos.system('echo ok 1')\n");
  Result r = Weft(d, {"test"});
  CHECK(r.code == 1);
  CHECK(Has(r.out, "Files: 4 passed, 1 failed (5 in all)."));
  CHECK(Has(r.out, "t/exits.py  exited with status 4"));
  CHECK(d.Read("loads") == "loaded\n");
}

TEST_CASE("a change to a file a stage preloaded restarts that stage before the next run") {
  TempDir d;
  SlowModule(d);
  d.Write("weft.toml",
          "[[stage]]\nname = \"perl\"\ninc = [\"lib\"]\npreload = [\"Slow\"]\npaths = [\"t/*.t\"]\n");
  d.Write("t/a.t", "use lib 'lib';\nuse Slow;\nprint \"1..1\\nok 1\\n\";\n");
  d.Write("other.txt", "x\n");
  Serving runner(d);
  auto say = [&](const std::string& line) { runner.Say(line); };
  auto runs_ended = [&] { return runner.RunsEnded(); };
  say(R"({"type":"run","args":["t"]})");
  REQUIRE(WaitFor(30, [&] { return runs_ended() == 1; }));
  say(R"({"type":"run","args":["t"],"changed":["other.txt"]})");  // not preloaded
  REQUIRE(WaitFor(30, [&] { return runs_ended() == 2; }));
  CHECK(d.Read("loads") == "loaded\n");
  say(R"({"type":"run","args":["t"],"changed":["lib/Slow.pm"]})");
  REQUIRE(WaitFor(30, [&] { return runs_ended() == 3; }));
  say(R"({"type":"shutdown"})");
  Result r = runner.Wait();
  CHECK(r.code == 0);
  std::string out = d.Read("out.jsonl");
  CHECK(Count(out, R"("type":"stage.start")") == 2);
  CHECK(Has(out, R"("reason":"reload: lib/Slow.pm changed")"));
  CHECK(d.Read("loads") == "loaded\nloaded\n");
  CHECK(Count(out, R"("verdict":"pass")") == 3);
}

TEST_CASE("a staged test reports the files it loaded; a change to one reruns just the tests that loaded it") {
  TempDir d;
  d.Write("weft.toml", "[[stage]]\nname = \"perl\"\npreload = [\"Test::More\"]\npaths = [\"t/*.t\"]\n");
  d.Write("lib/A.pm", "package A;\nsub a { 1 }\n1;\n");
  d.Write("lib/B.pm", "package B;\nsub b { 1 }\n1;\n");
  d.Write("t/a.t", "use lib 'lib';\nuse A;\nuse Test::More;\nok(A::a());\ndone_testing;\n");
  d.Write("t/b.t", "use lib 'lib';\nuse B;\nuse Test::More;\nok(B::b());\ndone_testing;\n");
  d.Write("t/ab.t", "use lib 'lib';\nuse A;\nuse B;\nuse Test::More;\nok(1);\ndone_testing;\n");
  Serving runner(d);
  auto say = [&](const std::string& line) { runner.Say(line); };
  auto runs_ended = [&] { return runner.RunsEnded(); };
  say(R"({"type":"run","run":"r1","args":["t"]})");
  REQUIRE(WaitFor(30, [&] { return runs_ended() == 1; }));
  CHECK(Has(d.Read("out.jsonl"), "\"type\":\"deps\",\"run\":\"r1\""));
  CHECK(Has(d.Read("out.jsonl"), d.path() + "/lib/A.pm\""));
  say(R"({"type":"run","run":"r2","args":["t"],"changed":["lib/B.pm"]})");
  REQUIRE(WaitFor(30, [&] { return runs_ended() == 2; }));
  say(R"({"type":"run","run":"r3","args":["t"],"changed":["README"]})");  // no test's
  REQUIRE(WaitFor(30, [&] { return runs_ended() == 3; }));
  say(R"({"type":"shutdown"})");
  CHECK(runner.Wait().code == 0);
  std::string out = d.Read("out.jsonl");
  CHECK(Has(out, R"("type":"run.start","run":"r2",)"));
  // r2: the two tests that loaded lib/B.pm; r3: all three.
  CHECK(Has(out, R"("type":"job.start","run":"r2","job":1,)"));
  CHECK(!Has(out, R"("type":"job.start","run":"r2","job":3,)"));
  CHECK(Has(out, R"("type":"job.start","run":"r3","job":3,)"));
  size_t r2 = out.find(R"("type":"run.start","run":"r2")");
  size_t r3 = out.find(R"("type":"run.start","run":"r3")");
  std::string second = out.substr(r2, r3 - r2);
  CHECK(Has(second, R"("jobs":2,)"));
  CHECK(Has(second, R"("name":"t/b.t")"));
  CHECK(Has(second, R"("name":"t/ab.t")"));
  CHECK(!Has(second, R"("name":"t/a.t")"));
}

TEST_CASE("a stage built on another keeps what that one loaded and loads more, once") {
  TempDir d;
  d.Write("lib/Base.pm", "package Base;\nopen(my $fh, '>>', \"" + d.path() +
                             "/loads\"); print $fh \"base\\n\"; close $fh;\nsub b { 1 }\n1;\n");
  d.Write("lib/App.pm", "package App;\nopen(my $fh, '>>', \"" + d.path() +
                            "/loads\"); print $fh \"app\\n\"; close $fh;\nsub a { 1 }\n1;\n");
  d.Write("weft.toml",
          "[[stage]]\nname = \"base\"\ninc = [\"lib\"]\npreload = [\"Base\", \"Test::More\"]\n"
          "paths = [\"t/base/*.t\"]\n"
          "[[stage]]\nname = \"app\"\nfrom = \"base\"\npreload = [\"App\"]\npaths = [\"t/app/*.t\"]\n");
  for (int i = 0; i < 2; ++i) {
    d.Write("t/base/b" + std::to_string(i) + ".t",
            "use lib 'lib';\nuse Base;\nuse Test::More;\nok(Base::b());\n"
            "ok(!$INC{'App.pm'}, 'App is not loaded here');\ndone_testing;\n");
    d.Write("t/app/a" + std::to_string(i) + ".t",
            "use lib 'lib';\nuse Base;\nuse App;\nuse Test::More;\nok(Base::b() && App::a());\n"
            "done_testing;\n");
  }
  Result r = Weft(d, {"test", "-j2"});
  CHECK(r.code == 0);
  CHECK(Has(r.out, "Files: 4 passed, 0 failed (4 in all)."));
  CHECK(d.Read("loads") == "base\napp\n");
  std::string log = d.Read(".weft/latest");
  CHECK(Has(log, R"("type":"stage.start","run")"));
  CHECK(Has(log, R"("name":"app","lang":"perl","from":"base")"));
  CHECK(Count(log, R"("type":"stage.ready")") == 2);
  CHECK(Count(log, "/app-") == 2);   // each job.start's "stage"
  CHECK(Count(log, "/base-") == 2);

  // weft.toml says what is wrong with one.
  d.Write("weft.toml", "[[stage]]\nname = \"app\"\nfrom = \"base\"\npaths = [\"t/*\"]\n");
  r = Weft(d, {"test"});
  CHECK(r.code == 2);
  CHECK(r.err == "weft: error: weft.toml:3: from: names no stage defined before this one "
                 "(\"base\")\n");
}

TEST_CASE("a stage of one's own, in C (examples/stages/exec-stage.c), speaks the same protocol") {
  TempDir d;
  std::string stage = Bin("weft");
  stage = stage.substr(0, stage.rfind('/')) + "/../examples/exec-stage";
  REQUIRE(access(stage.c_str(), X_OK) == 0);
  d.Write("weft.toml", "[[stage]]\nname = \"c\"\nlang = \"c\"\ncommand = [\"" + stage +
                           "\"]\npaths = [\"t/*.sh\"]\n");
  d.Write("t/ok.sh", "echo 1..2; echo ok 1; [ -n \"$WEFT_EVENT_FD\" ] && echo ok 2 - env; "
                     "echo '{\"type\":\"note\",\"text\":\"native\"}' >&3\n");
  d.Write("t/fails.sh", "echo 1..1; echo 'not ok 1 - nope'; echo oops >&2; exit 3\n");
  Result r = Weft(d, {"test", "-v"});
  CHECK(r.code == 1);
  CHECK(Has(r.out, "Files: 1 passed, 1 failed (2 in all)."));
  CHECK(Has(r.out, "t/fails.sh  exited with status 3; 1 of 1 assertion failed (#1)"));
  CHECK(Has(r.out, "oops"));
  std::string log = d.Read(".weft/latest");
  CHECK(Has(log, R"("lang":"c")"));
  CHECK(Count(log, "/c-1.sock\"") == 2);
  CHECK(Has(log, R"("type":"note")"));

  d.Write("weft.toml", "[[stage]]\nname = \"r\"\nlang = \"ruby\"\npaths = [\"t/*\"]\n");
  r = Weft(d, {"test"});
  CHECK(r.code == 2);
  CHECK(r.err == "weft: error: weft.toml:1: stage: \"r\": weft ships stages for perl and python; "
                 "for ruby give its command\n");
}

TEST_CASE("regression: a stage's \"exited\" in the same read as its \"spawned\" ends the job") {
  // A test that ends at once: the stage may send both lines before the
  // auditor reads the first. This stage sends them in one write (and runs
  // nothing: the test's pipes have no writer, so they end at once too).
  TempDir d;
  FakeStage(d,
            "    c.sendall(b'{\"t\":\"spawned\",\"pid\":999999}\\n'\n"
            "              b'{\"t\":\"exited\",\"pid\":999999,\"status\":0}\\n')\n"
            "    kept.append(c)\n");
  d.Write("t/quick.sh", "echo 1..1; echo ok 1\n");
  Result r = Weft(d, {"test", "--timeout=20"});
  // It ends (before, the auditor waited for the stage for ever), as the
  // stage said: exited 0, and no TAP at all.
  CHECK_MESSAGE(r.code == 1, (r.out + r.err));
  CHECK(Has(r.out, "Files: 0 passed, 1 failed (1 in all)."));
  CHECK_FALSE(Has(r.out, "TIMEOUT"));
}

TEST_CASE("a stage that never says how its test ended: the job ends a few seconds after SIGKILL") {
  // A broken stage: it starts the test (in a session of its own, as stages
  // do), says "spawned", and then nothing, ever. The test hangs; its
  // timeout stops it; without the stage's word the auditor would wait for
  // ever (and the run with it).
  TempDir d;
  FakeStage(d,
            "    p = subprocess.Popen(['sleep', '1000'], start_new_session=True)\n"
            "    open('test.pid', 'w').write(str(p.pid))\n"
            "    c.sendall(json.dumps({'t': 'spawned', 'pid': p.pid}).encode() + b'\\n')\n"
            "    kept.append((c, p))\n",
            "kill_grace = 0.2\n");
  d.Write("t/hang.sh", "sleep 1000\n");
  Result r = Weft(d, {"test", "--timeout=1"});
  CHECK_MESSAGE(r.code == 1, (r.out + r.err));
  CHECK(Has(r.out, "TIMEOUT t/hang.sh ("));
  CHECK(Has(r.out, "  its stage never said how it ended (5 s after SIGKILL; taken as killed)\n"));
  CHECK(Has(r.out, "Files: 0 passed, 1 failed (1 timed out) (1 in all)."));
  std::string log = d.Read(".weft/latest");
  CHECK(Has(log, "its stage never said how it ended (5 s after SIGKILL; taken as killed)"));
  CHECK(Has(log, R"("timeout":"wall")"));
  // And the test is gone (its group was killed).
  std::string pid = d.Read("test.pid");
  REQUIRE(!pid.empty());
  CHECK(WaitFor(10, [&] { return !Alive(std::stoi(pid)); }));
}

TEST_CASE("a reload control line restarts the stages that loaded its files, or all of them") {
  TempDir d;
  SlowModule(d);
  d.Write("weft.toml",
          "[[stage]]\nname = \"perl\"\ninc = [\"lib\"]\npreload = [\"Slow\"]\npaths = [\"t/*.t\"]\n");
  d.Write("t/a.t", "use lib 'lib';\nuse Slow;\nprint \"1..1\\nok 1\\n\";\n");
  Serving runner(d);
  runner.Say(R"({"type":"run","args":["t"]})");
  REQUIRE(WaitFor(30, [&] { return runner.RunsEnded() == 1; }));
  runner.Say(R"({"type":"reload","files":["README"]})");  // no stage loaded it
  runner.Say(R"({"type":"run","args":["t"]})");
  REQUIRE(WaitFor(30, [&] { return runner.RunsEnded() == 2; }));
  CHECK(d.Read("loads") == "loaded\n");
  runner.Say(R"({"type":"reload","files":["lib/Slow.pm"]})");
  runner.Say(R"({"type":"run","args":["t"]})");
  REQUIRE(WaitFor(30, [&] { return runner.RunsEnded() == 3; }));
  CHECK(d.Read("loads") == "loaded\nloaded\n");
  runner.Say(R"({"type":"reload"})");  // names nothing: every stage
  runner.Say(R"({"type":"run","args":["t"]})");
  REQUIRE(WaitFor(30, [&] { return runner.RunsEnded() == 4; }));
  CHECK(d.Read("loads") == "loaded\nloaded\nloaded\n");
  runner.Say(R"({"type":"shutdown"})");
  CHECK(runner.Wait().code == 0);
  std::string out = d.Read("out.jsonl");
  CHECK(Count(out, R"("type":"stage.start")") == 3);
  CHECK(Count(out, R"("verdict":"pass")") == 4);
}

TEST_CASE("a reload while a staged test runs: it finishes on the old stage, the next job waits for the new") {
  TempDir d;
  SlowModule(d);
  d.Write("weft.toml",
          "[[stage]]\nname = \"perl\"\ninc = [\"lib\"]\npreload = [\"Slow\"]\npaths = [\"t/*.t\"]\n");
  d.Write("t/a.t", "use lib 'lib';\nuse Slow;\nopen(my $fh, '>', 'a.started'); close $fh;\n"
                   "sleep 2;\nprint \"1..1\\nok 1\\n\";\n");
  d.Write("t/b.t", "use lib 'lib';\nuse Slow;\nprint \"1..1\\nok 1\\n\";\n");
  Serving runner(d);
  runner.Say(R"({"type":"run","args":["-j1","--order=name","t"]})");
  REQUIRE(WaitFor(30, [&] { return access((d.path() + "/a.started").c_str(), F_OK) == 0; }));
  runner.Say(R"({"type":"reload","files":["lib/Slow.pm"]})");
  REQUIRE(WaitFor(30, [&] { return runner.RunsEnded() == 1; }));
  runner.Say(R"({"type":"shutdown"})");
  CHECK(runner.Wait().code == 0);
  std::string out = d.Read("out.jsonl");
  CHECK(Count(out, R"("verdict":"pass")") == 2);
  CHECK(Count(out, R"("type":"stage.start")") == 2);
  CHECK(Has(out, R"("reason":"reload: lib/Slow.pm changed")"));
  CHECK(d.Read("loads") == "loaded\nloaded\n");
  // t/a.t on the first stage's socket, t/b.t on the second's.
  CHECK(Has(out, "/perl-1.sock\""));
  CHECK(Has(out, "/perl-2.sock\""));
}
