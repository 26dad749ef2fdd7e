// Each executable on its own: options, errors, exit codes, and the
// behaviours a person composing the chain by hand relies on.
#include <doctest/doctest.h>
#include <signal.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <string>

#include "support.h"

using namespace weft::testing;

namespace {
std::string fmt_reason(pid_t pid) {
  return "\"reasons\":[\"left 1 process running: " + std::to_string(pid) + " (";
}

const char* kTools[] = {"weft", "weft-runner", "weft-auditor", "weft-overlord",
                        "weft-logger", "weft-render-term"};

std::string Hello(const char* schema = "1.0") {
  return std::string(R"({"type":"hello","run":"r1","seq":0,"ts":1,"schema":")") +
         schema + "\"}\n";
}
}  // namespace

TEST_CASE("every executable has --help and --version, exit 0") {
  for (const char* tool : kTools) {
    CAPTURE(tool);
    Result help = Run({Bin(tool), "--help"});
    CHECK(help.code == 0);
    CHECK(help.out.find("--help") != std::string::npos);
    CHECK(help.err == "");
    Result version = Run({Bin(tool), "--version"});
    CHECK(version.code == 0);
    CHECK(version.out == std::string(tool) + " 0.1.0\n");
  }
}

TEST_CASE("an unknown option is a usage error: exit 2 and a one-line hint") {
  for (const char* tool : kTools) {
    CAPTURE(tool);
    Result r = Run({Bin(tool), "--no-such-option"});
    CHECK(r.code == 2);
    CHECK(r.err.rfind(std::string(tool) + ": error: ", 0) == 0);
    CHECK(r.err.find("Try '" + std::string(tool) + " --help'") != std::string::npos);
    CHECK(r.out == "");
  }
  Result sub = Run({Bin("weft"), "test", "--no-such-option"});
  CHECK(sub.code == 2);
  CHECK(sub.err.rfind("weft: error: ", 0) == 0);
}

TEST_CASE("weft without a command says what to do") {
  Result r = Run({Bin("weft")});
  CHECK(r.code == 2);
  CHECK(r.err.rfind("weft: error: ", 0) == 0);
}

TEST_CASE("weft-auditor alone runs one test and prints its events") {
  TempDir d;
  Result r = Run({Bin("weft-auditor"), "--run", "R", "--job", "7", "--name", "mine",
                  "--", Helper(), "plan", "1", "ok", "fine"});
  CHECK(r.code == 0);
  auto lines = Lines(r.out);
  REQUIRE(lines.size() == 5);
  CHECK(lines[0].rfind(R"({"type":"hello","run":"R","job":7,"seq":0,)", 0) == 0);
  CHECK(lines[1].rfind(R"({"type":"job.start","run":"R","job":7,"seq":1,)", 0) == 0);
  CHECK(lines[2].find(R"("count":1)") != std::string::npos);
  CHECK(lines[3].find(R"("number":1,"ok":true,"description":"fine")") != std::string::npos);
  CHECK(lines[4].find(R"("name":"mine","verdict":"pass","reasons":[])") != std::string::npos);
}

TEST_CASE("weft-auditor: a command that cannot start is a failed job, exit 1") {
  Result r = Run({Bin("weft-auditor"), "--", "/nonexistent/test"});
  CHECK(r.code == 1);
  CHECK(r.out.find(R"("verdict":"fail","reasons":["cannot start /nonexistent/test: no such file or directory"])") !=
        std::string::npos);
  Result none = Run({Bin("weft-auditor")});
  CHECK(none.code == 2);
  CHECK(none.err.rfind("weft-auditor: error: no test command given", 0) == 0);
}

TEST_CASE("weft-auditor keeps a last line without newline and a long line whole") {
  Result r = Run({Bin("weft-auditor"), "--", Helper(), "plan", "1", "ok", "a",
                  "longline", "3000000", "raw", "tail-without-newline"});
  CHECK(r.code == 0);
  CHECK(r.out.find(std::string(R"("stream":"stdout","text":")") + std::string(3000000, 'x') + "\"}") !=
        std::string::npos);
  CHECK(r.out.find(R"("stream":"stdout","text":"tail-without-newline"})") != std::string::npos);
}

TEST_CASE("weft-auditor fails a test that leaves processes running, names them, and kills them") {
  for (const char* how : {"fork-leak", "setsid-leak"}) {
    CAPTURE(how);
    Result r = Run({Bin("weft-auditor"), "--", Helper(), "plan", "1", "ok", "a", how});
    CHECK(r.code == 1);
    // The helper says which pid it leaked; it must be named, and gone.
    auto at = r.out.find("leaked pid ");
    REQUIRE(at != std::string::npos);
    pid_t pid = std::stoi(r.out.substr(at + 11));
    CHECK(r.out.find(fmt_reason(pid)) != std::string::npos);
    CHECK(r.out.find("\"leaked\":true,\"leaks\":[{\"pid\":" + std::to_string(pid) +
                     ",\"cmd\":\"" + Helper()) != std::string::npos);
    CHECK(WaitFor(5, [&] { return !Alive(pid); }));
  }
  // --leaks=warn: reported and killed, but the job passes.
  Result w = Run({Bin("weft-auditor"), "--leaks=warn", "--", Helper(), "plan", "1", "ok",
                  "a", "fork-leak"});
  CHECK(w.code == 0);
  CHECK(w.out.find(R"("verdict":"pass")") != std::string::npos);
  CHECK(w.out.find(R"("leaked":true)") != std::string::npos);
}

