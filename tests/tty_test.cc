// weft test on a terminal (a pseudo-terminal here): the status line, its
// width, and the keys a person presses while a run goes on.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <cctype>
#include <fstream>
#include <string>
#include <vector>

#include "support.h"

using namespace weft::testing;

namespace {

// Text without its colour escapes (ESC [ ... m).
std::string Plain(const std::string& s) {
  std::string plain;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\x1b' && i + 1 < s.size() && s[i + 1] == '[') {
      size_t j = i + 2;
      while (j < s.size() && (isdigit(static_cast<unsigned char>(s[j])) || s[j] == ';')) ++j;
      if (j < s.size() && s[j] == 'm') {
        i = j;
        continue;
      }
    }
    plain += s[i];
  }
  return plain;
}

double Now() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// A program run on its own pseudo-terminal, "cols" columns wide.
class OnTerminal {
 public:
  OnTerminal(const std::vector<std::string>& argv, const std::string& cwd, int cols) {
    struct winsize ws = {};
    ws.ws_row = 24;
    ws.ws_col = static_cast<unsigned short>(cols);
    pid_ = forkpty(&master_, nullptr, nullptr, &ws);
    if (pid_ == 0) {
      if (chdir(cwd.c_str()) != 0) _exit(127);
      unsetenv("NO_COLOR");
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    REQUIRE(pid_ > 0);
    // Our own handle on the terminal, to look at its modes afterwards.
    slave_ = open(ptsname(master_), O_RDWR | O_NOCTTY);
  }
  ~OnTerminal() {
    if (pid_ > 0 && !waited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    close(master_);
    if (slave_ >= 0) close(slave_);
  }

  // Reads until "text" has been shown, colours aside (true), or the time
  // is up.
  bool WaitFor(const std::string& text, double timeout_s = 30) {
    double end = Now() + timeout_s;
    while (Plain(out_).find(text) == std::string::npos) {
      if (Now() > end || !ReadSome(0.1)) return Plain(out_).find(text) != std::string::npos;
    }
    return true;
  }
  void Press(char key) { REQUIRE(write(master_, &key, 1) == 1); }
  // Reads to the end and returns the exit code.
  // (We hold the terminal open ourselves, so its end is the exit of
  // weft, not an EIO.)
  int Wait() {
    double end = Now() + 60;
    int status = 0;
    pid_t done = 0;
    while (done == 0 && Now() < end) {
      ReadSome(0.05);
      done = waitpid(pid_, &status, WNOHANG);
    }
    if (done == 0) waitpid(pid_, &status, 0);  // the test then fails on its output
    while (ReadSome(0.05) && HasInput()) {
    }
    waited_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  const std::string& out() const { return out_; }
  int slave() const { return slave_; }

 private:
  bool HasInput() {
    struct pollfd p = {master_, POLLIN, 0};
    return poll(&p, 1, 0) > 0;
  }
  // false at the end of the output.
  bool ReadSome(double timeout_s) {
    struct pollfd p = {master_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(timeout_s * 1000)) <= 0) return true;
    char buf[4096];
    ssize_t n = read(master_, buf, sizeof buf);
    if (n <= 0) return false;  // EIO: every holder of the terminal is gone
    out_.append(buf, static_cast<size_t>(n));
    return true;
  }
  pid_t pid_ = -1;
  int master_ = -1, slave_ = -1;
  bool waited_ = false;
  std::string out_;
};

// The status lines drawn: each text after "\r ESC[K" that is not ended by
// a newline, without its colour escapes.
std::vector<std::string> StatusLines(const std::string& out) {
  std::vector<std::string> lines;
  const std::string clear = "\r\x1b[K";
  for (size_t at = out.find(clear); at != std::string::npos;) {
    size_t start = at + clear.size();
    size_t next = out.find(clear, start);
    std::string piece = out.substr(start, next == std::string::npos ? std::string::npos
                                                                    : next - start);
    if (!piece.empty() && piece[0] == '[' && piece.find('\n') == std::string::npos)
      lines.push_back(Plain(piece));
    at = next;
  }
  return lines;
}

}  // namespace

TEST_CASE("on a terminal: ? lists the keys, f the failures so far, v turns verbose on, q stops the run in band") {
  TempDir d;
  d.HelperTest("t/a-bad", "plan 1 notok broken");
  d.HelperTest("t/b-hang", "plan 1 pidfile " + d.path() + "/pid hang");
  OnTerminal t({Bin("weft"), "test", "-j2", "--kill-grace=1", "t"}, d.path(), 100);
  REQUIRE(t.WaitFor("FAIL t/a-bad"));
  REQUIRE(t.WaitFor("t/b-hang "));  // running, on the status line
  pid_t test_pid = -1;
  REQUIRE(WaitFor(30, [&] {
    std::ifstream in(d.path() + "/pid");
    return static_cast<bool>(in >> test_pid);
  }));
  // The keys are read without Enter and not echoed.
  t.Press('?');
  CHECK(t.WaitFor("Keys: v verbose on/off, f failures so far, q stop the run (twice: "
                  "kill its tests), ? these keys.\r\n"));
  t.Press('f');
  CHECK(t.WaitFor("Failures so far (1):\r\n"));
  CHECK(t.WaitFor("  t/a-bad  1 of 1 assertion failed (#1)\r\n"));
  t.Press('v');
  CHECK(t.WaitFor("Verbose: every job, assertion and line of output from now on"));
  t.Press('q');
  CHECK(t.WaitFor("Stopping the run (q): no more tests start; running ones get SIGTERM."));
  int code = t.Wait();
  CHECK(code == 130);
  std::string out = Normalize(t.out());
  CHECK(out.find("FAIL\x1b[0m t/b-hang (<t>)\r\n  interrupted\r\n  killed by SIGTERM\r\n") !=
        std::string::npos);
  CHECK(out.find("Result: \x1b[38;5;220mINTERRUPTED") != std::string::npos);
  // With -v on, the job that passed... none did; the stop is the run's own.
  CHECK(!Alive(test_pid));
  // The status line showed the running job, its clock and the keys.
  bool hinted = false;
  for (const auto& s : StatusLines(t.out()))
    hinted = hinted || (s.find("t/b-hang ") != std::string::npos &&
                        s.find("(keys: v f q ?)") != std::string::npos);
  CHECK(hinted);
  // The keys were not echoed, and the terminal is as it was: line editing
  // and echo back on.
  CHECK(t.out().find("?f") == std::string::npos);
  struct termios tio;
  REQUIRE(tcgetattr(t.slave(), &tio) == 0);
  CHECK((tio.c_lflag & ICANON) != 0);
  CHECK((tio.c_lflag & ECHO) != 0);
}

TEST_CASE("on a terminal: v turns verbose off again; q is a control line on --control, not a signal") {
  // The renderer alone, following a log that has not ended, its control
  // channel a named pipe that this test reads: what q sends is all there is.
  TempDir d;
  d.Write("t/a.sh", "echo 1..1; echo 'not ok 1 - broken'\n");
  d.Write("t/b.sh", "echo 1..1; echo ok 1\n");
  RunOptions o;
  o.cwd = d.path();
  REQUIRE(Run({Bin("weft"), "test", "-j1", "--order=name", "--log=run.jsonl"}, o).code == 1);
  std::string whole = d.Read("run.jsonl");
  size_t end = whole.find("{\"type\":\"run.end\"");
  REQUIRE(end != std::string::npos);
  d.Write("growing.jsonl", whole.substr(0, end));
  REQUIRE(Run({"/usr/bin/mkfifo", d.path() + "/ctl"}).code == 0);
  Child reader({"/bin/sh", "-c", "exec cat ctl > ctl.out"}, o);
  OnTerminal t({Bin("weft-render-term"), "--control", "ctl", "--follow", "growing.jsonl"},
               d.path(), 100);
  REQUIRE(t.WaitFor("FAIL t/a.sh"));
  t.Press('v');
  CHECK(t.WaitFor("Verbose: every job, assertion and line of output from now on"));
  t.Press('v');
  CHECK(t.WaitFor("Verbose off: failures only (v again for more).\r\n"));
  t.Press('q');
  CHECK(t.WaitFor("Stopping the run (q): no more tests start; running ones get SIGTERM."));
  t.Press('q');
  CHECK(t.WaitFor("Killing the running tests (q again)."));
  // The run ends (as the runner would end it): the renderer with it.
  d.Append("growing.jsonl", whole.substr(end));
  CHECK(t.Wait() == 1);
  reader.Wait();
  CHECK(d.Read("ctl.out") == "{\"type\":\"stop\"}\n{\"type\":\"stop\"}\n");
}

TEST_CASE("on a narrow terminal the status line never wraps: running jobs that do not fit are counted") {
  TempDir d;
  d.HelperTest("t/a-first-long-named-test", "plan 1 pidfile " + d.path() + "/a hang");
  d.HelperTest("t/b-second-long-named-test", "plan 1 pidfile " + d.path() + "/b hang");
  OnTerminal t({Bin("weft"), "test", "-j2", "--kill-grace=1", "t"}, d.path(), 44);
  REQUIRE(WaitFor(30, [&] {
    return access((d.path() + "/a").c_str(), F_OK) == 0 &&
           access((d.path() + "/b").c_str(), F_OK) == 0;
  }));
  REQUIRE(t.WaitFor("|A:2|"));
  REQUIRE(t.WaitFor("  +2"));  // neither name fits beside the counts
  t.Press('q');
  CHECK(t.Wait() == 130);
  auto lines = StatusLines(t.out());
  REQUIRE(!lines.empty());
  for (const auto& s : lines) {
    INFO(s);
    CHECK(s.size() <= 43);  // the last column stays empty
  }
}

TEST_CASE("weft.toml's [render.colors] paint the terminal view; TIMEOUT is its own colour") {
  TempDir d;
  d.Write("weft.toml",
          "[render.colors]\nfail = \"#ff0000\"\ntimeout = 93\npass = 40\n");
  d.HelperTest("t/a-bad", "plan 1 notok broken");
  d.HelperTest("t/b-hang", "plan 1 hang");
  OnTerminal t({Bin("weft"), "test", "-j2", "--timeout=0.3", "--kill-grace=0.3", "t"},
               d.path(), 120);
  CHECK(t.Wait() == 1);
  std::string out = Normalize(t.out());
  CHECK(out.find("\x1b[38;2;255;0;0mFAIL\x1b[0m t/a-bad (<t>)") != std::string::npos);
  CHECK(out.find("\x1b[38;5;93mTIMEOUT\x1b[0m t/b-hang (<t>)\r\n  timed out after <t>") !=
        std::string::npos);
  CHECK(out.find("[\x1b[38;5;40mP:0") != std::string::npos);
  CHECK(out.find("2 failed (1 timed out)") != std::string::npos);
}
