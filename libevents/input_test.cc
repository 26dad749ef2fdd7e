#include <doctest/doctest.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <zstd.h>

#include <array>
#include <string>
#include <vector>

#include "weft/events/event.h"
#include "weft/events/input.h"
#include "weft/events/writer.h"

using namespace weft::events;

namespace {

// A scratch file, removed at the end.
struct File {
  std::string path;
  explicit File(const std::string& data) {
    char tmpl[] = "/tmp/weft-input-test-XXXXXX";
    int fd = mkstemp(tmpl);
    REQUIRE(fd >= 0);
    path = tmpl;
    REQUIRE(WriteAll(fd, data));
    close(fd);
  }
  ~File() { unlink(path.c_str()); }
};

// Lines of every length up to a few KiB, some not events, the last one
// without its '\n': several MiB, so that the file is mapped.
std::vector<std::string> SomeLines(size_t bytes) {
  std::vector<std::string> lines;
  size_t total = 0;
  for (size_t i = 0; total < bytes; ++i) {
    std::string line = R"({"type":"assert","run":"r","seq":)" + std::to_string(i) +
                       R"(,"ts":1,"text":")" + std::string(i % 3000, 'x') + "\"}";
    if (i % 97 == 0) line = "not an event " + std::to_string(i);
    if (i % 101 == 0) line.clear();
    total += line.size() + 1;
    lines.push_back(std::move(line));
  }
  return lines;
}

std::string Join(const std::vector<std::string>& lines, bool last_newline) {
  std::string all;
  for (const auto& l : lines) all += l + "\n";
  if (!last_newline) all.pop_back();
  return all;
}

}  // namespace

TEST_CASE("a big log file is read line by line, byte for byte, to its torn last line") {
  for (bool last_newline : {true, false}) {
    auto lines = SomeLines(5 << 20);
    File f(Join(lines, last_newline));
    InputOptions in;
    in.path = f.path;
    LineReader reader;
    std::vector<std::string> got;
    int batches = 0;
    size_t parsed = 0;
    PumpHandlers h;
    h.line = [&](std::string_view line) {
      got.emplace_back(line);
      // Each line can be parsed in place (its padding is readable).
      Fields fields;
      if (fields.Load(Event(line)) && fields.Int("seq")) ++parsed;
    };
    h.batch_end = [&] { ++batches; };
    std::string err;
    CHECK(ReadInput(in, reader, h, nullptr, &err) == PumpEnd::kEof);
    CHECK(err.empty());
    REQUIRE(got.size() == lines.size());
    CHECK(got == lines);
    size_t events = 0;
    for (const auto& l : lines) events += l.starts_with("{");
    CHECK(parsed == events);
    CHECK(batches >= 5);  // a flush point at least every MiB
  }
}

TEST_CASE("a log file cut short while it is read is a read error, not a crash") {
  auto lines = SomeLines(8 << 20);
  File f(Join(lines, true));
  InputOptions in;
  in.path = f.path;
  LineReader reader;
  size_t got = 0;
  PumpHandlers h;
  h.line = [&](std::string_view) {
    if (++got == 10) REQUIRE(truncate(f.path.c_str(), 4096) == 0);
  };
  std::string err;
  CHECK(ReadInput(in, reader, h, nullptr, &err) == PumpEnd::kReadError);
  CHECK_MESSAGE(err == f.path + ": it shrank while it was being read", err);
  CHECK(got < lines.size());
}

TEST_CASE("a big compressed log is read like a plain one") {
  // Lines that compress no better than hex digits: over 1 MiB compressed,
  // so the file is looked at for mapping first.
  std::vector<std::string> lines;
  uint64_t x = 1;
  for (size_t total = 0; total < (4 << 20);) {
    std::string line;
    for (int i = 0; i < 8; ++i) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      char hex[17];
      snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(x));
      line += hex;
    }
    total += line.size() + 1;
    lines.push_back(std::move(line));
  }
  std::string plain = Join(lines, true);
  std::string packed(ZSTD_compressBound(plain.size()), '\0');
  size_t n = ZSTD_compress(packed.data(), packed.size(), plain.data(), plain.size(), 1);
  REQUIRE(!ZSTD_isError(n));
  packed.resize(n);
  REQUIRE(packed.size() > (1 << 20));
  File f(packed);
  InputOptions in;
  in.path = f.path;
  LineReader reader;
  std::vector<std::string> got;
  PumpHandlers h;
  h.line = [&](std::string_view line) { got.emplace_back(line); };
  std::string err;
  CHECK(ReadInput(in, reader, h, nullptr, &err) == PumpEnd::kEof);
  CHECK(got == lines);
}

TEST_CASE("a reader of a few types is handed only lines that may be of them, then told the end") {
  std::vector<std::string> lines = {
      R"({"type":"hello","schema":"1.0"})", R"({"type":"job.start","job":1})",
      R"({"type":"assert","job":1})",       R"({"type":"output","job":1})",
      "not an event",                       R"({"type":"job.end","job":1})",
      R"({"type":"summary"})",              R"({"typo":"assert"})",
      R"({"type":"run.end"})"};
  std::vector<std::string> want = {lines[0], lines[1], lines[4], lines[5],
                                   lines[6], lines[7], lines[8]};
  // Small (read), and big (mapped: the same lines after 2 MiB of asserts).
  for (size_t filler : {size_t{0}, size_t{2} << 20}) {
    CAPTURE(filler);
    std::string data;
    std::string assert_line = R"({"type":"assert","job":1,"ok":true})";
    while (data.size() < filler) data += assert_line + "\n";
    File f(data + Join(lines, true));
    InputOptions in;
    in.path = f.path;
    LineReader reader;
    std::array<bool, 256> initials{};
    initials['h'] = initials['j'] = initials['s'] = initials['r'] = true;
    std::vector<std::string> got;
    int ends = 0;
    size_t got_at_end = 0;
    PumpHandlers h;
    h.type_initials = &initials;
    h.line = [&](std::string_view line) { got.emplace_back(line); };
    h.end = [&] {
      ++ends;
      got_at_end = got.size();
    };
    std::string err;
    CHECK(ReadInput(in, reader, h, nullptr, &err) == PumpEnd::kEof);
    CHECK(got == want);
    CHECK(ends == 1);
    CHECK(got_at_end == got.size());
  }
}
