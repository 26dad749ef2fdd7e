// The main of every report renderer (see reports.h).
#include <fcntl.h>
#include <unistd.h>
#include <weft/common/cli.h>
#include <weft/common/util.h>
#include <weft/events/input.h>
#include <weft/events/writer.h>

#include "reports.h"

namespace weft::render {

int ReportMain(int argc, char** argv, const ReportSpec& spec) {
  InitStreamProcess();
  WidenStreamPipes();
  CLI::App app{spec.description, spec.name};
  events::InputOptions in;
  std::string output;
  app.add_option("log", in.path,
                 "A log file (.jsonl) to read instead of stdin (- is stdin)");
  app.add_flag("-f,--follow", in.follow,
               "Follow the log as it grows (like tail -f) until its run ends");
  app.add_option("-o,--output", output,
                 "Write the report to FILE (default: stdout); written whole, "
                 "replacing FILE only once the report is complete");
  if (spec.options) spec.options(app);
  app.footer(fmt::format("Exit codes: 0 the report was written (whatever the "
                         "tests' verdicts), 2 usage error or an unknown schema, "
                         "3 the input could not be read or the report not "
                         "written.\nSee {}.",
                         spec.page));
  if (int rc = ParseArgs(app, argc, argv); rc >= 0) return rc;

  events::InstallStopCounter();
  Model model(spec.passing_output, spec.passing_asserts);
  events::LineReader reader;
  events::PumpHandlers h;
  h.line = [&](std::string_view line) { model.Line(line); };
  std::string err;
  auto end = events::ReadInput(
      in, reader, h, [&] { return model.ended() || !model.fatal().empty(); }, &err);
  if (!model.fatal().empty()) {
    Error(spec.name, model.fatal());
    return kExitUsage;
  }
  if (end == events::PumpEnd::kReadError) {
    Error(spec.name, err);
    return kExitHarness;
  }
  int code = end == events::PumpEnd::kInterrupted ? kExitInterrupted : kExitPass;
  // Written as it is made; to FILE through a temporary file beside it,
  // renamed over FILE once the report is whole.
  AtomicFile file;
  if (!output.empty() && !file.Open(output)) {
    Error(spec.name, fmt::format("cannot write {}: {}", output, strerror(errno)));
    return kExitHarness;
  }
  ReportOut out(output.empty() ? STDOUT_FILENO : file.fd());
  spec.write(model, out);
  if (!out.Flush()) {
    Error(spec.name, output.empty()
                         ? fmt::format("cannot write the report: {}", strerror(out.error()))
                         : fmt::format("cannot write {}: {}", output, strerror(out.error())));
    return kExitHarness;
  }
  if (!output.empty() && !file.Commit()) {
    Error(spec.name, fmt::format("cannot write {}: {}", output, strerror(errno)));
    return kExitHarness;
  }
  // The report is out: end here, without freeing the model job by job
  // (a 10,000-job run's model takes longer to free than its JSON report
  // takes to write, and whoever reads the report waits for our exit).
  _exit(code);
}

}  // namespace weft::render
