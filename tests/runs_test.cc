// Many runs from one runner, through the real binaries: repeat mode
// (weft test --repeat / --until-fail / --forever) and the persistent
// runner (weft start / run / stop).
#include <doctest/doctest.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
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

std::vector<std::string> Logs(const TempDir& d) {
  std::vector<std::string> names;
  if (DIR* dir = opendir((d.path() + "/.weft/runs").c_str())) {
    while (auto* e = readdir(dir))
      if (std::string(e->d_name).find(".jsonl") != std::string::npos) names.push_back(e->d_name);
    closedir(dir);
  }
  return names;
}

// A test that fails on the runs "fails_when" names (a shell condition on
// $n, the how-manieth time it runs).
std::string Counting(const TempDir& d, const std::string& fails_when) {
  return "n=$(cat " + d.path() + "/count 2>/dev/null || echo 0); n=$((n+1)); echo $n > " +
         d.path() + "/count\necho 1..1\nif " + fails_when +
         "; then echo 'not ok 1 - run '$n; else echo 'ok 1'; fi\n";
}

// CPU time (user + system, in clock ticks) a process has used.
long CpuTicks(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t close = text.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(text.substr(close + 2));
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stol(field);
    if (i == 15) stime = std::stol(field);
  }
  return utime + stime;
}

pid_t ServerPid(const TempDir& d) {
  std::ifstream in(d.path() + "/.weft/server.pid");
  long pid = 0;
  in >> pid;
  return static_cast<pid_t>(pid);
}

// Stops the runner a test started, whatever happened in the test.
struct Served {
  const TempDir& d;
  explicit Served(const TempDir& dir, std::vector<std::string> args = {}) : d(dir) {
    args.insert(args.begin(), "start");
    Result r = Weft(d, args);
    REQUIRE(r.code == 0);
    CHECK(Has(r.out, "weft: runner started (pid "));
  }
  ~Served() {
    if (pid_t pid = ServerPid(d); pid > 0 && Alive(pid)) {
      Weft(d, {"stop", "--grace=0"});
      WaitFor(10, [&] { return !Alive(pid); });
    }
  }
};

}  // namespace

TEST_CASE("--repeat N: each repetition its own run and log; the end shows each test's failure rate") {
  TempDir d;
  d.Write("t/pass.sh", "echo 1..1; echo ok 1\n");
  d.Write("t/flaky.sh", Counting(d, "[ $((n % 2)) -eq 0 ]"));
  Result r = Weft(d, {"test", "--repeat=3", "-j1"});
  CHECK(r.code == 1);  // one of the runs failed
  CHECK(Has(r.out, "── run 1 of 3 ──\n"));
  CHECK(Has(r.out, "── run 3 of 3 ──\n"));
  CHECK(Count(r.out, "Result: PASS") == 2);
  CHECK(Count(r.out, "Result: FAIL") == 2);  // run 2, and the repetitions' verdict
  CHECK(Has(r.out, "Failure rates over the runs:\n   33.3%  1 of 3 failed  t/flaky.sh\n"));
  CHECK(Has(r.out, "Repeated: 3 runs, 1 failed; 1 test failed (or flaky) at least once.  "
                   "Result: FAIL\n"));
  CHECK(Logs(d).size() == 3);
  // The repetitions' outcome is in the last run's log, for replay.
  Result replay = Weft(d, {"replay"});
  CHECK(Has(replay.out, "Failure rates over the runs:\n   33.3%  1 of 3 failed  t/flaky.sh\n"));
  CHECK(replay.code == 0);  // the last run passed
}

