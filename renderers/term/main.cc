// weft-render-term: the event stream (live, or a log replayed) for people.
#include <stdlib.h>
#include <unistd.h>
#include <weft/common/cli.h>
#include <weft/common/util.h>
#include <weft/events/input.h>
#include <weft/events/pump.h>
#include <weft/events/writer.h>

#include "term.h"

namespace {
constexpr const char* kProg = "weft-render-term";
}

int main(int argc, char** argv) {
  weft::InitStreamProcess();
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
  app.add_flag("-v,--verbose", o.verbose, "Show every job and every assertion");
  app.add_option("--color", color, "auto, always or never (NO_COLOR is honoured)")
      ->check(CLI::IsMember({"auto", "always", "never"}))
      ->capture_default_str();
  app.footer("Reads stdin. Exit codes: the summary's (0 pass, 1 fail, 3 "
             "harness failure, 4 no tests, 130 interrupted); 3 when the stream "
             "has no summary; 2 usage or an unknown schema.\n"
             "See docs/weft-render-term.md.");
  if (int rc = weft::ParseArgs(app, argc, argv); rc >= 0) return rc;

  bool tty = isatty(STDOUT_FILENO);
  const char* no_color = getenv("NO_COLOR");
  bool plain = no_color && *no_color;
  o.live = tty && !plain && color != "never";
  o.color = color == "always" || (color == "auto" && tty && !plain);

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
  if (r.TickMs() > 0) {
    h.timeout_ms = [&] {
      int64_t now = weft::events::NowMicros();
      if (next_tick == 0) next_tick = now + r.TickMs() * 1000;
      return next_tick <= now ? 0 : static_cast<int>((next_tick - now) / 1000);
    };
    h.tick = [&] {
      int64_t now = weft::events::NowMicros();
      next_tick = now + r.TickMs() * 1000;
      r.Tick(now);
      flush();
    };
  }
  std::string err;
  auto end = weft::events::ReadInput(
      in, reader, h, [&] { return r.ended() || !r.fatal().empty(); }, &err);
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
