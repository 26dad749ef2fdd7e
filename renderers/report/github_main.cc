// weft-render-github: GitHub Actions annotations.
#include "reports.h"

int main(int argc, char** argv) {
  weft::render::ReportSpec spec{
      "weft-render-github",
      "Reads the event stream (stdin, or a LOG) and writes GitHub Actions "
      "workflow commands: an ::error with file and line for each failing "
      "assertion that says where it is (YAML at: {file, line}, or a native "
      "assert's file and line), an ::error for each failed test otherwise, "
      "and a ::warning for each flaky one.",
      "docs/weft-render-github.md", nullptr,
      [](const weft::render::Model& m, weft::render::ReportOut& out) { out.Append(weft::render::GithubReport(m)); }};
  return weft::render::ReportMain(argc, argv, spec);
}
