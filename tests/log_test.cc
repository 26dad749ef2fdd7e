// Logs: never torn, compressed or not, whatever moment the chain dies at;
// and every reader reads both kinds the same way.
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <dirent.h>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>

#include <zstd.h>

#include "support.h"

using namespace weft::testing;

namespace {

// The one log in DIR/.weft/runs.
std::string OnlyLog(const TempDir& d) {
  std::string dir = d.path() + "/.weft/runs";
  std::string found;
  if (DIR* dp = opendir(dir.c_str())) {
    while (dirent* e = readdir(dp))
      if (e->d_name[0] != '.') found = dir + "/" + e->d_name;
    closedir(dp);
  }
  return found;
}

// What a compressed log decodes to, as far as it goes (a log cut off
// mid-frame: every block whole up to there). Not the zstd command: it
// writes what it decoded in 128 KiB pieces, and drops the last piece at
// the cut.
std::string Decompressed(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string out;
  ZSTD_DStream* z = ZSTD_createDStream();
  ZSTD_initDStream(z);
  ZSTD_inBuffer input = {data.data(), data.size(), 0};
  std::string buf(ZSTD_DStreamOutSize(), '\0');
  while (input.pos < input.size) {
    ZSTD_outBuffer output = {buf.data(), buf.size(), 0};
    size_t rc = ZSTD_decompressStream(z, &output, &input);
    out.append(buf.data(), output.pos);
    if (ZSTD_isError(rc) || (output.pos == 0 && rc != 0 && input.pos == input.size)) break;
  }
  // What is decoded but still held at the cut.
  for (;;) {
    ZSTD_outBuffer output = {buf.data(), buf.size(), 0};
    size_t rc = ZSTD_decompressStream(z, &output, &input);
    out.append(buf.data(), output.pos);
    if (ZSTD_isError(rc) || output.pos == 0) break;
  }
  ZSTD_freeDStream(z);
  return out;
}

// Every line of the (decompressed) log is a whole JSON object with a type.
std::string CheckLines(const std::string& log) {
  RunOptions o;
  if (log.size() > 4 && log.substr(log.size() - 4) == ".zst") {
    o.input = Decompressed(log);
  } else {
    std::ifstream in(log, std::ios::binary);
    o.input.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  Result r = Run({"/usr/bin/python3", "-c",
                  "import json, sys\n"
                  "data = sys.stdin.buffer.read()\n"
                  "lines = data.split(b'\\n')\n"
                  "assert lines[-1] == b'', 'the log does not end with a newline'\n"
                  "for l in lines[:-1]:\n"
                  "    assert json.loads(l)['type'], l\n"
                  "print(len(lines) - 1)\n"},
                 o);
  return r.code == 0 ? r.out : "bad: " + r.err;
}

}  // namespace

TEST_CASE("a compressed log replays like the live run, and the history reads it") {
  TempDir d;
  d.Write("t/a.sh", "echo 1..2; echo ok 1; echo 'not ok 2 - no'\n");
  d.Write("t/b.sh", "echo 1..1; echo ok 1\n");
  RunOptions o;
  o.cwd = d.path();
  Result live = Run({Bin("weft"), "test", "--zstd", "-j1"}, o);
  CHECK(live.code == 1);
  std::string log = OnlyLog(d);
  CHECK(log.size() > 10);
  CHECK(log.substr(log.size() - 10) == ".jsonl.zst");
  CHECK(d.Read(".weft/runs/" + log.substr(log.rfind('/') + 1)).substr(0, 4) ==
        "\x28\xB5\x2F\xFD");
  Result replay = Run({Bin("weft"), "replay"}, o);
  CHECK(replay.code == 1);
  CHECK(replay.out == live.out);
  Result json = Run({Bin("weft-render-json"), log});
  CHECK(Has(json.out, R"("verdict":"fail","exit":1,)"));
  // The history index reads compressed logs too.
  Result again = Run({Bin("weft"), "list", "--rerun-failed"}, o);
  CHECK(Has(again.out, R"("name":"t/a.sh")"));
  CHECK(!Has(again.out, R"("name":"t/b.sh")"));
}

TEST_CASE("the chain SIGKILLed at random moments: the log is always whole lines") {
  std::mt19937 random(20261123);
  for (bool zstd : {false, true}) {
    for (int round = 0; round < 4; ++round) {
      int delay_ms = std::uniform_int_distribution<int>(50, 1800)(random);
      CAPTURE(zstd);
      CAPTURE(delay_ms);
      TempDir d;
      // Output in bursts for three seconds: some 300 KB of log each
      // tenth of a second, so compressed blocks fill between the flushes.
      d.Write("t/steady.sh",
              "echo 1..1; i=0; while [ $i -lt 30 ]; do seq 1 2000 | sed \"s/^/# $i line /\";"
              " i=$((i+1)); sleep 0.1; done; echo ok 1\n");
      RunOptions o;
      o.cwd = d.path();
      o.new_group = true;
      std::vector<std::string> argv = {Bin("weft"), "test", "t"};
      if (zstd) argv.push_back("--zstd");
      Child weft(argv, o);
      // When the log appeared (the logger's first line): on a loaded
      // machine the chain may take a while to start.
      int64_t appeared_ms = -1;
      for (int waited = 0; waited < delay_ms; waited += 5) {
        if (appeared_ms < 0 && !OnlyLog(d).empty()) appeared_ms = waited;
        usleep(5000);
      }
      kill(-weft.pid(), SIGKILL);
      weft.Wait();
      std::string log = OnlyLog(d);
      if (log.empty()) continue;  // killed before the log was made
      std::string lines = CheckLines(log);
      CAPTURE(lines);
      CHECK(lines.rfind("bad", 0) != 0);
      // A compressed log holds what came up to a second before the kill.
      CAPTURE(appeared_ms);
      if (zstd && appeared_ms >= 0 && delay_ms - appeared_ms > 1300)
        CHECK(std::stoi(lines) > 2);
      // Readers take the prefix: no summary, said plainly; no crash.
      Result shown = Run({Bin("weft-render-term"), log});
      CHECK(shown.code == 3);
      Result json = Run({Bin("weft-render-json"), log});
      CHECK(json.code == 0);
      if (lines == "0\n")
        CHECK(Has(json.out, R"("run":null)"));  // nothing had reached the file
      else
        CHECK(Has(json.out, R"("complete":false)"));
    }
  }
}

TEST_CASE("weft replay: any renderer, filtered by type, job or failure, at the original pace") {
  TempDir d;
  d.Write("t/a.sh", "echo 1..1; echo 'not ok 1 - broken'\n");
  d.Write("t/b.sh", "echo 1..1; sleep 0.4; echo ok 1\n");
  RunOptions o;
  o.cwd = d.path();
  Result live = Run({Bin("weft"), "test", "-j1", "--order=name"}, o);
  CHECK(live.code == 1);
  // Each renderer by name, the same as run by hand on the log.
  for (const char* name : {"json", "tap", "junit", "github"}) {
    CAPTURE(name);
    Result via = Run({Bin("weft"), "replay", std::string("--renderer=") + name}, o);
    Result direct = Run({Bin(std::string("weft-render-") + name), d.path() + "/.weft/latest"});
    CHECK(via.out == direct.out);
    CHECK(via.code == direct.code);
  }
  // Only what failed: the passing job is not there.
  Result failed = Run({Bin("weft"), "replay", "--failed", "-v"}, o);
  CHECK(Has(failed.out, "t/a.sh: not ok 1 - broken\n"));
  CHECK(!Has(failed.out, "t/b.sh"));
  Result job = Run({Bin("weft"), "replay", "--renderer=json", "--job=2"}, o);
  CHECK(Has(job.out, R"("name":"t/b.sh")"));
  CHECK(!Has(job.out, R"("name":"t/a.sh")"));
  Result types = Run({Bin("weft"), "replay", "-v", "--types=job.start,job.end,summary"}, o);
  CHECK(!Has(types.out, "not ok 1 - broken"));  // no assert events passed on
  CHECK(Has(types.out, "FAIL t/a.sh ("));
  // The original pace: at least the test's own 0.4 s pause.
  auto start = std::chrono::steady_clock::now();
  Result paced = Run({Bin("weft"), "replay", "--speed=1"}, o);
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CHECK(took >= 0.35);
  CHECK(paced.out == live.out);
  Result stream = Run({Bin("weft"), "replay", "--failed", "-"}, o);
  CHECK(stream.code == 2);
  CHECK(Has(stream.err, "--failed needs a whole log"));
}

TEST_CASE("weft merge: shards' logs become one run that renderers and the history read as one") {
  TempDir d;
  for (int i = 1; i <= 4; ++i) d.Write("t/p" + std::to_string(i) + ".sh", "echo 1..1; echo ok 1\n");
  d.Write("t/f.sh", "echo 1..1; echo 'not ok 1 - bad'\n");
  RunOptions o;
  o.cwd = d.path();
  // Three shards, one of them compressed.
  CHECK(Run({Bin("weft"), "test", "--include=t/p[12]*", "-o", "s1.jsonl"}, o).code == 0);
  CHECK(Run({Bin("weft"), "test", "--include=t/p[34]*", "-o", "s2.jsonl", "--zstd"}, o).code == 0);
  CHECK(Run({Bin("weft"), "test", "--include=t/f*", "-o", "s3.jsonl"}, o).code == 1);
  d.Write(".weft/runs/.keep", "");
  Result merged = Run({Bin("weft"), "merge", "s1.jsonl", "s2.jsonl", "s3.jsonl",
                       "-o", ".weft/runs/merged.jsonl"}, o);
  CHECK(merged.code == 0);
  std::string log = d.Read(".weft/runs/merged.jsonl");
  CHECK(Has(log, R"("jobs":{"planned":5,"passed":4,"failed":1,)"));
  // One run id throughout, jobs numbered 1..5 with no two alike.
  size_t at = log.find("\"run\":\"") + 7;
  std::string run = log.substr(at, log.find('"', at) - at);
  size_t runs = 0, pos = 0;
  while ((pos = log.find("\"run\":\"", pos)) != std::string::npos) {
    CHECK(log.compare(pos + 7, run.size() + 1, run + "\"") == 0);
    ++runs, ++pos;
  }
  CHECK(runs == Lines(log).size());
  for (int job = 1; job <= 5; ++job)
    CHECK(Has(log, "\"type\":\"job.start\",\"run\":\"" + run + "\",\"job\":" + std::to_string(job) + ","));
  Result shown = Run({Bin("weft"), "replay", ".weft/runs/merged.jsonl"}, o);
  CHECK(shown.code == 1);
  CHECK(Has(shown.out, "Files: 4 passed, 1 failed (5 in all).\n"));
  // The history index takes it as one run: its failure is the one to rerun.
  Result rerun = Run({Bin("weft"), "list", "--rerun-failed"}, o);
  CHECK(Has(rerun.out, R"("name":"t/f.sh")"));
  Result missing = Run({Bin("weft"), "merge", "nope.jsonl"}, o);
  CHECK(missing.code == 2);
  CHECK(missing.err == "weft: error: cannot open nope.jsonl: No such file or directory\n");
}

namespace {
// A stream of N output events of one run, then its run.end.
std::string Stream(int n) {
  std::string s =
      "{\"type\":\"hello\",\"run\":\"R1\",\"seq\":0,\"ts\":1,\"schema\":\"1.0\",\"producer\":\"t\",\"version\":\"0\"}\n"
      "{\"type\":\"run.start\",\"run\":\"R1\",\"seq\":1,\"ts\":1,\"jobs\":1,\"slots\":1}\n";
  for (int i = 0; i < n; ++i)
    s += "{\"type\":\"output\",\"run\":\"R1\",\"job\":1,\"seq\":" + std::to_string(i) +
         ",\"ts\":2,\"stream\":\"stdout\",\"text\":\"" + std::string(100, 'x') + "\"}\n";
  s += "{\"type\":\"job.end\",\"run\":\"R1\",\"job\":1,\"seq\":9,\"ts\":3,\"name\":\"t\",\"verdict\":\"pass\",\"reasons\":[]}\n"
       "{\"type\":\"run.end\",\"run\":\"R1\",\"seq\":2,\"ts\":4}\n";
  return s;
}
}  // namespace

TEST_CASE("weft-logger fans the stream out to subscribers, each only the types it asked for") {
  TempDir d;
  REQUIRE(Run({"/usr/bin/mkfifo", d.path() + "/ends"}).code == 0);
  RunOptions reader_o;
  Child reader({"/bin/sh", "-c", "cat " + d.path() + "/ends > " + d.path() + "/ends.out"}, reader_o);
  RunOptions o;
  o.cwd = d.path();
  o.input = Stream(100);
  Result r = Run({Bin("weft-logger"), "-q", "--fifo", d.path() + "/ends:job.end,run.end"}, o);
  CHECK(r.code == 0);
  CHECK(r.err == "");
  reader.Wait();
  auto got = Lines(d.Read("ends.out"));
  REQUIRE(got.size() == 2);
  CHECK(got[0].rfind("{\"type\":\"job.end\"", 0) == 0);
  CHECK(got[1].rfind("{\"type\":\"run.end\"", 0) == 0);
  // Not a FIFO: a usage error naming it.
  Result bad = Run({Bin("weft-logger"), "-q", "--fifo", d.path() + "/nope"}, o);
  CHECK(bad.code == 2);
  CHECK(bad.err == "weft-logger: error: --fifo " + d.path() +
                       "/nope: not a named pipe (make one with mkfifo)\n");
}

TEST_CASE("weft-logger --fd: an inherited descriptor gets only its types; one whose reader left is dropped") {
  TempDir d;
  RunOptions o;
  o.cwd = d.path();
  o.input = Stream(100);
  // Two descriptors, two lists; the log and stdout get every line.
  Result r = Run({"/bin/sh", "-c",
                  "exec \"$0\" --fd 3:job.end,run.end --fd 4:run.start 3>ends.out 4>starts.out",
                  Bin("weft-logger")},
                 o);
  CHECK(r.code == 0);
  CHECK(r.err == "");
  CHECK(r.out == o.input);
  auto ends = Lines(d.Read("ends.out"));
  REQUIRE(ends.size() == 2);
  CHECK(ends[0].rfind("{\"type\":\"job.end\"", 0) == 0);
  CHECK(ends[1].rfind("{\"type\":\"run.end\"", 0) == 0);
  auto starts = Lines(d.Read("starts.out"));
  REQUIRE(starts.size() == 1);
  CHECK(starts[0].rfind("{\"type\":\"run.start\"", 0) == 0);
  CHECK(d.Read(".weft/runs/R1.jsonl") == o.input);
  // A descriptor that is not open, or one of the standard three.
  for (const char* bad : {"7", "2", "x"}) {
    CAPTURE(bad);
    Result b = Run({Bin("weft-logger"), "-q", "--fd", bad}, o);
    CHECK(b.code == 2);
    CHECK(b.err == std::string("weft-logger: error: --fd ") + bad +
                       ": not an open file descriptor above 2\n");
  }
  // The subscriber's reader is gone before the first line: dropped, said
  // in the log, and the log whole.
  TempDir e;
  RunOptions eo;
  eo.cwd = e.path();
  eo.input = Stream(100);
  Result gone = Run({"/bin/sh", "-c",
                     "(until [ -e closed ]; do sleep 0.01; done; exec \"$0\" -q --fd 3 3>&1 >/dev/null)"
                     " | (exec <&-; : > closed; sleep 1)",
                     Bin("weft-logger")},
                    eo);
  CHECK(gone.code == 0);
  CHECK(gone.err == "weft-logger: warning: subscriber 3 dropped: its reader went away\n");
  std::string log = e.Read(".weft/runs/R1.jsonl");
  CHECK(Has(log, "\"message\":\"subscriber 3 dropped: its reader went away\"}"));
  CHECK(Lines(log).size() == 100 + 4 + 1);
}

TEST_CASE("a subscriber that stops reading is dropped with a warning; the log is whole") {
  TempDir d;
  REQUIRE(Run({"/usr/bin/mkfifo", d.path() + "/slow"}).code == 0);
  RunOptions reader_o;
  // Opens the pipe to read, never reads.
  Child stuck({"/bin/sh", "-c", "exec 3<" + d.path() + "/slow; sleep 60"}, reader_o);
  usleep(200 * 1000);
  RunOptions o;
  o.cwd = d.path();
  o.input = Stream(120000);  // about 19 MB: more than the 8 MiB it may lag
  Result r = Run({Bin("weft-logger"), "-q", "--fifo", d.path() + "/slow"}, o);
  CHECK(r.code == 0);
  CHECK(Has(r.err, "weft-logger: warning: subscriber " + d.path() +
                       "/slow dropped: it fell more than 8 MiB behind\n"));
  std::string log = d.Read(".weft/runs/R1.jsonl");
  CHECK(Has(log, "{\"type\":\"warning\",\"run\":\"R1\","));
  CHECK(Has(log, "\"message\":\"subscriber " + d.path() + "/slow dropped: it fell more than 8 MiB behind\"}"));
  CHECK(Lines(log).size() == 120000 + 4 + 1);
  CHECK(Has(log, "{\"type\":\"run.end\""));
  kill(stuck.pid(), SIGKILL);
  stuck.Wait();
}

TEST_CASE("weft status reads the live scoreboard; a dead overlord's is cleaned away") {
  TempDir d;
  d.Write("t/slow.sh", "echo 1..1; echo ok 1; sleep 30; echo ok 2\n");
  RunOptions o;
  o.cwd = d.path();
  o.new_group = true;
  Child weft({Bin("weft"), "test", "t"}, o);
  // Other tests may run beside this one: only our run's line counts.
  std::string ours;
  CHECK(WaitFor(20, [&] {
    for (const auto& line : Lines(Run({Bin("weft"), "status"}).out))
      if (Has(line, "  " + d.path() + "  running: t/slow.sh (")) ours = line;
    return !ours.empty();
  }));
  CHECK(Has(ours, "  0/1 done, 0 failed, 1 running, 0 to do  "));
  std::string json = Run({Bin("weft"), "status", "--json"}).out;
  size_t at = json.find("\"cwd\":\"" + d.path() + "\"");
  REQUIRE(at != std::string::npos);
  size_t pid_at = json.find("\"pid\":", at) + 6;
  int overlord = std::stoi(json.substr(pid_at));
  std::string run = ours.substr(0, ours.find(' '));
  CHECK(Has(json, R"("running":[{"job":1,"name":"t/slow.sh","elapsed_us":)"));
  // The overlord dies without a word: its segment is found stale, removed.
  kill(overlord, SIGKILL);
  CHECK(WaitFor(10, [&] { return !Alive(overlord); }));
  Result after = Run({Bin("weft"), "status"});
  CHECK(Has(after.err, "weft: warning: removed /dev/shm/weft-" + run +
                           ": its run's weft-overlord is gone\n"));
  CHECK(!Has(after.out, d.path()));
  CHECK(access(("/dev/shm/weft-" + run).c_str(), F_OK) != 0);
  kill(-weft.pid(), SIGKILL);
  weft.Wait();
}

TEST_CASE("weft status: a line per active run; each board gone with its run; garbage cleaned") {
  TempDir a, b;
  for (TempDir* d : {&a, &b})
    d->Write("t/wait.sh", "echo 1..1; echo ok 1; while [ ! -e go ]; do sleep 0.05; done\n");
  RunOptions ao, bo;
  ao.cwd = a.path();
  bo.cwd = b.path();
  ao.new_group = bo.new_group = true;
  Child first({Bin("weft"), "test", "t"}, ao);
  Child second({Bin("weft"), "test", "t"}, bo);
  std::string line_a, line_b;
  CHECK(WaitFor(20, [&] {
    line_a.clear(), line_b.clear();
    for (const auto& line : Lines(Run({Bin("weft"), "status"}).out)) {
      if (Has(line, "  " + a.path() + "  running: t/wait.sh (")) line_a = line;
      if (Has(line, "  " + b.path() + "  running: t/wait.sh (")) line_b = line;
    }
    return !line_a.empty() && !line_b.empty();
  }));
  std::string run_a = line_a.substr(0, line_a.find(' '));
  std::string run_b = line_b.substr(0, line_b.find(' '));
  CHECK(run_a != run_b);
  std::string json = Run({Bin("weft"), "status", "--json"}).out;
  CHECK(Has(json, "\"cwd\":\"" + a.path() + "\""));
  CHECK(Has(json, "\"cwd\":\"" + b.path() + "\""));
  CHECK(access(("/dev/shm/weft-" + run_a).c_str(), F_OK) == 0);
  // Both runs end: their boards go with them.
  a.Write("go", "");
  b.Write("go", "");
  CHECK(first.Wait().code == 0);
  CHECK(second.Wait().code == 0);
  CHECK(access(("/dev/shm/weft-" + run_a).c_str(), F_OK) != 0);
  CHECK(access(("/dev/shm/weft-" + run_b).c_str(), F_OK) != 0);
  Result after = Run({Bin("weft"), "status"});
  CHECK(!Has(after.out, a.path()));
  CHECK(!Has(after.out, b.path()));
  // Segments of our name that are no board: cleaned once they are a
  // minute old (a board being made is unreadable for microseconds).
  std::string tag = "weft-test-" + std::to_string(getpid());
  std::string shm_short = "/dev/shm/" + tag + "-short", shm_zeros = "/dev/shm/" + tag + "-zeros",
              shm_new = "/dev/shm/" + tag + "-new";
  std::ofstream(shm_short) << "0123456789";
  std::ofstream(shm_zeros) << std::string(1 << 20, '\0');
  std::ofstream(shm_new) << "0123456789";
  for (const auto& old : {shm_short, shm_zeros})
    REQUIRE(Run({"/usr/bin/touch", "-d", "2 minutes ago", old}).code == 0);
  Result cleaned = Run({Bin("weft"), "status"});
  // (Another test's weft status, run beside this one, may have cleaned
  // them first: then it said so, not this one.)
  if (Has(cleaned.err, shm_short))
    CHECK(Has(cleaned.err, "weft: warning: removed " + shm_short +
                               ": cut short, not a scoreboard\n"));
  if (Has(cleaned.err, shm_zeros))
    CHECK(Has(cleaned.err, "weft: warning: removed " + shm_zeros +
                               ": not a weft scoreboard\n"));
  CHECK(!Has(cleaned.err, shm_new));
  CHECK(access(shm_short.c_str(), F_OK) != 0);
  CHECK(access(shm_zeros.c_str(), F_OK) != 0);
  CHECK(access(shm_new.c_str(), F_OK) == 0);
  unlink(shm_new.c_str());
}

TEST_CASE("following a compressed log that is still empty waits for its first bytes") {
  TempDir d;
  d.Write("t/a.sh", "echo 1..1; echo ok 1\n");
  RunOptions o;
  o.cwd = d.path();
  REQUIRE(Run({Bin("weft"), "test", "--zstd"}, o).code == 0);
  std::string whole = d.Read(".weft/runs/" + OnlyLog(d).substr(OnlyLog(d).rfind('/') + 1));
  d.Write("later.jsonl.zst", "");
  Child follower({Bin("weft-render-json"), "--follow", d.path() + "/later.jsonl.zst"}, RunOptions{});
  usleep(300 * 1000);
  d.Write("later.jsonl.zst", whole);
  Result r = follower.Wait();
  CHECK(r.code == 0);
  CHECK(Has(r.out, R"("verdict":"pass","exit":0,)"));
  // A log that is not there: said once, plainly.
  Result missing = Run({Bin("weft-render-term"), d.path() + "/nope.jsonl"});
  CHECK(missing.code == 3);
  CHECK(missing.err == "weft-render-term: error: cannot open " + d.path() +
                           "/nope.jsonl: No such file or directory\n");
}

TEST_CASE("weft merge keeps an interrupted shard's interruption, and the host it ran on") {
  TempDir d;
  d.Write("t/a.sh", "echo 1..1; echo ok 1\n");
  RunOptions o;
  o.cwd = d.path();
  REQUIRE(Run({Bin("weft"), "test", "-o", "s1.jsonl"}, o).code == 0);
  // A shard whose run was stopped (its run.end says so).
  std::string s2 = d.Read("s1.jsonl");
  std::string from = "\"interrupted\":false";
  size_t at = s2.rfind(from);
  REQUIRE(at != std::string::npos);
  s2.replace(at, from.size(), "\"interrupted\":true");
  d.Write("s2.jsonl", s2);
  Result merged = Run({Bin("weft"), "merge", "s1.jsonl", "s2.jsonl"}, o);
  CHECK(merged.code == 0);
  CHECK(Has(merged.out, R"("verdict":"interrupted","exit":130)"));
  CHECK(Has(merged.out, R"(,"cwd":")" + d.path() + R"(","host":")"));
}

TEST_CASE("a long run's log gets an index: filtered replays, --failed and the history read it") {
  TempDir d;
  // Each test's comments make the log some 8 MiB: past where an index pays.
  std::string filler = "seq 1 25000 | sed 's/^/# a comment to make the log long, line /'\n";
  d.Write("t/a.sh", "echo 1..2\n" + filler + "echo ok 1; echo 'not ok 2 - broken'\n", true);
  d.Write("t/b.sh", "echo 1..1\n" + filler + "echo ok 1\n", true);
  RunOptions o;
  o.cwd = d.path();
  Result live = Run({Bin("weft"), "test", "-j2", "t"}, o);
  CHECK(live.code == 1);
  std::string log = OnlyLog(d);  // (not the index: hidden)
  REQUIRE(!log.empty());
  std::string name = log.substr(log.rfind('/') + 1);
  std::string index = d.Read(".weft/runs/." + name + ".idx");
  CHECK(index.rfind("weft-log-index 1 bulk=", 0) == 0);
  CHECK(Count(index, R"( {"type":"job.end",)") == 2);
  CHECK(!Has(index, R"({"type":"comment")"));
  // The same log without its index (a hard link of another name) is read
  // whole: every filtered view is the same either way.
  std::string plain = d.path() + "/plain.jsonl";
  REQUIRE(link(log.c_str(), plain.c_str()) == 0);
  std::vector<std::vector<std::string>> views = {
      {"replay", "--renderer=json", "--types=job.end,summary"},
      {"replay", "-v", "--types=job.start,job.end,summary"},
      {"replay", "--failed", "-v"},
      {"replay", "--renderer=junit", "--failed"}};
  for (const auto& view : views) {
    CAPTURE(view[1]);
    std::vector<std::string> a = {Bin("weft")}, b = {Bin("weft")};
    a.insert(a.end(), view.begin(), view.end());
    b.insert(b.end(), view.begin(), view.end());
    a.push_back(log);
    b.push_back(plain);
    Result indexed = Run(a, o), scanned = Run(b, o);
    CHECK(indexed.code == scanned.code);
    CHECK(indexed.out == scanned.out);
    CHECK(indexed.err == scanned.err);
  }
  Result failed = Run({Bin("weft"), "replay", "--failed", "-v", log}, o);
  CHECK(Has(failed.out, "t/a.sh: not ok 2 - broken\n"));
  CHECK(!Has(failed.out, "t/b.sh"));
  Result rerun = Run({Bin("weft"), "list", "--rerun-failed"}, o);
  CHECK(Has(rerun.out, R"("name":"t/a.sh")"));
  CHECK(!Has(rerun.out, R"("name":"t/b.sh")"));

  // What the replay read was the index: a job.end forged into the log in
  // place of a comment, the log then made to look older than its index,
  // shows in a scan of the log and not in the indexed replay.
  std::string text = d.Read(".weft/runs/" + name);
  size_t at = text.find(R"({"type":"comment")");
  REQUIRE(at != std::string::npos);
  size_t end = text.find('\n', at);
  std::string forged = R"({"type":"job.end","run":"x","job":77,"seq":1,"ts":1,"name":"forged","verdict":"pass","pad":")";
  REQUIRE(forged.size() + 2 <= end - at);
  forged += std::string(end - at - forged.size() - 2, 'x') + "\"}";
  text.replace(at, end - at, forged);
  d.Write(".weft/runs/" + name, text);
  REQUIRE(Run({"/usr/bin/touch", "-r", d.path() + "/.weft/runs/." + name + ".idx", "-d",
               "-5 seconds", log}).code == 0);
  std::vector<std::string> json = {Bin("weft"), "replay", "--renderer=json", "--types=job.end"};
  json.push_back(log);
  CHECK(!Has(Run(json, o).out, "forged"));
  json.back() = plain;
  CHECK(Has(Run(json, o).out, "forged"));
  // Touched since (newer than its index): the log is read whole.
  REQUIRE(Run({"/usr/bin/touch", log}).code == 0);
  json.back() = log;
  CHECK(Has(Run(json, o).out, "forged"));

  // A compressed log gets none (its bytes cannot be reached by offset).
  CHECK(Run({Bin("weft"), "test", "--zstd", "-j2", "t"}, o).code == 1);
  int indexes = 0;
  for (const auto& e : std::filesystem::directory_iterator(d.path() + "/.weft/runs"))
    if (e.path().filename().string().ends_with(".idx")) ++indexes;
  CHECK(indexes == 1);
}

namespace {

// Every record of "index" is the line of "log" at its offset, and they
// are all the lines of "log" that are not assertions, in order; the index
// covers the whole log.
void CheckIndex(const std::string& log, const std::string& index) {
  std::vector<std::pair<size_t, std::string>> expected;
  for (size_t at = 0, nl; (nl = log.find('\n', at)) != std::string::npos; at = nl + 1) {
    std::string line = log.substr(at, nl - at);
    if (line.rfind(R"({"type":"assert")", 0) != 0) expected.emplace_back(at, line);
  }
  std::vector<std::pair<size_t, std::string>> records;
  std::string last_marker;
  size_t at = index.find('\n') + 1;
  for (size_t nl; (nl = index.find('\n', at)) != std::string::npos; at = nl + 1) {
    std::string line = index.substr(at, nl - at);
    if (line.rfind("= ", 0) == 0) {
      last_marker = line;
      continue;
    }
    size_t space = line.find(' ');
    records.emplace_back(std::stoull(line.substr(0, space)), line.substr(space + 1));
  }
  CHECK(records.size() == expected.size());
  CHECK(records == expected);
  CHECK(last_marker == "= " + std::to_string(log.size()));
}

}  // namespace

TEST_CASE("weft-logger's index, run by run: lines before the run id, a dropped subscriber, a tail") {
  TempDir d;
  REQUIRE(Run({"/usr/bin/mkfifo", d.path() + "/nobody"}).code == 0);
  auto long_run = [](const std::string& run) {
    std::string r = R"({"type":"hello","run":")" + run + R"(","seq":0,"ts":1,"schema":"1.0"})" "\n" +
                    R"({"type":"run.start","run":")" + run + R"(","seq":1,"ts":2,"jobs":2})" "\n";
    for (int job = 1; job <= 2; ++job) {
      std::string j = R"("run":")" + run + R"(","job":)" + std::to_string(job);
      r += R"({"type":"job.start",)" + j + R"(,"seq":1,"ts":3,"name":"t/)" + std::to_string(job) +
           ".t\"}\n";
      for (int i = 1; i <= 20000; ++i)
        r += R"({"type":"assert",)" + j + R"(,"seq":)" + std::to_string(i + 1) +
             R"(,"ts":4,"ok":true,"number":)" + std::to_string(i) +
             R"(,"description":"one of very many, to make the log long"})" "\n";
      r += R"({"type":"job.end",)" + j + R"(,"seq":9,"ts":5,"name":"t/)" + std::to_string(job) +
           R"(.t","verdict":"pass"})" "\n";
    }
    return r + R"({"type":"run.end","run":")" + run + R"(","seq":2,"ts":6})" "\n";
  };
  // Before the first run id: a line held until the log opens.
  std::string early = R"({"type":"counts","seq":0,"ts":1,"P":0,"F":0})" "\n";
  std::string r1 = long_run("r1"), r2 = long_run("r2");
  // After r2's end: lines with no landmark among them, in the last batches.
  std::string tail;
  for (int i = 1; i <= 3000; ++i)
    tail += R"({"type":"assert","run":"r2","job":2,"seq":)" + std::to_string(30000 + i) +
            R"(,"ts":7,"ok":true,"number":)" + std::to_string(i) + "}\n";
  RunOptions o;
  o.cwd = d.path();
  o.input = early + r1 + r2 + tail;
  // A subscriber nobody reads: dropped past 8 MiB of backlog, in r2, with
  // a warning event in r2's log (a landmark of its own).
  Result r = Run({Bin("weft-logger"), "-q", "--fifo", d.path() + "/nobody"}, o);
  CHECK(r.code == 0);
  std::string log1 = d.Read(".weft/runs/r1.jsonl"), log2 = d.Read(".weft/runs/r2.jsonl");
  CHECK(log1 == early + r1);
  CHECK(Has(log2, R"({"type":"warning","run":"r2",)"));
  CHECK(log2.size() > r2.size() + tail.size());
  CheckIndex(log1, d.Read(".weft/runs/.r1.jsonl.idx"));
  CheckIndex(log2, d.Read(".weft/runs/.r2.jsonl.idx"));
  // Read through it: the warning, as a scan of the log finds it.
  Result warning = Run({Bin("weft"), "replay", "--renderer=json", "--types=warning,job.end",
                        d.path() + "/.weft/runs/r2.jsonl"});
  CHECK(warning.code == 0);
  CHECK(Has(warning.out, R"("name":"t/2.t","verdict":"pass")"));

  // -o through a link: the index is beside the file, where readers look.
  REQUIRE(Run({"/bin/ln", "-s", "real.jsonl", d.path() + "/link.jsonl"}).code == 0);
  o.input = r1;
  CHECK(Run({Bin("weft-logger"), "-q", "-o", "link.jsonl"}, o).code == 0);
  CheckIndex(d.Read("real.jsonl"), d.Read(".real.jsonl.idx"));
  // A compressed log of that name removes it.
  CHECK(Run({Bin("weft-logger"), "-q", "--zstd", "-o", "real.jsonl"}, o).code == 0);
  CHECK(!std::filesystem::exists(d.path() + "/.real.jsonl.idx"));
}
