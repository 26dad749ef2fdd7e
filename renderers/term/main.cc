// weft-render-term: the event stream (live, or a log replayed) for people.
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>
#include <weft/common/cli.h>
#include <weft/common/util.h>
#include <weft/events/input.h>
#include <weft/events/pump.h>
#include <weft/events/writer.h>

#include "term.h"

namespace {
constexpr const char* kProg = "weft-render-term";

// The terminal's keys: /dev/tty without line editing or echo (Ctrl-C and
// Ctrl-Z still signal), put back as it was however we leave.
int g_tty = -1;
struct termios g_saved;
volatile sig_atomic_t g_continued = 0;

void RestoreTty() {
  if (g_tty >= 0) tcsetattr(g_tty, TCSANOW, &g_saved);
}

void RawTty() {
  struct termios raw = g_saved;
  raw.c_lflag &= ~(ICANON | ECHO);
  raw.c_cc[VMIN] = 1;
  raw.c_cc[VTIME] = 0;
  tcsetattr(g_tty, TCSANOW, &raw);
}

void OnSuspend(int) {
  // Ctrl-Z: the shell gets its terminal back as it was; stopped for real
  // with SIGSTOP (the default action of SIGTSTP is ours no more).
  int e = errno;
  RestoreTty();
  raise(SIGSTOP);
  errno = e;
}

void OnContinue(int) { g_continued = 1; }

// Keys are read when we are a terminal's foreground: a job in the
// background must not take the terminal's input (nor be stopped for it).
bool OpenKeys() {
  int fd = open("/dev/tty", O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return false;
  if (tcgetpgrp(fd) != getpgrp() || tcgetattr(fd, &g_saved) != 0) {
    close(fd);
    return false;
  }
  g_tty = fd;
  atexit(RestoreTty);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = OnSuspend;
  sigaction(SIGTSTP, &sa, nullptr);
  sa.sa_handler = OnContinue;
  sigaction(SIGCONT, &sa, nullptr);
  // Read from the background after all (a shell's bg): EIO, not a stop.
  signal(SIGTTIN, SIG_IGN);
  signal(SIGTTOU, SIG_IGN);
  RawTty();
  return true;
}

int Columns() {
  struct winsize ws;
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 0;
}

// The control channel to the runner (--control): opened when first
// needed, never blocking (a FIFO nobody reads fails at once).
class Control {
 public:
  explicit Control(std::string path) : path_(std::move(path)) {}
  bool Send(std::string_view line, std::string* err) {
    if (fd_ < 0) {
      fd_ = weft::InheritedFd(path_);
      if (fd_ < 0) fd_ = open(path_.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
      if (fd_ < 0) {
        *err = fmt::format("cannot open the control channel {}: {}", path_,
                           errno == ENXIO ? "no runner reads it" : strerror(errno));
        return false;
      }
    }
    if (!weft::events::WriteAll(fd_, line)) {
      *err = fmt::format("cannot write to the control channel {}: {}", path_,
                         errno == EPIPE ? "the runner is gone" : strerror(errno));
      return false;
    }
    return true;
  }

 private:
  std::string path_;
  int fd_ = -1;
};
}  // namespace

int main(int argc, char** argv) {
  weft::InitStreamProcess();
  weft::WidenStreamPipes();
  weft::term::Options o;
  std::string color = "auto";
  CLI::App app{
      "Shows a weft event stream (from weft-logger, weft-overlord, or a log "
      "file) for people: on a terminal a status line redrawn in place, each "
      "failure as it happens, and a final summary. Exits with the run's code.",
      kProg};
  weft::events::InputOptions in;
  app.add_option("log", in.path,
                 "A log file (.jsonl or .jsonl.zst) to read instead of stdin");
  app.add_flag("-f,--follow", in.follow,
               "Follow the log as it grows (like tail -f) until its run ends");
  bool to_end = false;
  app.add_flag("--follow-to-end", to_end,
               "With --follow: a Ctrl-C does not stop following (the run it "
               "stops ends soon, and its end is shown); weft run uses this");
  app.add_flag("-v,--verbose", o.verbose, "Show every job and every assertion");
  app.add_option("--color", color, "auto, always or never (NO_COLOR is honoured)")
      ->check(CLI::IsMember({"auto", "always", "never"}))
      ->capture_default_str();
  std::string colours;
  app.add_option("--colors", colours,
                 "Colours by role: ROLE=N (0-255) or ROLE=#rrggbb, comma-separated; "
                 "roles pass, fail, active, retry, todo, warn, flaky, timeout");
  std::string control;
  app.add_option("--control", control,
                 "Where q sends the runner a stop line: its --control named "
                 "pipe or /dev/fd/N");
  bool no_keys = false;
  app.add_flag("--no-keys", no_keys,
               "Do not read keys from the terminal (v verbose, f failures, q stop, ? help)");
  app.footer("Reads stdin. Exit codes: the summary's (0 pass, 1 fail, 3 "
             "harness failure, 4 no tests, 130 interrupted); 3 when the stream "
             "has no summary; 2 usage or an unknown schema.\n"
             "See docs/weft-render-term.md.");
  if (int rc = weft::ParseArgs(app, argc, argv); rc >= 0) return rc;
  if (to_end) in.stop_signals = 3;
  if (std::string err; !weft::term::ParseColours(colours, &o.colours, &err)) {
    weft::Error(kProg, "--colors: " + err);
    return weft::kExitUsage;
  }

  bool tty = isatty(STDOUT_FILENO);
  const char* no_color = getenv("NO_COLOR");
  bool plain = no_color && *no_color;
  o.live = tty && !plain && color != "never";
  o.color = color == "always" || (color == "auto" && tty && !plain);
  if (o.live) o.width = Columns();
  o.keys = o.live && !no_keys && OpenKeys();
  o.control = !control.empty();
  {
    // --follow follows a regular file only (on a pipe it changes nothing).
    struct stat st;
    bool is_stdin = in.path.empty() || in.path == "-";
    o.follow = in.follow && (is_stdin ? fstat(STDIN_FILENO, &st) : stat(in.path.c_str(), &st)) == 0 &&
               S_ISREG(st.st_mode);
  }
  Control channel(control);
  bool stop_following = false;

  weft::events::InstallStopCounter();
  weft::term::Renderer r(o);
  weft::events::LineReader reader;
  bool write_failed = false;
  auto flush = [&] {
    std::string out = r.Take();
    if (!write_failed && !out.empty() &&
        !weft::events::WriteAll(STDOUT_FILENO, out))
      write_failed = true;
  };
  int64_t next_tick = 0;
  weft::events::PumpHandlers h;
  h.line = [&](std::string_view line) { r.Line(line); };
  h.batch_end = flush;
  if (o.keys) {
    h.extra_fd = g_tty;
    h.extra = [&] {
      char keys[64];
      ssize_t n = read(g_tty, keys, sizeof keys);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
      if (n <= 0) return false;  // no terminal any more
      for (ssize_t i = 0; i < n; ++i) {
        auto action = r.Key(keys[i], weft::events::NowMicros());
        if (action == weft::term::KeyAction::kStopFollowing) stop_following = true;
        std::string err;
        if (action == weft::term::KeyAction::kStopRun &&
            !channel.Send("{\"type\":\"stop\"}\n", &err)) {
          flush();
          weft::Warning(kProg, err);
        }
      }
      return true;
    };
  }
  if (r.TickMs() > 0) {
    h.timeout_ms = [&] {
      int64_t now = weft::events::NowMicros();
      if (next_tick == 0) next_tick = now + r.TickMs() * 1000;
      return next_tick <= now ? 0 : static_cast<int>((next_tick - now) / 1000);
    };
    h.tick = [&] {
      int64_t now = weft::events::NowMicros();
      r.SetWidth(Columns());
      if (g_continued) {
        // Back in the foreground after a Ctrl-Z: keys again.
        g_continued = 0;
        if (g_tty >= 0) RawTty();
      }
      next_tick = now + r.TickMs() * 1000;
      r.Tick(now);
      flush();
    };
  }
  std::string err;
  auto end = weft::events::ReadInput(
      in, reader, h,
      [&] { return r.ended() || !r.fatal().empty() || stop_following; }, &err);
  RestoreTty();
  if (!r.fatal().empty()) {
    flush();
    weft::Error(kProg, r.fatal());
    return weft::kExitUsage;
  }
  if (end == weft::events::PumpEnd::kReadError && r.decoded() == 0) {
    // Nothing could be read at all: that is the whole story.
    weft::Error(kProg, err);
    return weft::kExitHarness;
  }
  r.Finish();
  flush();
  if (end == weft::events::PumpEnd::kReadError) {
    weft::Error(kProg, err);
    return weft::kExitHarness;
  }
  if (end == weft::events::PumpEnd::kInterrupted) return weft::kExitInterrupted;
  if (write_failed) return weft::kExitHarness;
  return r.exit_code();
}
