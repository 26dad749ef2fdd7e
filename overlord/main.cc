// weft-overlord: passes the merged stream through and adds run-level truth
// (counts, summary) and the run's exit code.
#include <unistd.h>
#include <weft/common/cli.h>
#include <weft/common/util.h>
#include <weft/events/pump.h>

#include "overlord.h"

namespace {
constexpr const char* kProg = "weft-overlord";
}

int main(int argc, char** argv) {
  weft::InitStreamProcess();
  weft::WidenStreamPipes();
  CLI::App app{
      "Reads the merged event stream of weft-runner on stdin, passes every "
      "line through unchanged, and adds `counts` events (at most ~10/s) and "
      "a final `summary`. Exits with the run's code.",
      kProg};
  bool no_scoreboard = false;
  app.add_flag("--no-scoreboard", no_scoreboard,
               "Keep no live scoreboard in shared memory (/dev/shm/weft-<run-id>, "
               "read by weft status)");
  bool serve = false;
  app.add_flag("--serve", serve,
               "The stream of a persistent runner (weft start): any number of "
               "runs, none included; exit 0 unless this process fails");
  app.footer("Exit codes: 0 all passed, 1 a test failed, 2 unreadable stream "
             "(unknown schema), 3 harness failure (a chain process died, a "
             "write failed), 4 no test ran, 130 interrupted.\n"
             "See docs/weft-overlord.md.");
  if (int rc = weft::ParseArgs(app, argc, argv); rc >= 0) return rc;

  weft::events::InstallStopCounter();
  weft::events::EventWriter out("", -1);
  // Lines passed through unchanged are spliced, not copied.
  weft::events::PassThrough pass(STDIN_FILENO, STDOUT_FILENO);
  out.set_pass_through(&pass);
  weft::overlord::Overlord overlord(&out, !no_scoreboard);
  overlord.set_serve(serve);
  weft::events::LineReader reader;
  bool write_failed = false;
  auto flush = [&] {
    if (write_failed || out.empty()) return out.Clear();
    if (!out.Flush(STDOUT_FILENO)) {
      write_failed = true;
      weft::Error(kProg, fmt::format("cannot write to stdout: {}",
                                     strerror(errno)));
    }
  };
  weft::events::PumpHandlers h;
  h.pass = &pass;
  // Output failed (the logger died: disk full): read no further, so that
  // upstream sees its pipe close and stops the run.
  h.stop = &write_failed;
  h.line = [&](std::string_view line) { overlord.Line(line); };
  h.batch_end = [&] {
    overlord.MaybeCounts(weft::events::NowMicros(), false);
    flush();
  };
  h.timeout_ms = [&] { return overlord.PendingMs(weft::events::NowMicros()); };
  h.tick = [&] {
    overlord.MaybeCounts(weft::events::NowMicros(), false);
    flush();
  };
  std::string err;
  weft::events::PumpEnd end = Pump(STDIN_FILENO, reader, h, &err);
  if (overlord.fatal()) {
    weft::Error(kProg, overlord.fatal_message());
    return weft::kExitUsage;
  }
  if (end == weft::events::PumpEnd::kReadError)
    weft::Error(kProg, fmt::format("cannot read stdin: {}", err));
  overlord.End();
  flush();
  if (end == weft::events::PumpEnd::kInterrupted)
    return weft::kExitInterrupted;
  if (write_failed || end != weft::events::PumpEnd::kEof)
    return weft::kExitHarness;
  return serve ? 0 : overlord.exit_code();
}
