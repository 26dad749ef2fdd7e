// weft-logger: writes the stream, byte for byte, to the run's log file and
// passes it on to stdout.
#include <unistd.h>
#include <weft/common/cli.h>
#include <weft/common/util.h>
#include <weft/events/pump.h>

#include "logger.h"

namespace {
constexpr const char* kProg = "weft-logger";
}

int main(int argc, char** argv) {
  weft::InitStreamProcess();
  weft::WidenStreamPipes();
  weft::logger::Options o;
  bool quiet = false;
  CLI::App app{
      "Writes the event stream on stdin, byte for byte and whole lines only, "
      "to .weft/runs/<run-id>.jsonl (or -o FILE), points .weft/latest at it, "
      "fsyncs at run.end, and copies the stream to stdout.",
      kProg};
  app.add_option("-o,--output", o.output, "Write the log to FILE instead");
  app.add_option("--dir", o.dir, "Directory holding runs/ and latest")
      ->capture_default_str();
  app.add_flag("-q,--quiet", quiet, "Do not copy the stream to stdout");
  app.add_flag("--zstd", o.zstd,
               "Compress the log (.jsonl.zst); what came is in the file within "
               "a second, and weft replay and every renderer read it");
  app.add_option("--fifo", o.fifos,
                 "Also feed the named pipe PATH, only the event types listed "
                 "(PATH[:TYPE,TYPE…]; default: all); a reader that falls 8 MiB "
                 "behind or goes away is dropped with a warning event (repeatable)")
      ->type_name("PATH[:TYPES]")->allow_extra_args(false);
  app.add_option("--fd", o.fds,
                 "The same for an inherited file descriptor N (N[:TYPE,TYPE…]) "
                 "(repeatable)")
      ->type_name("N[:TYPES]")->allow_extra_args(false);
  app.add_flag("--sync", o.sync,
               "fdatasync the log after every batch of lines (default: at run.end)");
  app.footer("Exit codes: 0 the stream was logged, 3 a write failed (disk "
             "full, …) or stdout closed early, 130 interrupted.\n"
             "See docs/weft-logger.md.");
  if (int rc = weft::ParseArgs(app, argc, argv); rc >= 0) return rc;
  o.forward = !quiet;

  weft::events::InstallStopCounter();
  weft::logger::Logger logger(o);
  if (!logger.StartSubscribers()) {
    weft::Error(kProg, logger.error());
    return weft::kExitUsage;
  }
  weft::events::LineReader reader;
  // (With -q nothing goes on: no pass-through.)
  weft::events::PassThrough pass(STDIN_FILENO, o.forward ? STDOUT_FILENO : -1);
  logger.set_pass_through(&pass);
  bool failed = false;
  weft::events::PumpHandlers h;
  h.pass = &pass;
  h.line = [&](std::string_view line) { logger.Line(line, reader.torn()); };
  h.batch_end = [&] {
    if (!failed && !logger.Flush()) {
      failed = true;
      weft::Error(kProg, logger.error());
      // Stop reading: upstream sees the pipe close and stops the run.
      _exit(weft::kExitHarness);
    }
  };
  h.timeout_ms = [&] {
    int a = logger.PendingMs(), b = logger.SubscriberMs();
    return a < 0 ? b : b < 0 ? a : std::min(a, b);
  };
  {
    h.tick = [&] {
      logger.RetrySubscribers();
      if (!failed && !logger.Tick()) {
        failed = true;
        weft::Error(kProg, logger.error());
        _exit(weft::kExitHarness);
      }
    };
  }
  std::string err;
  auto end = weft::events::Pump(STDIN_FILENO, reader, h, &err);
  if (end == weft::events::PumpEnd::kReadError)
    weft::Error(kProg, fmt::format("cannot read stdin: {}", err));
  if (!logger.Finish()) {
    weft::Error(kProg, logger.error());
    return weft::kExitHarness;
  }
  if (end == weft::events::PumpEnd::kInterrupted) return weft::kExitInterrupted;
  if (end != weft::events::PumpEnd::kEof || logger.forward_failed())
    return weft::kExitHarness;
  return 0;
}