TEST_CASE("each test gets its own TMPDIR: removed after a pass, kept and named after a failure") {
  TempDir d;
  d.Write("pass.sh", "echo 1..1; echo ok 1; echo \"$TMPDIR\" >&2; touch \"$TMPDIR/x\"\n");
  d.Write("fail.sh", "echo 1..1; echo not ok 1; echo \"$TMPDIR\" >&2; touch \"$TMPDIR/x\"\n");
  auto dir_of = [](const std::string& out) {
    auto at = out.find(R"("stream":"stderr","text":")");
    REQUIRE(at != std::string::npos);
    at += 26;
    return out.substr(at, out.find('"', at) - at);
  };
  Result pass = Run({Bin("weft-auditor"), "--", "sh", d.path() + "/pass.sh"});
  CHECK(pass.code == 0);
  std::string pass_dir = dir_of(pass.out);
  CHECK(pass_dir.find("/weft-") != std::string::npos);
  CHECK(access(pass_dir.c_str(), F_OK) != 0);
  Result fail = Run({Bin("weft-auditor"), "--", "sh", d.path() + "/fail.sh"});
  CHECK(fail.code == 1);
  std::string fail_dir = dir_of(fail.out);
  CHECK(access((fail_dir + "/x").c_str(), F_OK) == 0);
  CHECK(fail.out.find("\"tmpdir\":\"" + fail_dir + "\"") != std::string::npos);
  std::filesystem::remove_all(fail_dir);
  Result keep = Run({Bin("weft-auditor"), "--keep", "--", "sh", d.path() + "/pass.sh"});
  std::string keep_dir = dir_of(keep.out);
  CHECK(access((keep_dir + "/x").c_str(), F_OK) == 0);
  std::filesystem::remove_all(keep_dir);
}

TEST_CASE("the test's environment names the job, the attempt and the event fd") {
  TempDir d;
  d.Write("env.sh", "echo 1..1; echo ok 1; env | grep -E '^(WEFT_|HARNESS_ACTIVE|TAP_VERSION)' | sort >&2\n");
  Result r = Run({Bin("weft-auditor"), "--run", "R1", "--job", "4", "--attempt", "2", "--",
                  "sh", d.path() + "/env.sh"});
  CHECK(r.code == 0);
  for (const char* kv : {"HARNESS_ACTIVE=1", "WEFT_ATTEMPT=2", "WEFT_EVENT_FD=3",
                         "WEFT_JOB_ID=4", "WEFT_RUN_ID=R1", "WEFT_VERSION=0.1.0",
                         "TAP_VERSION=14"})
    CHECK(r.out.find(std::string(R"("stream":"stderr","text":")") + kv + "\"") !=
          std::string::npos);
}

TEST_CASE("weft-auditor stops a test that ignores SIGTERM with SIGKILL after the grace") {
  Result r = Run({Bin("weft-auditor"), "--timeout", "0.3", "--kill-grace", "0.3", "--",
                  Helper(), "plan", "1", "ignore-term", "hang"});
  CHECK(r.code == 1);
  CHECK(r.out.find(R"("reasons":["timed out after 0.3s","killed by SIGKILL","no plan")") ==
        std::string::npos);  // a plan was printed
  CHECK(r.out.find(R"("reasons":["timed out after 0.3s","killed by SIGKILL","planned 1 but ran 0"])") !=
        std::string::npos);
}

TEST_CASE("weft-auditor keeps everything a flooding test prints") {
  Result r = Run({Bin("weft-auditor"), "--", Helper(), "plan", "1", "flood", "200000",
                  "ok", "after"});
  CHECK(r.code == 0);
  size_t comments = 0;
  for (size_t at = r.out.find("\"type\":\"comment\""); at != std::string::npos;
       at = r.out.find("\"type\":\"comment\"", at + 1))
    ++comments;
  CHECK(comments == 200000);
  CHECK(r.out.find(R"("text":"flood line 199999")") != std::string::npos);
}

TEST_CASE("weft-auditor: a test that closes stdout is still followed to its end") {
  Result r = Run({Bin("weft-auditor"), "--", Helper(), "plan", "1", "ok", "a",
                  "close-stdout", "stderr", "still here", "exit", "0"});
  CHECK(r.code == 0);
  CHECK(r.out.find(R"("stream":"stderr","text":"still here")") != std::string::npos);
}

TEST_CASE("weft-runner without the fork server gives the same verdicts") {
  TempDir d;
  d.HelperTest("t/a", "plan 1 ok one");
  d.HelperTest("t/b", "plan 1 notok one");
  RunOptions o;
  o.cwd = d.path();
  for (bool server : {true, false}) {
    CAPTURE(server);
    std::vector<std::string> argv = {Bin("weft-runner"), "-j2", "t"};
    if (!server) argv.insert(argv.begin() + 1, "--no-fork-server");
    Result runner = Run(argv, o);
    CHECK(runner.code == 0);
    o.input = runner.out;
    Result overlord = Run({Bin("weft-overlord")}, o);
    CHECK(overlord.code == 1);
    CHECK(overlord.out.find(R"("verdict":"fail","exit":1,"jobs":{"planned":2,"passed":1,"failed":1,)") !=
          std::string::npos);
    o.input.clear();
  }
}