TEST_CASE("--until-fail repeats until a run fails; --repeat N caps it") {
  TempDir d;
  d.Write("t/late.sh", Counting(d, "[ $n -ge 3 ]"));
  Result r = Weft(d, {"test", "--until-fail"});
  CHECK(r.code == 1);
  CHECK(Has(r.out, "── run 3 ──\n"));
  CHECK(!Has(r.out, "── run 4"));
  CHECK(Has(r.out, "  100.0%  1 of 1 failed  t/late.sh\n") == false);
  CHECK(Has(r.out, "   33.3%  1 of 3 failed  t/late.sh\n"));
  CHECK(Has(r.out, "Repeated: 3 runs, 1 failed;"));
  CHECK(Logs(d).size() == 3);

  TempDir ok;
  ok.Write("t/ok.sh", "echo 1..1; echo ok 1\n");
  r = Weft(ok, {"test", "--until-fail", "--repeat=2"});
  CHECK(r.code == 0);
  CHECK(Has(r.out, "Repeated: 2 runs, 0 failed; 0 tests failed (or flaky) at least once.  "
                   "Result: PASS\n"));
}

TEST_CASE("--forever runs until stopped; the stop ends the repetitions, not just one run") {
  TempDir d;
  d.Write("t/count.sh", Counting(d, "false"));
  std::string fifo = d.path() + "/control";
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  RunOptions o;
  o.cwd = d.path();
  Child runner({Bin("weft-runner"), "--forever", "--control=control", "t"}, o);
  REQUIRE(WaitFor(30, [&] { return std::atoi(d.Read("count").c_str()) >= 3; }));
  int fd = open(fifo.c_str(), O_WRONLY);
  REQUIRE(fd >= 0);
  std::string stop = "{\"type\":\"stop\"}\n";
  CHECK(write(fd, stop.data(), stop.size()) == static_cast<ssize_t>(stop.size()));
  close(fd);
  Result r = runner.Wait();
  INFO(r.err);
  CHECK(r.code == 130);
  CHECK(Count(r.out, R"("type":"run.start")") >= 3);
  CHECK(Count(r.out, R"("type":"hello")") == Count(r.out, R"("type":"run.start")"));
  CHECK(Count(r.out, R"("type":"repeat.end")") == 1);
  CHECK(Has(r.out, R"("interrupted":true)"));
}

TEST_CASE("weft start / run / stop: a persistent runner serves runs, each with its own log and code") {
  TempDir d;
  d.Write("t/a.sh", "echo 1..1; echo ok 1\n");
  d.Write("u/broken.sh", "echo 1..1; echo 'not ok 1 - broken'\n");
  Result r = Weft(d, {"run"});
  CHECK(r.code == 2);
  CHECK(Has(r.err, "weft: error: no weft runner serves this project; `weft start` starts one"));
  {
    Served served(d, {"-j2"});
    r = Weft(d, {"start"});
    CHECK(r.code == 2);
    CHECK(Has(r.err, "weft: error: a weft runner already serves this project (pid " +
                         std::to_string(ServerPid(d)) + "); weft stop stops it\n"));
    CHECK(Has(Weft(d, {"status"}).out,
              "runner  pid " + std::to_string(ServerPid(d)) + ", serving "));
    r = Weft(d, {"run", "t"});
    CHECK(r.code == 0);
    CHECK(Has(r.out, "Result: PASS"));
    r = Weft(d, {"run", "u"});
    CHECK(r.code == 1);
    CHECK(Has(r.out, "FAIL"));
    CHECK(Has(r.out, "broken"));
    // Paths are the client's, from where it stands.
    RunOptions o;
    o.cwd = d.path() + "/t";
    r = Run({Bin("weft"), "run", "a.sh"}, o);
    CHECK(r.code == 0);
    CHECK(Has(r.out, "Files: 1 passed"));
    CHECK(Logs(d).size() == 3);
    r = Weft(d, {"run", "--repeat=2"});
    CHECK(r.code == 2);
    r = Weft(d, {"stop"});
    CHECK(r.code == 0);
    CHECK(Has(r.out, "weft: runner stopped (pid "));
  }
  r = Weft(d, {"run"});
  CHECK(r.code == 2);
  CHECK(Weft(d, {"stop"}).code == 2);
  CHECK(access((d.path() + "/.weft/control").c_str(), F_OK) != 0);
}

