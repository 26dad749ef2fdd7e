// The report renderers: each turns a Model (the runs of a stream) into one
// document, written once the stream has ended.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "model.h"

namespace CLI {
class App;
}

namespace weft::render {

// Where a report goes as it is made: out in writes of 64 KiB, so that a
// big report is never whole in memory (on a 10,000-job run, the pages of
// a report built whole cost more than writing it).
class ReportOut {
 public:
  explicit ReportOut(int fd) : fd_(fd) {}
  void Append(std::string_view text) {
    if (buf_.empty() && text.size() >= kChunk) {
      Write(text);  // (a report made whole: no copy of it)
      return;
    }
    buf_.append(text);
    if (buf_.size() >= kChunk) Flush();
  }
  // Writes what is held. false once any write failed (error(): its errno).
  bool Flush();
  int error() const { return error_; }

  static constexpr size_t kChunk = 64 * 1024;

 private:
  void Write(std::string_view text);
  int fd_;
  std::string buf_;
  int error_ = 0;
};

// weft-render-json: one JSON object for the stream's last run.
void JsonReport(const Model& m, ReportOut& out);
// weft-render-tap: the runs as one TAP 14 stream, each job a subtest.
// "version" 13 writes the same stream under "TAP version 13", for
// TAP::Parser 3.44 and older, which refuse 14.
std::string TapReport(const Model& m, int version = 14);
// weft-render-junit: JUnit XML. "per_file": one testsuite per job with a
// testcase per assertion (default); otherwise one testsuite per run with a
// testcase per job.
void JunitReport(const Model& m, bool per_assertion, ReportOut& out);
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
  std::function<void(const Model&, ReportOut&)> write;
  bool passing_output = false;  // the report shows passing jobs' output
  // The report lists passing (and todo) assertions too; otherwise only
  // failed ones are kept, and a passing TAP one is not even decoded.
  bool passing_asserts = false;
};

// The whole program: options (a LOG to read, --follow, -o FILE), reading
// the stream, writing the report. Exit codes: 0 written, 2 usage or an
// unknown schema, 3 the input or the output failed.
int ReportMain(int argc, char** argv, const ReportSpec& spec);

}  // namespace weft::render