TEST_CASE("weft-overlord refuses a stream of another major schema version") {
  RunOptions o;
  o.input = Hello("2.0");
  Result r = Run({Bin("weft-overlord")}, o);
  CHECK(r.code == 2);
  CHECK(r.err == "weft-overlord: error: stream uses event schema 2.0 but this weft "
                 "reads schema 1.0 (major versions must match)\n");
  Result t = Run({Bin("weft-render-term")}, o);
  CHECK(t.code == 2);
  CHECK(t.err.rfind("weft-render-term: error: stream uses event schema 2.0", 0) == 0);
}

TEST_CASE("weft-overlord: a stream cut before run.end is a harness failure") {
  RunOptions o;
  o.input = Hello() + R"({"type":"run.start","run":"r1","seq":1,"ts":2,"jobs":3})" "\n";
  Result r = Run({Bin("weft-overlord")}, o);
  CHECK(r.code == 3);
  CHECK(r.out.find(R"("message":"the stream ended before run.end: a process upstream (weft-runner?) died")") !=
        std::string::npos);
  CHECK(r.out.find(R"("verdict":"harness error","exit":3)") != std::string::npos);
  CHECK(Lines(r.out).back().find(R"({"type":"run.end","run":"r1")") == 0);
}

TEST_CASE("weft-overlord drops a line that is not an event, with an error event") {
  RunOptions o;
  o.input = Hello() + "not json at all\n";
  Result r = Run({Bin("weft-overlord")}, o);
  CHECK(r.code == 3);
  CHECK(r.out.find("not json at all\n") == std::string::npos);
  CHECK(r.out.find(R"("message":"input line 2 is not a weft event (15 bytes dropped): not json at all")") !=
        std::string::npos);
}

TEST_CASE("weft-logger: a full disk is a clear error and exit 3") {
  RunOptions o;
  o.input = Hello();
  Result r = Run({Bin("weft-logger"), "-o", "/dev/full"}, o);
  CHECK(r.code == 3);
  CHECK(r.err == "weft-logger: error: cannot write log /dev/full: No space left on device\n");
}

TEST_CASE("a chain built by hand stops its run when the logger's disk is full") {
  // Twenty tests, one at a time, each noting that it ran: a run that went
  // on with nothing logged would run them all.
  TempDir d;
  for (int i = 0; i < 20; ++i)
    d.Write("t/" + std::to_string(100 + i) + ".t",
            "#!/bin/sh\necho ran >> ran; echo 1..1; sleep 0.3; echo ok 1\n", true);
  RunOptions o;
  o.cwd = d.path();
  Result r = Run({"/bin/sh", "-c",
                  "\"$0\" -j1 t 2>runner.err | \"$1\" 2>overlord.err | \"$2\" -o /dev/full | cat",
                  Bin("weft-runner"), Bin("weft-overlord"), Bin("weft-logger")},
                 o);
  CHECK(r.out == "");
  CHECK(r.err == "weft-logger: error: cannot write log /dev/full: No space left on device\n");
  CHECK(d.Read("overlord.err") == "weft-overlord: error: cannot write to stdout: Broken pipe\n");
  CHECK(d.Read("runner.err").find("weft-runner: error: cannot write events to stdout: Broken pipe; "
                                  "stopping the run") != std::string::npos);
  // The logger fails at the run's first lines: a test or so ran, not all.
  CHECK(Lines(d.Read("ran")).size() < 10);
}

TEST_CASE("weft-logger syncs the log at run.end, and after every batch with --sync") {
  // Three batches a moment apart, the last one the run's end; then the
  // input stays open a while before it ends. What the logger does, in
  // order: reads of lines, writes of the log, syncs, the read of the end.
  TempDir d;
  d.Write("in.sh",
          "printf '%s\\n' '{\"type\":\"hello\",\"run\":\"r1\",\"seq\":0,\"ts\":1,\"schema\":\"1.0\"}'"
          " '{\"type\":\"run.start\",\"run\":\"r1\",\"seq\":1,\"ts\":2,\"jobs\":1}'; sleep 0.2\n"
          "printf '%s\\n' '{\"type\":\"job.start\",\"run\":\"r1\",\"job\":1,\"seq\":1,\"ts\":3,\"name\":\"t\"}'; sleep 0.2\n"
          "printf '%s\\n' '{\"type\":\"run.end\",\"run\":\"r1\",\"seq\":2,\"ts\":4}'; sleep 0.5\n");
  RunOptions o;
  o.cwd = d.path();
  for (bool zstd : {false, true}) {
    for (bool sync : {false, true}) {
      CAPTURE(zstd);
      CAPTURE(sync);
      Result r = Run({"/bin/sh", "-c",
                      // (LeakSanitizer refuses to run under ptrace: the
                      // sanitizer build's logger would fail at its exit.)
                      std::string("sh in.sh | ASAN_OPTIONS=\"${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0\""
                                  " strace -qq -y -e trace=read,write,fdatasync -o trace \"$0\" -q") +
                          (sync ? " --sync" : "") + (zstd ? " --zstd" : ""),
                      Bin("weft-logger")},
                     o);
      REQUIRE(r.code == 0);
      std::string calls;
      // (-y names each descriptor's file: only the log's writes count.)
      for (const auto& line : Lines(d.Read("trace"))) {
        bool log = Has(line.substr(0, line.find('>')), "/.weft/runs/r1.jsonl");
        if (line.rfind("fdatasync(", 0) == 0 && log) calls += 's';
        if (line.rfind("write(", 0) == 0 && log) calls += 'w';
        if (line.rfind("read(0<", 0) == 0 && Has(line, ">, \"{")) calls += 'l';
        if (line.rfind("read(0<", 0) == 0 && Has(line, ">, \"\", ")) calls += 'e';
      }
      CAPTURE(calls);
      REQUIRE(!calls.empty());
      CHECK(calls.back() == 'e');  // nothing written or synced after the end
      if (sync) {
        // Each batch read is written and synced before the next read.
        size_t batches = 0;
        for (size_t at = calls.find('l'); at != std::string::npos; at = calls.find('l', at + 1)) {
          ++batches;
          size_t next = calls.find_first_of("le", at + 1);
          std::string after = calls.substr(at + 1, next - at - 1);
          CHECK(after.find('w') != std::string::npos);
          CHECK(after.find('s') != std::string::npos);
          CHECK(after.find('s') > after.find('w'));
        }
        CHECK(batches >= 1);
      } else {
        // One sync: once run.end is written, before the input ends.
        CHECK(std::count(calls.begin(), calls.end(), 's') == 1);
        size_t last_read = calls.rfind('l');
        CHECK(calls.substr(last_read) .find("ws") != std::string::npos);
        CHECK(calls.substr(calls.size() - 2) == "se");
      }
    }
  }
}