TEST_CASE("a bail out stops that run only: the runner goes on serving") {
  TempDir d;
  d.Write("t/bails.sh", "echo 1..2; echo 'Bail out! no database'\n");
  d.Write("t/z-slow.sh", "sleep 0.5; echo 1..1; echo ok 1\n");
  d.Write("u/ok.sh", "echo 1..1; echo ok 1\n");
  Served served(d, {"-j1"});
  Result r = Weft(d, {"run", "--order=name", "t"});
  CHECK(r.code == 1);
  CHECK(Has(r.out, "no database"));
  CHECK(Has(r.out, "1 cancelled"));
  r = Weft(d, {"run", "u"});
  CHECK(r.code == 0);
  CHECK(Has(r.out, "Result: PASS"));
}

TEST_CASE("a client that vanishes leaves the runner serving; its run still ends and is logged") {
  TempDir d;
  d.Write("t/slow.sh", "sleep 1; echo 1..1; echo ok 1\n");
  d.Write("u/ok.sh", "echo 1..1; echo ok 1\n");
  Served served(d);
  RunOptions o;
  o.cwd = d.path();
  Child client({Bin("weft"), "run", "t"}, o);
  REQUIRE(WaitFor(30, [&] { return Logs(d).size() == 1; }));
  kill(client.pid(), SIGKILL);
  client.Wait();
  Result r = Weft(d, {"run", "u"});
  CHECK(r.code == 0);
  CHECK(Logs(d).size() == 2);
  // The first run went on to its end.
  Result replay = Weft(d, {"replay", d.path() + "/.weft/runs/" + Logs(d)[0]});
  Result other = Weft(d, {"replay", d.path() + "/.weft/runs/" + Logs(d)[1]});
  CHECK(Has(replay.out + other.out, "t/slow.sh"));
  CHECK(replay.code == 0);
  CHECK(other.code == 0);
}

TEST_CASE("a client whose runner vanishes says so (exit 3), and no test is left behind") {
  TempDir d;
  d.HelperTest("t/hang", "plan 1 pidfile " + d.path() + "/pid hang");
  Served served(d);
  RunOptions o;
  o.cwd = d.path();
  Child client({Bin("weft"), "run", "t"}, o);
  REQUIRE(WaitFor(30, [&] { return access((d.path() + "/pid").c_str(), F_OK) == 0; }));
  pid_t test_pid = std::atoi(d.Read("pid").c_str());
  REQUIRE(test_pid > 0);
  pid_t server = ServerPid(d);
  kill(-server, SIGKILL);  // the supervisor and its chain, at once
  Result r = client.Wait();
  CHECK(r.code == 3);
  CHECK(Has(r.err, "weft: error: the weft runner (pid " + std::to_string(server) +
                       ") went away during run "));
  CHECK(WaitFor(10, [&] { return !Alive(test_pid); }));
  // Its lock went with it: a new runner can start.
  Served again(d);
}

TEST_CASE("an idle persistent runner uses no CPU") {
  TempDir d;
  d.Write("t/a.sh", "echo 1..1; echo ok 1\n");
  Served served(d);
  REQUIRE(Weft(d, {"run"}).code == 0);
  pid_t server = ServerPid(d);
  std::vector<pid_t> all = {server};
  for (pid_t p : ChildrenOf(server)) {
    all.push_back(p);
    for (pid_t q : ChildrenOf(p)) all.push_back(q);  // the auditor fork server
  }
  CHECK(all.size() >= 5);  // supervisor, runner, overlord, logger, fork server
  long before = 0, after = 0;
  for (pid_t p : all) before += CpuTicks(p);
  sleep(10);
  for (pid_t p : all) after += CpuTicks(p);
  MESSAGE("CPU over 10 idle seconds: " << (after - before) << " ticks across " << all.size()
                                       << " processes");
  CHECK(after - before <= 2);  // 20 ms: nothing polls
}

namespace {
// How many of the project's logs hold a whole run (its run.end).
size_t Ended(const TempDir& d) {
  size_t n = 0;
  for (const auto& log : Logs(d))
    if (Has(d.Read(".weft/runs/" + log), R"("type":"run.end")")) ++n;
  return n;
}
// The log that holds "part".
std::string LogWith(const TempDir& d, const std::string& part) {
  for (const auto& log : Logs(d)) {
    std::string text = d.Read(".weft/runs/" + log);
    if (Has(text, part)) return text;
  }
  return "";
}
}  // namespace

