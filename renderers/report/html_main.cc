// weft-render-html: the run as one self-contained HTML page.
#include "reports.h"

int main(int argc, char** argv) {
  weft::render::ReportSpec spec{
      "weft-render-html",
      "Reads the event stream (stdin, or a LOG) and writes one self-contained "
      "HTML page for its last run (no network, no CDN): the summary, each "
      "failure with its assertions, diagnostics and output, a sortable table "
      "of every job, and a timeline of the jobs across the run's slots.",
      "docs/weft-render-html.md", nullptr,
      [](const weft::render::Model& m, weft::render::ReportOut& out) { out.Append(weft::render::HtmlReport(m)); }};
  return weft::render::ReportMain(argc, argv, spec);
}