TEST_CASE("weft-logger: an index it cannot write is given up with a warning; the log is whole") {
  TempDir d;
  // Something else where the index would go.
  REQUIRE(Run({"/bin/mkdir", "-p", d.path() + "/.weft/runs/.r1.jsonl.idx"}).code == 0);
  RunOptions o;
  o.cwd = d.path();
  o.input = Hello() + R"({"type":"run.start","run":"r1","seq":1,"ts":2,"jobs":1})" "\n" +
            R"({"type":"job.start","run":"r1","job":1,"seq":1,"ts":3,"name":"t/a.t"})" "\n";
  // Some 6 MiB: past where the logger starts an index.
  for (int i = 1; i <= 40000; ++i)
    o.input += R"({"type":"assert","run":"r1","job":1,"seq":)" + std::to_string(i + 1) +
               R"(,"ts":4,"ok":true,"number":)" + std::to_string(i) +
               R"(,"description":"an assertion among very many, to make the log long"})" "\n";
  o.input += R"({"type":"job.end","run":"r1","job":1,"seq":40002,"ts":5,"name":"t/a.t","verdict":"pass"})" "\n"
             R"({"type":"run.end","run":"r1","seq":2,"ts":6})" "\n";
  Result r = Run({Bin("weft-logger"), "-q"}, o);
  CHECK(r.code == 0);
  CHECK(r.err == "weft-logger: warning: cannot write .weft/runs/.r1.jsonl.idx: Is a directory; "
                 "replays will read the whole log\n");
  CHECK(d.Read(".weft/runs/r1.jsonl") == o.input);
  // Its readers read the log instead.
  Result json = Run({Bin("weft"), "replay", "--renderer=json", "--types=job.end",
                     d.path() + "/.weft/runs/r1.jsonl"});
  CHECK(json.code == 0);
  CHECK(Has(json.out, R"("name":"t/a.t","verdict":"pass")"));
}

TEST_CASE("weft-logger writes whole lines only and forwards the same bytes") {
  TempDir d;
  RunOptions o;
  o.cwd = d.path();
  o.input = Hello() + R"({"type":"run.start","run":"r1","seq":1,"ts":2,"jobs":0})" "\n" +
            R"({"type":"run.end","run":"r1","seq":2,"ts":3})" "\n" + R"({"type":"torn)";
  Result r = Run({Bin("weft-logger")}, o);
  CHECK(r.code == 0);
  std::string whole = o.input.substr(0, o.input.rfind('\n') + 1);
  CHECK(r.out == whole);
  CHECK(d.Read(".weft/runs/r1.jsonl") == whole);
  CHECK(d.Read(".weft/latest") == whole);
  CHECK(r.err == "weft-logger: warning: dropped a torn last line of 13 bytes (its producer ended mid-line)\n");
}