TEST_CASE("weft watch: every test at once, then the test that changed, or all when another file did") {
  TempDir d;
  d.Write("t/a.sh", "echo 1..1; echo ok 1\n");
  d.Write("t/b.sh", "echo 1..1; echo ok 1\n");
  d.Write("lib/x.txt", "1\n");
  RunOptions o;
  o.cwd = d.path();
  o.new_group = true;
  Child watch({Bin("weft"), "watch", "--debounce=50"}, o);
  REQUIRE(WaitFor(30, [&] { return Ended(d) == 1; }));
  d.Write("t/a.sh", "echo 1..1; echo 'not ok 1 - now broken'\n");
  REQUIRE(WaitFor(30, [&] { return Ended(d) == 2; }));
  std::string second = LogWith(d, R"("files":["t/a.sh"])");
  CHECK(Has(second, R"("type":"reload")"));
  CHECK(Has(second, R"("jobs":1,)"));
  CHECK(!Has(second, "t/b.sh"));
  d.Write("lib/x.txt", "2\n");
  REQUIRE(WaitFor(30, [&] { return Ended(d) == 3; }));
  std::string third = LogWith(d, R"("files":["lib/x.txt"])");
  CHECK(Has(third, R"("jobs":2,)"));
  // A scratch file an editor writes is no change.
  d.Write("t/.a.sh.swp", "x");
  usleep(300 * 1000);
  CHECK(Logs(d).size() == 3);
  kill(-watch.pid(), SIGINT);
  Result r = watch.Wait();
  CHECK(r.code == 130);
  CHECK(Has(r.out, "── changed: t/a.sh ──\n"));
  CHECK(Has(r.out, "now broken"));
  CHECK(Has(r.out, "── changed: lib/x.txt ──\n"));
  CHECK(Count(r.out, "Result: FAIL") == 2);
}

TEST_CASE("services start in weft.toml's order, each once the one before is ready, and stop in reverse") {
  TempDir d;
  d.Write("weft.toml",
          "[[service]]\n"
          "name = \"a\"\n"
          "command = \"echo start a >> services.log; trap 'echo stop a >> services.log; exit 0' "
          "TERM; touch a.ready; while :; do sleep 0.05; done\"\n"
          "ready_file = \"a.ready\"\n"
          "[[service]]\n"
          "name = \"b\"\n"
          "command = \"test -f a.ready && echo start b >> services.log; trap 'echo stop b >> "
          "services.log; exit 0' TERM; echo listening; while :; do sleep 0.05; done\"\n"
          "ready_line = \"listening\"\n");
  d.Write("t/uses.sh", "echo 1..1; grep -q 'start b' services.log && echo ok 1 || echo not ok 1\n");
  Result r = Weft(d, {"test", "-v"});
  CHECK(r.code == 0);
  CHECK(Has(r.out, "SERVICE a ready: a.ready exists ("));
  CHECK(Has(r.out, "SERVICE b ready: its output said \"listening\" ("));
  CHECK(d.Read("services.log") == "start a\nstart b\nstop b\nstop a\n");
  std::string log = d.Read(".weft/latest");
  CHECK(Count(log, R"("type":"service.end")") == 2);
  CHECK(!Has(log, R"("output":)"));  // the run passed: no output kept
}

TEST_CASE("a service that is not ready fails the run: jobs cancelled, its output shown, nothing left") {
  TempDir d;
  d.Write("weft.toml",
          "[[service]]\n"
          "name = \"db\"\n"
          "command = \"echo $$ > db.pid; echo booting the db; exec sleep 60\"\n"
          "ready_port = 1\n"
          "ready_timeout = 0.5\n");
  d.Write("t/a.sh", "echo 1..1; echo ok 1\n");
  Result r = Weft(d, {"test"});
  CHECK(r.code == 1);
  CHECK(Has(r.out, "BAIL service db: not ready (port 1) after 0.5s; stopping the run\n"));
  CHECK(Has(r.out, "SERVICE db: not ready (port 1) after 0.5s\n"));
  CHECK(Has(r.out, "  output of service db:\n    booting the db\n"));
  CHECK(Has(r.out, "1 cancelled"));
  pid_t db = std::atoi(d.Read("db.pid").c_str());
  REQUIRE(db > 0);
  CHECK(WaitFor(10, [&] { return !Alive(db); }));
}

