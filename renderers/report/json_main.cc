// weft-render-json: the run as one JSON object, for scripts.
#include "reports.h"

int main(int argc, char** argv) {
  weft::render::ReportSpec spec{
      "weft-render-json",
      "Reads the event stream (stdin, or a LOG) and writes one JSON object "
      "describing its last run: verdict, exit code, counts, and each job with "
      "its verdict, reasons, duration, attempts and failed assertions.",
      "docs/weft-render-json.md", nullptr,
      [](const weft::render::Model& m, weft::render::ReportOut& out) {
        weft::render::JsonReport(m, out);
      }};
  return weft::render::ReportMain(argc, argv, spec);
}
