#include "weft/events/line_reader.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

#include "weft/events/event.h"

using weft::events::LineReader;

namespace {
std::vector<std::string> Drain(LineReader& r) {
  std::vector<std::string> out;
  std::string_view line;
  while (r.Next(&line)) out.emplace_back(line);
  return out;
}
}  // namespace

TEST_CASE("lines split across reads come out whole") {
  LineReader r(16);
  r.Append("{\"type\":\"a\"", 11);
  CHECK(Drain(r).empty());
  r.Append("}\n{\"type\"", 9);
  auto lines = Drain(r);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0] == "{\"type\":\"a\"}");
  r.Append(":\"b\"}\n", 6);
  lines = Drain(r);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0] == "{\"type\":\"b\"}");
  CHECK(r.line_no() == 2);
}

TEST_CASE("the last line without a newline is delivered after Finish") {
  LineReader r;
  r.Append("one\ntwo", 7);
  CHECK(Drain(r) == std::vector<std::string>{"one"});
  r.Finish();
  CHECK(Drain(r) == std::vector<std::string>{"two"});
  CHECK(r.pending() == 0);
}

TEST_CASE("empty lines and CRLF are kept as the producer wrote them") {
  LineReader r;
  r.Append("\n\r\nx\r\n", 6);
  CHECK(Drain(r) == std::vector<std::string>{"", "\r", "x\r"});
}

TEST_CASE("a 100 MB line read from a pipe passes through intact") {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  const size_t kSize = 100u << 20;
  std::thread writer([&] {
    std::string chunk(1 << 20, 'x');
    for (size_t i = 0; i < kSize / chunk.size(); ++i)
      (void)!write(fds[1], chunk.data(), chunk.size());
    (void)!write(fds[1], "\nafter\n", 7);
    close(fds[1]);
  });
  LineReader r;
  std::vector<size_t> sizes;
  std::string last;
  for (;;) {
    ssize_t n = r.ReadFrom(fds[0]);
    if (n == 0) r.Finish();
    std::string_view line;
    while (r.Next(&line)) {
      sizes.push_back(line.size());
      last = std::string(line.substr(0, 5));
      if (line.size() == kSize)
        CHECK(line.find_first_not_of('x') == std::string_view::npos);
    }
    if (n <= 0) break;
  }
  writer.join();
  close(fds[0]);
  CHECK(sizes == std::vector<size_t>{kSize, 5});
  CHECK(last == "after");
}

TEST_CASE("invalid UTF-8 and NUL bytes are framed byte for byte") {
  LineReader r;
  std::string bytes("\xff\xfe\0abc\n\x80", 8);
  r.Append(bytes.data(), bytes.size());
  r.Finish();
  auto lines = Drain(r);
  REQUIRE(lines.size() == 2);
  CHECK(lines[0] == std::string("\xff\xfe\0abc", 6));
  CHECK(lines[1] == "\x80");
}

TEST_CASE("every line handed out has padding readable after it") {
  LineReader r(8);
  std::string big(1000, 'y');
  big += '\n';
  r.Append(big.data(), big.size());
  std::string_view line;
  REQUIRE(r.Next(&line));
  // Reading the padding must be within the buffer (ASan would catch it).
  volatile char sink = 0;
  for (size_t i = 0; i < weft::events::kPadding; ++i)
    sink = sink + line.data()[line.size() + i];
  (void)sink;
}