TEST_CASE("a failed run keeps its services' output in the log; one that dies mid-run says so") {
  TempDir d;
  d.Write("weft.toml",
          "[[service]]\n"
          "name = \"web\"\n"
          "command = \"echo served GET /; exec sleep 60\"\n"
          "ready_line = \"served\"\n"
          "[[service]]\n"
          "name = \"flaky\"\n"
          "command = \"echo up; sleep 0.2; echo going away; exit 7\"\n");
  d.Write("t/a.sh", "sleep 0.6; echo 1..1; echo 'not ok 1 - the page is wrong'\n");
  Result r = Weft(d, {"test"});
  CHECK(r.code == 1);
  CHECK(Has(r.out, "SERVICE flaky: it ended during the run\n"));
  CHECK(Has(r.out, "  output of service web:\n    served GET /\n"));
  std::string log = d.Read(".weft/latest");
  CHECK(Has(log, R"("name":"web","exit":{"code":null,"signal":"SIGTERM"},"stopped":true,)"));
  CHECK(Has(log, R"("output":["served GET /"])"));
  CHECK(Has(log, R"("name":"flaky","exit":{"code":7,"signal":null},"stopped":false,"error":"it ended during the run")"));
}

TEST_CASE("the runner SIGKILLed: its services and their children are killed too") {
  TempDir d;
  d.Write("weft.toml",
          "[[service]]\n"
          "name = \"svc\"\n"
          "command = \"sleep 60 & echo $! > child.pid; echo $$ > svc.pid; wait\"\n");
  d.HelperTest("t/hang", "plan 1 pidfile " + d.path() + "/test.pid hang");
  RunOptions o;
  o.cwd = d.path();
  Child runner({Bin("weft-runner"), "t"}, o);
  REQUIRE(WaitFor(30, [&] { return access((d.path() + "/test.pid").c_str(), F_OK) == 0; }));
  REQUIRE(WaitFor(10, [&] { return !d.Read("child.pid").empty() && !d.Read("svc.pid").empty(); }));
  pid_t svc = std::atoi(d.Read("svc.pid").c_str());
  pid_t child = std::atoi(d.Read("child.pid").c_str());
  kill(runner.pid(), SIGKILL);
  runner.Wait();
  CHECK(WaitFor(10, [&] { return !Alive(svc) && !Alive(child); }));
}

TEST_CASE("Ctrl-C: the running tests are stopped, then the services, last started first") {
  TempDir d;
  d.Write("weft.toml",
          // Each is ready once its trap is set: a TERM before would end it
          // silently.
          "[[service]]\nname = \"a\"\nready_line = \"up\"\n"
          "command = \"trap 'echo stop a >> services.log; exit 0' TERM; echo up; while :; do sleep 0.05; done\"\n"
          "[[service]]\nname = \"b\"\nready_line = \"up\"\n"
          "command = \"trap 'echo stop b >> services.log; exit 0' TERM; echo up; while :; do sleep 0.05; done\"\n");
  d.HelperTest("t/hang", "plan 1 pidfile " + d.path() + "/test.pid hang");
  RunOptions o;
  o.cwd = d.path();
  o.new_group = true;
  Child weft({Bin("weft"), "test"}, o);
  REQUIRE(WaitFor(30, [&] { return access((d.path() + "/test.pid").c_str(), F_OK) == 0; }));
  // One Ctrl-C, to weft (which passes it on to the runner). (To the whole
  // group, the runner gets it twice, and on a slow machine the second can
  // come late enough to count as a second Ctrl-C: no grace for anyone.)
  kill(weft.pid(), SIGINT);
  Result r = weft.Wait();
  CHECK(r.code == 130);
  CHECK(d.Read("services.log") == "stop b\nstop a\n");
  CHECK(Has(r.out, "INTERRUPTED"));
}