TEST_CASE("overlord and logger pass lines on through pipes byte for byte (spliced, not copied)") {
  // Between pipes, the lines they pass on unchanged are spliced from
  // their input (a file, or a duplicate of the input pipe); what comes
  // out must be exactly what a write of the same lines gives: here that
  // is weft-overlord writing to a file, where it cannot splice.
  TempDir d;
  std::string in = Hello() + R"({"type":"run.start","run":"r1","seq":1,"ts":2,"jobs":1})" "\n" +
                   R"({"type":"job.start","run":"r1","job":1,"seq":1,"ts":3,"name":"t/a.t"})" "\n";
  int seq = 1;
  auto event = [&](const std::string& rest) {
    in += R"({"type":"output","run":"r1","job":1,"seq":)" + std::to_string(++seq) +
          R"(,"ts":4,"stream":"stdout",)" + rest + "}";
  };
  for (int i = 0; i < 30000; ++i) {
    event(R"("text":"line )" + std::to_string(i) + std::string(i % 200, 'x') + "\"");
    // CRs kept, empty lines and non-events dropped (by the overlord).
    in += i % 997 == 0 ? "\r\n" : i % 1999 == 0 ? "\n\nnot an event\n" : "\n";
    if (i == 15000) {
      event(R"("text":")" + std::string(3 << 20, 'y') + "\"");  // past what a pipe holds
      in += "\n";
    }
  }
  in += R"({"type":"job.end","run":"r1","job":1,"seq":99999,"ts":5,"name":"t/a.t","verdict":"pass"})" "\n"
        R"({"type":"run.end","run":"r1","seq":2,"ts":6})" "\n" R"({"type":"torn)";
  d.Write("in.jsonl", in);
  const std::string overlord = Bin("weft-overlord"), logger = Bin("weft-logger");
  RunOptions o;
  o.cwd = d.path();
  // (The overlord's own events carry the time they were made, and a
  // seq that counts the counts events it made as time allowed: the counts
  // set aside, the seq and ts of its other events too.)
  auto same = [](const std::string& text) {
    std::string out;
    for (std::string line : Lines(text)) {
      if (line.find(R"({"type":"counts")") == 0) continue;
      bool own = line.find(R"("source":"weft-overlord")") != std::string::npos ||
                 line.find(R"({"type":"summary")") == 0 ||
                 line.find(R"("incomplete":true)") != std::string::npos;
      for (std::string key : {R"(,"seq":)", R"(,"ts":)"}) {
        if (!own) break;
        size_t at = line.find(key);
        if (at == std::string::npos) continue;
        size_t end = line.find_first_not_of("0123456789", at + key.size());
        line = line.substr(0, at) + key + "N" + line.substr(end);
      }
      out += line + "\n";
    }
    return out;
  };
  REQUIRE(Run({"/bin/sh", "-c", "'" + overlord + "' < in.jsonl > plain.jsonl"}, o).code == 3);
  std::string want = same(d.Read("plain.jsonl"));
  REQUIRE(Count(want, R"({"type":"output")") == 30001);
  CHECK(Count(d.Read("plain.jsonl"), "is not a weft event") == 16);
  for (const char* from : {"< in.jsonl", "cat in.jsonl |"}) {
    CAPTURE(from);
    std::string chain = std::string(from) + " '" + overlord + "' | '" + logger +
                        "' -o log.jsonl | '" + logger + "' -o log2.jsonl";
    Result r = Run({"/bin/sh", "-c", chain}, o);
    CHECK(r.code == 0);
    CHECK(same(r.out) == want);
    CHECK(d.Read("log.jsonl") == r.out);
    CHECK(d.Read("log2.jsonl") == r.out);
  }
}

TEST_CASE("weft-render-term: a stream without a summary exits 3 and says why") {
  RunOptions o;
  o.input = Hello();
  Result r = Run({Bin("weft-render-term")}, o);
  CHECK(r.code == 3);
  CHECK(r.out == "The stream ended without a summary: a process of the chain failed "
                 "(is weft-overlord in it?).\n");
}

TEST_CASE("weft-render-term says how many lines were not events") {
  RunOptions o;
  o.input = Hello() + "garbage\n{\"not\":\"weft\"}\n";
  Result r = Run({Bin("weft-render-term")}, o);
  CHECK(r.code == 3);
  CHECK(r.out.rfind("2 line(s) of the stream were not weft events and were skipped.\n", 0) == 0);
}

TEST_CASE("weft-render-term --color=always paints, and never writes escapes otherwise") {
  TempDir d;
  d.HelperTest("t/x", "plan 1 notok broken");
  Result run = Run({Bin("weft"), "test", "t"}, RunOptions{d.path()});
  CHECK(run.out.find('\x1b') == std::string::npos);
  RunOptions o;
  o.input = d.Read(".weft/latest");
  Result color = Run({Bin("weft-render-term"), "--color=always"}, o);
  CHECK(color.out.find("\x1b[38;5;196mFAIL\x1b[0m t/x") != std::string::npos);
  o.env = {"NO_COLOR=1"};
  Result plain = Run({Bin("weft-render-term")}, o);
  CHECK(plain.out == run.out);
}

