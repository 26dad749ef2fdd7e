// weft-render-junit: JUnit XML for CI systems.
#include <CLI/CLI.hpp>

#include "reports.h"

int main(int argc, char** argv) {
  bool per_job = false;
  weft::render::ReportSpec spec{
      "weft-render-junit",
      "Reads the event stream (stdin, or a LOG) and writes JUnit XML as "
      "GitHub, GitLab and Jenkins read it: a testsuite per test file with a "
      "testcase per assertion (or, with --per-job, a testcase per test file), "
      "failures with their diagnostics, output, times, skips, and earlier "
      "failed attempts as flakyFailure / rerunFailure.",
      "docs/weft-render-junit.md",
      [&](CLI::App& app) {
        app.add_flag("--per-job", per_job,
                     "One testsuite per run with a testcase per test file");
      },
      [&](const weft::render::Model& m, weft::render::ReportOut& out) { weft::render::JunitReport(m, !per_job, out); },
      true, true};
  return weft::render::ReportMain(argc, argv, spec);
}
