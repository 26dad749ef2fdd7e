// Checks one case of the TAP corpus (tests/tap/): runs weft-auditor on the
// stream and compares its verdict and counts with the case's .expect.
//   tap_check AUDITOR CASE.tap CASE.expect
// Exit 0 when they agree; otherwise prints both and exits 1.
#include <rapidjson/document.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "support.h"

namespace {

std::string Slurp(const char* path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const char* kKeys[] = {"planned", "run",  "passed",      "failed",
                       "skipped", "todo", "todo_passed", "parse_errors"};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: tap_check AUDITOR CASE.tap CASE.expect\n");
    return 2;
  }
  weft::testing::Result r =
      weft::testing::Run({argv[1], "--timeout", "20", "--", "/bin/cat", argv[2]});
  auto lines = weft::testing::Lines(r.out);
  if (lines.empty() || lines.back().rfind("{\"type\":\"job.end\"", 0) != 0) {
    std::fprintf(stderr, "no job.end from the auditor (exit %d, signal %d)\n%s",
                 r.code, r.signal, r.err.c_str());
    return 1;
  }
  rapidjson::Document got, want;
  got.Parse(lines.back().c_str());
  std::string expect = Slurp(argv[3]);
  want.Parse(expect.c_str());
  if (got.HasParseError() || want.HasParseError() || !want.IsObject()) {
    std::fprintf(stderr, "unreadable job.end or .expect\n");
    return 1;
  }
  bool ok = want["verdict"] == got["verdict"];
  const auto& counts = got["counts"];
  for (const char* k : kKeys)
    if (want.HasMember(k) && !(want[k] == counts[k])) ok = false;
  if (!ok) {
    std::printf("expected: %s\ngot:      %s\n", expect.c_str(), lines.back().c_str());
    return 1;
  }
  return 0;
}