TEST_CASE("the fork server's auditors run job after job, each job its own") {
  // At -j1 one worker of the fork server audits every job in turn: each
  // test sees its own job id, directory and empty TMPDIR, and a failure, a
  // timeout or a leak before it changes nothing for it.
  TempDir d;
  std::string note = d.path() + "/notes";
  std::string record =
      "echo \"$PPID $WEFT_JOB_ID $(pwd) $(ls -A \"$TMPDIR\" | wc -l)\" >> " + note + "\n";
  d.Write("t/a.sh", "#!/bin/sh\n" + record + "touch \"$TMPDIR/left\"\necho 1..1\necho ok 1\n", true);
  d.Write("t/b.sh", "#!/bin/sh\n" + record + "echo 1..1\necho 'not ok 1 - broken'\nexit 1\n", true);
  d.HelperTest("t/c", "plan 1 hang");
  d.Write("t/d.sh", "#!/bin/sh\n" + record + "echo 1..1\necho ok 1\n", true);
  d.HelperTest("t/e", "plan 1 ok one fork-leak");
  d.Write("t/sub/f.sh", "#!/bin/sh\n" + record + "echo 1..1\necho ok 1\n", true);
  RunOptions o;
  o.cwd = d.path();
  Result r = Run({Bin("weft"), "test", "-j1", "--order=name", "--timeout=1", "--kill-grace=0.2",
                  "--no-config", "t"},
                 o);
  CHECK(r.code == 1);
  std::string out = Normalize(r.out);
  CHECK_MESSAGE(out.find("FAIL t/b.sh (<t>)\n") != std::string::npos, out);
  CHECK(out.find("TIMEOUT t/c (<t>)\n") != std::string::npos);
  CHECK(out.find("FAIL t/e (<t>)\n") != std::string::npos);
  CHECK(out.find("Files: 3 passed, 3 failed (1 timed out) (6 in all).") != std::string::npos);
  auto notes = Lines(d.Read("notes"));
  REQUIRE(notes.size() == 4);
  std::set<std::string> auditors, jobs;
  for (const auto& n : notes) {
    std::istringstream in(n);
    std::string ppid, job, cwd, files;
    in >> ppid >> job >> cwd >> files;
    auditors.insert(ppid);
    jobs.insert(job);
    CHECK_MESSAGE(files == "0", n);  // a TMPDIR of its own, empty
    CHECK(cwd == d.path());
  }
  CHECK(auditors.size() == 1);  // one auditor process, reused
  CHECK(jobs.size() == 4);
}

TEST_CASE("the auditor fork server killed mid-run is a harness failure, and no test is left") {
  TempDir d;
  d.HelperTest("t/hang", "plan 1 pidfile " + d.path() + "/pid hang");
  RunOptions o;
  o.cwd = d.path();
  Child weft({Bin("weft"), "test", "--kill-grace=1", "t"}, o);
  pid_t test_pid = -1;
  REQUIRE(WaitFor(30, [&] {
    std::ifstream in(d.path() + "/pid");
    return static_cast<bool>(in >> test_pid);
  }));
  // The server is the runner's child running weft-auditor --serve.
  pid_t server = -1;
  for (pid_t runner : ChildrenOf(weft.pid())) {
    for (pid_t c : ChildrenOf(runner)) {
      std::ifstream cmd("/proc/" + std::to_string(c) + "/cmdline");
      std::string all((std::istreambuf_iterator<char>(cmd)), {});
      if (all.find("--serve") != std::string::npos) server = c;
    }
  }
  REQUIRE(server > 0);
  kill(server, SIGKILL);
  Result r = weft.Wait();
  CHECK(r.code == 3);
  CHECK(r.out.find("HARNESS ERROR weft-runner: the auditor fork server") != std::string::npos);
  CHECK(WaitFor(10, [&] { return !Alive(test_pid); }));
}

