#include "weft/events/line_reader.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "weft/events/event.h"

using weft::events::LineReader;
using weft::events::Newlines;

namespace {
// n lines of lengths 0 to longest - 1, as "want" and as one text ("all").
void MadeLines(size_t n, size_t longest, std::string* all, std::vector<std::string>* want) {
  for (size_t i = 0; i < n; ++i) {
    std::string line(i % longest, static_cast<char>('a' + i % 26));
    want->push_back(line);
    *all += line + "\n";
  }
}

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

TEST_CASE("newlines are found at every offset of a block, and none past the end") {
  // 300 bytes with '\n's at irregular places, then 64 more (the padding
  // that must be readable) full of '\n's that must not be found.
  std::string buf(300, 'x');
  for (size_t i = 0; i < buf.size(); ++i)
    if (i % 7 == 0 || i % 64 == 63 || i % 64 == 0) buf[i] = '\n';
  buf.append(64, '\n');
  for (size_t begin = 0; begin < 130; ++begin) {
    for (size_t end : {begin, begin + 1, begin + 63, begin + 64, begin + 65, begin + 128,
                       size_t{300}}) {
      if (end < begin || end > 300) continue;
      CAPTURE(begin);
      CAPTURE(end);
      std::vector<size_t> want, got;
      for (size_t i = begin; i < end; ++i)
        if (buf[i] == '\n') want.push_back(i);
      Newlines nl(buf.data() + begin, buf.data() + end);
      while (const char* p = nl.Next()) got.push_back(static_cast<size_t>(p - buf.data()));
      CHECK(got == want);
      CHECK(nl.Next() == nullptr);  // and stays at its end
    }
  }
}

TEST_CASE("lines come out whole whatever the reads' sizes and where the newlines fall") {
  std::string all;
  std::vector<std::string> want;
  MadeLines(400, 150, &all, &want);
  for (size_t chunk : {1, 7, 63, 64, 65, 1000}) {
    CAPTURE(chunk);
    LineReader r(16);
    std::vector<std::string> got;
    for (size_t at = 0; at < all.size(); at += chunk) {
      r.Append(all.data() + at, std::min(chunk, all.size() - at));
      for (auto& l : Drain(r)) got.push_back(std::move(l));
    }
    CHECK(got == want);
  }
}

TEST_CASE("Each hands out what Next would, line numbers and the torn last line included") {
  std::string all;
  std::vector<std::string> want;
  MadeLines(300, 130, &all, &want);
  all += "no newline at the end";
  want.push_back("no newline at the end");
  for (size_t chunk : {1, 5, 64, 200, 5000}) {
    CAPTURE(chunk);
    LineReader r(16);
    std::vector<std::string> got;
    std::vector<size_t> numbers;
    size_t turn = 0;
    for (size_t at = 0; at < all.size(); at += chunk) {
      r.Append(all.data() + at, std::min(chunk, all.size() - at));
      // Next and Each in turn: one reader's state serves both.
      std::string_view line;
      if (++turn % 2 && r.Next(&line)) {
        got.emplace_back(line);
        numbers.push_back(r.line_no());
      }
      r.Each([&](std::string_view l) {
        got.emplace_back(l);
        numbers.push_back(r.line_no());
      });
    }
    CHECK(!r.torn());
    r.Finish();
    r.Each([&](std::string_view l) {
      got.emplace_back(l);
      numbers.push_back(r.line_no());
    });
    CHECK(r.torn());
    CHECK(got == want);
    REQUIRE(numbers.size() == want.size());
    for (size_t i = 0; i < numbers.size(); ++i) CHECK(numbers[i] == i + 1);
    size_t after = 0;
    r.Each([&](std::string_view) { ++after; });
    CHECK(after == 0);  // nothing twice
    CHECK(r.pending() == 0);
  }
}
