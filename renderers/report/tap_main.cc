// weft-render-tap: the run as one TAP 14 stream, each job a subtest.
#include <CLI/CLI.hpp>

#include "reports.h"

int main(int argc, char** argv) {
  int version = 14;
  weft::render::ReportSpec spec{
      "weft-render-tap",
      "Reads the event stream (stdin, or a LOG) and writes it as one TAP 14 "
      "stream: each job a subtest holding its assertions, then a test point "
      "for the job (failed jobs with their reasons as YAML), readable by "
      "prove and TAP::Parser.",
      "docs/weft-render-tap.md",
      [&](CLI::App& app) {
        app.add_option("--tap-version", version,
                       "Write \"TAP version 13\" instead (the same stream): for "
                       "TAP::Parser 3.44 and older, which refuse 14")
            ->check(CLI::IsMember({13, 14}))
            ->capture_default_str();
      },
      [&](const weft::render::Model& m, weft::render::ReportOut& out) { out.Append(weft::render::TapReport(m, version)); },
      false, true};
  return weft::render::ReportMain(argc, argv, spec);
}