TEST_CASE("a fork server worker killed mid-job fails that job as a harness error; the next job runs") {
  TempDir d;
  d.HelperTest("t/a", "plan 1 pidfile " + d.path() + "/pid hang");
  d.Write("t/b.sh", "#!/bin/sh\necho 1..1\necho ok 1\n", true);
  RunOptions o;
  o.cwd = d.path();
  Child weft({Bin("weft"), "test", "-j1", "--order=name", "--no-config", "t"}, o);
  pid_t test_pid = -1;
  REQUIRE(WaitFor(30, [&] {
    std::ifstream in(d.path() + "/pid");
    return static_cast<bool>(in >> test_pid);
  }));
  // The worker auditing the test is its parent.
  std::ifstream stat("/proc/" + std::to_string(test_pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  std::istringstream rest(line.substr(line.rfind(')') + 2));
  std::string state;
  pid_t worker = -1;
  rest >> state >> worker;
  REQUIRE(worker > 1);
  kill(worker, SIGKILL);
  Result r = weft.Wait();
  CHECK(r.code == 3);
  std::string out = Normalize(r.out);
  CHECK_MESSAGE(out.find("weft-auditor for job 1 (t/a) was killed by SIGKILL without "
                         "finishing the job") != std::string::npos,
                out);
  CHECK(out.find("Files: 1 passed, 1 failed (2 in all).") != std::string::npos);
  CHECK(WaitFor(10, [&] { return !Alive(test_pid); }));
}

TEST_CASE("regression: weft-logger with stdout closed writes each line once") {
  TempDir d;
  RunOptions o;
  o.input = Hello() + R"({"type":"run.end","run":"r1","seq":1,"ts":2})" "\n";
  Result r = Run({"/bin/sh", "-c", "exec \"$0\" -o \"$1\" >&-", Bin("weft-logger"),
                  d.path() + "/log.jsonl"},
                 o);
  CHECK(r.code == 0);
  CHECK(d.Read("log.jsonl") == o.input);
}

TEST_CASE("weft-auditor: an exit status above 128 is a status, not a signal") {
  Result r = Run({Bin("weft-auditor"), "--", Helper(), "plan", "1", "ok", "a", "exit", "139"});
  CHECK(r.code == 1);
  CHECK(r.out.find(R"("reasons":["exited with status 139"],"exit":{"code":139,"signal":null})") !=
        std::string::npos);
  Result s = Run({Bin("weft-auditor"), "--", Helper(), "plan", "1", "ok", "a", "segv"});
  CHECK(s.out.find(R"("exit":{"code":null,"signal":"SIGSEGV")") != std::string::npos);
}

TEST_CASE("weft-auditor reports the test's CPU time and peak memory") {
  Result r = Run({Bin("weft-auditor"), "--", Helper(), "plan", "1", "ok", "a"});
  CHECK(r.code == 0);
  auto end = Lines(r.out).back();
  CHECK(end.find(R"("usage":{"user_us":)") != std::string::npos);
  CHECK(end.find(R"(,"sys_us":)") != std::string::npos);
  CHECK(end.find(R"(,"max_rss_kib":)") != std::string::npos);
}

TEST_CASE("a native bail out fails the job, and a second native plan is refused") {
  Result r = Run({Bin("weft-auditor"), "--", Helper(), "event", R"({"type":"plan","count":1})",
                  "event", R"({"type":"plan","count":5})", "event",
                  R"({"type":"assert","ok":true})", "event",
                  R"({"type":"bail","reason":"database gone"})"});
  CHECK(r.code == 1);
  CHECK(r.out.find(R"("message":"a second plan on the event fd","line":2,"source":"fd")") !=
        std::string::npos);
  CHECK(r.out.find(R"("reasons":["bailed out: database gone","1 bad line on the event fd"])") !=
        std::string::npos);
  CHECK(r.out.find(R"("bail_reason":"database gone")") != std::string::npos);
  CHECK(r.out.find(R"("counts":{"planned":1,"run":1,"passed":1,)") != std::string::npos);
}

TEST_CASE("each executable's page in docs/ shows its --help exactly") {
  const char* docs = getenv("WEFT_DOCS");
  REQUIRE(docs != nullptr);
  struct Page {
    std::vector<std::string> argv;
    std::string page;
  };
  std::vector<Page> pages = {
      {{Bin("weft"), "--help"}, "weft.md"},
      {{Bin("weft"), "test", "--help"}, "weft.md"},
      {{Bin("weft"), "replay", "--help"}, "weft.md"},
      {{Bin("weft-runner"), "--help"}, "weft-runner.md"},
      {{Bin("weft-auditor"), "--help"}, "weft-auditor.md"},
      {{Bin("weft-overlord"), "--help"}, "weft-overlord.md"},
      {{Bin("weft-logger"), "--help"}, "weft-logger.md"},
      {{Bin("weft-render-term"), "--help"}, "weft-render-term.md"},
      {{Bin("weft-render-json"), "--help"}, "weft-render-json.md"},
      {{Bin("weft-render-tap"), "--help"}, "weft-render-tap.md"},
      {{Bin("weft-render-junit"), "--help"}, "weft-render-junit.md"},
      {{Bin("weft-render-github"), "--help"}, "weft-render-github.md"},
      {{Bin("weft-render-html"), "--help"}, "weft-render-html.md"},
      {{Bin("weft"), "status", "--help"}, "weft.md"},
      {{Bin("weft"), "merge", "--help"}, "weft.md"},
      {{Bin("weft"), "start", "--help"}, "weft.md"},
      {{Bin("weft"), "run", "--help"}, "weft.md"},
      {{Bin("weft"), "stop", "--help"}, "weft.md"},
      {{Bin("weft"), "watch", "--help"}, "weft.md"},
  };
  for (const auto& p : pages) {
    CAPTURE(p.argv[1]);
    CAPTURE(p.page);
    std::string help = Run(p.argv).out;
    while (!help.empty() && help.back() == '\n') help.pop_back();
    std::ifstream in(std::string(docs) + "/" + p.page);
    std::string page((std::istreambuf_iterator<char>(in)), {});
    CHECK(page.find(help) != std::string::npos);
  }
}

TEST_CASE("a YAML block is decoded into its test point's yaml field; malformed YAML fails the job") {
  TempDir d;
  d.Write("y.tap",
          "TAP version 13\n1..2\nnot ok 1 - x\n  ---\n  got: 1\n  expected: [2, 3]\n"
          "  at: {file: t.t, line: 4}\n  ...\nok 2\n  ---\n  bad: [unclosed\n  ...\n");
  Result r = Run({Bin("weft-auditor"), "--", "/bin/cat", d.path() + "/y.tap"});
  CHECK(r.code == 1);
  CHECK(r.out.find(R"("type":"assert",)") != std::string::npos);
  CHECK(r.out.find(R"("number":1,"ok":false,"description":"x",)") != std::string::npos);
  CHECK(r.out.find(R"(,"source":"tap","yaml":{"got":"1","expected":["2","3"],"at":{"file":"t.t","line":"4"}}})") !=
        std::string::npos);
  CHECK(r.out.find(R"("type":"yaml")") == std::string::npos);
  // The block's lines are kept as output too, byte for byte.
  CHECK(r.out.find(R"("stream":"stdout","text":"  got: 1"})") != std::string::npos);
  CHECK(r.out.find(R"("message":"malformed YAML: end of sequence flow not found")") !=
        std::string::npos);
  CHECK(r.out.find(R"x("reasons":["1 of 2 assertions failed (#1)","1 malformed YAML block"])x") !=
        std::string::npos);
}

TEST_CASE("a YAML block that comes long after its test point is a yaml event of its own") {
  // The test point waits 100 ms for its block, then goes out without it
  // (a test that prints "not ok" and pauses is shown at once).
  TempDir d;
  d.Write("late.sh",
          "echo 1..2; echo 'not ok 1 - slow'; sleep 0.5\n"
          "printf '  ---\\n  a: 1\\n  ...\\n'; echo ok 2\n");
  Result r = Run({Bin("weft-auditor"), "--", "sh", d.path() + "/late.sh"});
  CHECK(r.code == 1);
  CHECK(r.out.find(R"("description":"slow","elapsed_us")") != std::string::npos);
  CHECK(r.out.find(R"("number":1,"yaml":{"a":"1"},"source":"tap"})") != std::string::npos);
  // In stream order: the test point, the block's lines, then its decoding.
  size_t assert_at = r.out.find(R"("description":"slow")");
  size_t yaml_at = r.out.find(R"("type":"yaml")");
  CHECK(assert_at < r.out.find(R"("text":"  a: 1")"));
  CHECK(r.out.find(R"("text":"  a: 1")") < yaml_at);
}

TEST_CASE("a test's stdin is /dev/null unless --stdin names a file") {
  TempDir d;
  d.Write("in.txt", "fed through stdin\n");
  d.Write("read.sh", "echo 1..1; read line || line=EOF; echo \"# got: $line\"; echo ok 1\n");
  Result none = Run({Bin("weft-auditor"), "--", "sh", d.path() + "/read.sh"});
  CHECK(none.out.find(R"("text":"got: EOF")") != std::string::npos);
  Result fed = Run({Bin("weft-auditor"), "--stdin", d.path() + "/in.txt", "--", "sh",
                    d.path() + "/read.sh"});
  CHECK(fed.out.find(R"("text":"got: fed through stdin")") != std::string::npos);
  Result missing = Run({Bin("weft-auditor"), "--stdin", d.path() + "/nope", "--", "sh",
                        d.path() + "/read.sh"});
  CHECK(missing.code == 1);
  CHECK(missing.out.find("cannot open " + d.path() + "/nope for the test's stdin") !=
        std::string::npos);
  // Through the whole chain, the fork server passes it on.
  d.Write("t/read.sh", "echo 1..1; read line; test \"$line\" = 'fed through stdin' && echo ok 1 || echo not ok 1\n");
  RunOptions o;
  o.cwd = d.path();
  Result chain = Run({Bin("weft"), "test", "--stdin", d.path() + "/in.txt", "t"}, o);
  CHECK(chain.code == 0);
}

TEST_CASE("after-exit timeout: output held open by a process outside the test's tree") {
  // A holder the auditor cannot reach (our child, not the test's) takes the
  // test's stdout over a unix socket and keeps it open.
  TempDir d;
  std::string sock = d.path() + "/holder.sock";
  d.Write("holder.py",
          "import socket, sys, time\n"
          "s = socket.socket(socket.AF_UNIX)\n"
          "s.bind(sys.argv[1]); s.listen(1)\n"
          "print('ready', flush=True)\n"
          "c, _ = s.accept()\n"
          "msg, fds, _, _ = socket.recv_fds(c, 10, 4)\n"
          "time.sleep(30)\n");
  d.Write("giver.py",
          "import socket, sys\n"
          "print('1..1'); print('ok 1', flush=True)\n"
          "c = socket.socket(socket.AF_UNIX); c.connect(sys.argv[1])\n"
          "socket.send_fds(c, [b'x'], [1])\n");
  RunOptions o;
  Child holder({"/usr/bin/env", "python3", d.path() + "/holder.py", sock}, o);
  REQUIRE(WaitFor(20, [&] { return std::filesystem::exists(sock); }));
  Result r = Run({Bin("weft-auditor"), "--exit-timeout", "0.5", "--", "python3",
                  d.path() + "/giver.py", sock});
  CHECK(r.code == 1);
  CHECK(r.out.find(R"("kind":"after-exit","after_s":0.5)") != std::string::npos);
  CHECK(r.out.find("its output was still held open 0.5s after it exited (after-exit timeout)") !=
        std::string::npos);
  CHECK(r.out.find(R"("timed_out":true,"timeout":"after-exit")") != std::string::npos);
  kill(holder.pid(), SIGKILL);
}

TEST_CASE("a test point goes out within about 100 ms even when the test then goes quiet") {
  // Each event line is stamped with the moment it came out of the
  // auditor; the test prints "ok 1" and then sleeps for a second.
  TempDir d;
  d.Write("quiet.sh", "echo 1..2; sleep 0.2; echo 'ok 1 - early'; sleep 1; echo 'ok 2 - late'\n");
  Result r = Run({"/bin/sh", "-c",
                  Bin("weft-auditor") + " -- sh " + d.path() +
                      "/quiet.sh | while IFS= read -r l; do echo \"$(date +%s%N) $l\"; done"});
  long long started = 0, early = 0, late = 0;
  for (const auto& line : Lines(r.out)) {
    long long t = std::stoll(line.substr(0, line.find(' ')));
    if (line.find("\"type\":\"job.start\"") != std::string::npos) started = t;
    if (line.find("\"description\":\"early\"") != std::string::npos) early = t;
    if (line.find("\"description\":\"late\"") != std::string::npos) late = t;
  }
  REQUIRE(started > 0);
  REQUIRE(early > 0);
  REQUIRE(late > 0);
  // Out long before the test's next line (a second later), not with it.
  CHECK(late - early > 500 * 1000000LL);
}
