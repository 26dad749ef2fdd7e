// The report renderers: each turns a Model (the runs of a stream) into one
// document, written once the stream has ended.
#pragma once

#include <functional>
#include <string>

#include "model.h"

namespace CLI {
class App;
}

namespace weft::render {

// weft-render-json: one JSON object for the stream's last run.
std::string JsonReport(const Model& m);
// weft-render-tap: the runs as one TAP 14 stream, each job a subtest.
// "version" 13 writes the same stream under "TAP version 13", for
// TAP::Parser 3.44 and older, which refuse 14.
std::string TapReport(const Model& m, int version = 14);
// weft-render-junit: JUnit XML. "per_file": one testsuite per job with a
// testcase per assertion (default); otherwise one testsuite per run with a
// testcase per job.
std::string JunitReport(const Model& m, bool per_assertion);
// weft-render-github: GitHub Actions workflow commands (::error …::).
std::string GithubReport(const Model& m);

// weft-render-html: one self-contained HTML page (no network): summary,
// failures with their output, a sortable table of jobs, a timeline.
std::string HtmlReport(const Model& m);

// Escapes for XML text and attributes (also drops what XML 1.0 cannot
// hold: control characters but tab and newlines).
std::string XmlEscape(std::string_view text);

struct ReportSpec {
  const char* name;         // "weft-render-junit"
  const char* description;  // for --help
  const char* page;         // "docs/weft-render-junit.md"
  // Adds the renderer's own options; may be empty.
  std::function<void(CLI::App& app)> options;
  std::function<std::string(const Model&)> write;
  bool passing_output = false;  // the report shows passing jobs' output
};

// The whole program: options (a LOG to read, --follow, -o FILE), reading
// the stream, writing the report. Exit codes: 0 written, 2 usage or an
// unknown schema, 3 the input or the output failed.
int ReportMain(int argc, char** argv, const ReportSpec& spec);

}  // namespace weft::render
