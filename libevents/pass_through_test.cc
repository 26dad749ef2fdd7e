#include "weft/events/pass_through.h"

#include <doctest/doctest.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <random>
#include <string>
#include <functional>
#include <thread>

#include "weft/events/line_reader.h"

using weft::events::LineReader;
using weft::events::PassThrough;

namespace {

// A stream of "n" lines of assorted lengths (some empty, some long), some
// marked to be dropped ("drop") or followed by a line of the filter's own
// ("mark").
std::string Input(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string all;
  for (size_t i = 0; i < n; ++i) {
    size_t len = rng() % 7 == 0 ? 0 : rng() % 300;
    if (rng() % 500 == 0) len = 70000;
    std::string line = std::to_string(i) + ":" + std::string(len, static_cast<char>('a' + i % 26));
    if (rng() % 13 == 0) line += " drop";
    if (rng() % 11 == 0) line += " mark";
    all += line + "\n";
  }
  return all;
}

// What the filter below makes of "input": the lines without "drop", each
// followed by "own\n" if it has "mark"; a last line without '\n' gets one.
std::string Expected(const std::string& input) {
  std::string out;
  size_t at = 0;
  while (at < input.size()) {
    size_t nl = input.find('\n', at);
    if (nl == std::string::npos) nl = input.size();
    std::string_view line(input.data() + at, nl - at);
    if (line.find("drop") == std::string_view::npos) {
      out.append(line);
      out += '\n';
      if (line.find("mark") != std::string_view::npos) out += "own\n";
    }
    at = nl + 1;
  }
  return out;
}

struct Options {
  bool copied = false;  // the batch holds the lines too (weft-logger)
  int reads_per_write = 1;
  // Called once, between a Read and the Write of its lines.
  std::function<void()> before_write;
};

// A stream filter the way weft-overlord (lines inserted by note) or
// weft-logger (lines copied, and noted) uses PassThrough.
PassThrough::Stats Filter(int in, int out, const Options& o, bool* write_ok = nullptr) {
  PassThrough pass(in, out);
  LineReader reader;
  std::string batch;
  int reads = 0;
  bool ok = true;
  for (;;) {
    ssize_t n = pass.Read(reader);
    if (n < 0 && errno == EINTR) continue;
    REQUIRE(n >= 0);
    if (n == 0) reader.Finish();
    reader.Each([&](std::string_view line) {
      if (line.find("drop") != std::string_view::npos) return;
      if (!pass.Note(batch.size(), line, o.copied) || o.copied) {
        batch.append(line);
        batch += '\n';
      }
      if (line.find("mark") != std::string_view::npos) batch += "own\n";
    });
    if (++reads % o.reads_per_write == 0 || n == 0) {
      if (o.before_write) {
        o.before_write();
      }
      ok = pass.Write(batch) && ok;
      batch.clear();
    }
    if (n == 0) break;
  }
  if (write_ok) *write_ok = ok;
  return pass.stats();
}

// Feeds "data" into a pipe in chunks of random size; with "trickle",
// runs of small chunks (a few lines at a time) come between the big ones.
std::thread Feeder(int fd, const std::string& data, unsigned seed, bool trickle = false) {
  return std::thread([fd, &data, seed, trickle] {
    std::mt19937 rng(seed);
    size_t at = 0;
    while (at < data.size()) {
      size_t most = trickle && at / 300000 % 2 == 0 ? 600 : 200000;
      size_t n = std::min<size_t>(data.size() - at, 1 + rng() % most);
      if (most < 1000) usleep(20);
      ssize_t w = write(fd, data.data() + at, n);
      if (w <= 0) break;
      at += static_cast<size_t>(w);
    }
    close(fd);
  });
}

std::thread Collector(int fd, std::string* out) {
  return std::thread([fd, out] {
    char buf[65536];
    for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) out->append(buf, static_cast<size_t>(n));
    close(fd);
  });
}

// Runs the filter from a pipe to a pipe.
PassThrough::Stats PipeToPipe(const std::string& input, const Options& o, std::string* out,
                              bool trickle = false) {
  int in[2], to[2];
  REQUIRE(pipe(in) == 0);
  REQUIRE(pipe(to) == 0);
  std::thread feed = Feeder(in[1], input, 7, trickle);
  std::thread collect = Collector(to[0], out);
  PassThrough::Stats s = Filter(in[0], to[1], o);
  close(in[0]);
  close(to[1]);
  feed.join();
  collect.join();
  return s;
}

// Runs the filter from the file "path", read from byte "from" on, to a pipe.
PassThrough::Stats FileToPipe(const std::string& path, off_t from, const Options& o,
                              std::string* out) {
  int in = open(path.c_str(), O_RDONLY);
  REQUIRE(in >= 0);
  REQUIRE(lseek(in, from, SEEK_SET) == from);
  int to[2];
  REQUIRE(pipe(to) == 0);
  std::thread collect = Collector(to[0], out);
  PassThrough::Stats s = Filter(in, to[1], o);
  close(to[1]);
  close(in);
  collect.join();
  return s;
}

std::string TempFile(const std::string& data) {
  char path[] = "/tmp/weft-pass-test.XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  REQUIRE(write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()));
  close(fd);
  return path;
}

}  // namespace

TEST_CASE("lines passed on from a pipe come out in their places, spliced, not copied") {
  std::string input = Input(30000, 1);
  for (bool copied : {false, true}) {
    CAPTURE(copied);
    std::string out;
    Options o;
    o.copied = copied;
    PassThrough::Stats s = PipeToPipe(input, o, &out);
    std::string want = Expected(input);
    REQUIRE(out.size() == want.size());
    CHECK(out == want);
    CHECK(s.active);
    // Nearly every byte kept went by splice; none was written from memory
    // on the filter's behalf but its own lines (the duplicate pipe can be
    // full for a chunk: those lines are copied).
    CHECK(s.passed > want.size() * 9 / 10);
    CHECK(s.fallback == 0);
  }
}

TEST_CASE("a stream that trickles, then bursts, then trickles: read plainly, then spliced") {
  // A few lines a read are read as they would be without a pass-through
  // (tee's extra calls cost more than the copy); big reads are spliced.
  std::string input = Input(20000, 11);
  for (bool copied : {false, true}) {
    CAPTURE(copied);
    std::string out;
    Options o;
    o.copied = copied;
    PassThrough::Stats s = PipeToPipe(input, o, &out, true);
    CHECK(out == Expected(input));
    CHECK(s.passed > 0);
  }
}

TEST_CASE("a torn last line is not passed from the input: the filter adds its newline") {
  for (bool copied : {false, true}) {
    CAPTURE(copied);
    std::string input = Input(500, 2) + "last line, no newline mark";
    std::string out;
    Options o;
    o.copied = copied;
    PipeToPipe(input, o, &out);
    CHECK(out == Expected(input));
    CHECK(out.ends_with("last line, no newline mark\nown\n"));
  }
}

TEST_CASE("lines held over many reads (a log's first lines) outgrow the duplicate: still right") {
  // weft-logger keeps lines until it knows the run id: here every line
  // waits for the end, far past what the duplicate pipe holds.
  std::string input = Input(40000, 3);
  std::string out;
  Options o;
  o.copied = true;
  o.reads_per_write = 1 << 30;
  PassThrough::Stats s = PipeToPipe(input, o, &out);
  CHECK(out == Expected(input));
  CHECK(s.passed > 0);                       // the first MiB or so
  CHECK(s.passed < Expected(input).size());  // the rest went from memory
}

TEST_CASE("from a regular file the lines are spliced from the file") {
  std::string input = Input(20000, 4);
  std::string path = TempFile(input);
  for (bool copied : {false, true}) {
    CAPTURE(copied);
    Options o;
    o.copied = copied;
    std::string out;
    // Read from byte 3 on: the part before is not the input.
    PassThrough::Stats s = FileToPipe(path, 3, o, &out);
    CHECK(out == Expected(input.substr(3)));
    CHECK(s.passed > out.size() * 9 / 10);
  }
  unlink(path.c_str());
}

TEST_CASE("a file that shrinks under the filter: the lines from memory, none lost") {
  std::string input = Input(3000, 5);
  for (bool copied : {false, true}) {
    CAPTURE(copied);
    std::string path = TempFile(input);
    Options o;
    o.copied = copied;
    o.reads_per_write = 1;
    bool done = false;
    o.before_write = [&] {
      if (!done) REQUIRE(truncate(path.c_str(), 10) == 0);
      done = true;
    };
    std::string out;
    PassThrough::Stats s = FileToPipe(path, 0, o, &out);
    // What was read before the file shrank is all there is, whole.
    // (the line the file was cut in ends the output, with a '\n' added)
    std::string want = Expected(input);
    size_t cut = out.size() > 1 ? out.rfind('\n', out.size() - 2) : std::string::npos;
    REQUIRE(cut != std::string::npos);
    CHECK(want.starts_with(out.substr(0, cut + 1)));
    CHECK(s.fallback > 0);
    CHECK(s.passed <= 10);
    unlink(path.c_str());
  }
}

TEST_CASE("a file written to after it was opened is no longer spliced from") {
  // Spliced pages are the file's own: bytes written over what was read
  // would reach the reader downstream. Once the file has changed, the
  // lines go from memory: what the filter read, whatever the file holds.
  std::string input = Input(20000, 12);
  for (bool copied : {false, true}) {
    CAPTURE(copied);
    std::string path = TempFile(input);
    Options o;
    o.copied = copied;
    bool done = false;
    o.before_write = [&] {
      if (done) return;
      done = true;
      usleep(20000);  // (past the clock's coarse tick)
      int fd = open(path.c_str(), O_WRONLY);
      REQUIRE(fd >= 0);
      REQUIRE(pwrite(fd, "ZZZZZZZZZZ", 10, 100) == 10);  // within what was read
      close(fd);
    };
    std::string out;
    PassThrough::Stats s = FileToPipe(path, 0, o, &out);
    CHECK(out == Expected(input));
    CHECK(s.passed == 0);
    CHECK(s.fallback > 0);
    unlink(path.c_str());
  }
}

TEST_CASE("output that is not a pipe: every line copied, as before") {
  std::string input = Input(2000, 6);
  std::string path = TempFile("");
  int out = open(path.c_str(), O_WRONLY | O_TRUNC);
  int in[2];
  REQUIRE(pipe(in) == 0);
  std::thread feed = Feeder(in[1], input, 8);
  PassThrough::Stats s = Filter(in[0], out, Options{});
  feed.join();
  close(in[0]);
  close(out);
  CHECK(!s.active);
  CHECK(s.passed == 0);
  std::string got;
  int fd = open(path.c_str(), O_RDONLY);
  std::thread collect = Collector(fd, &got);
  collect.join();
  CHECK(got == Expected(input));
  unlink(path.c_str());
}

TEST_CASE("output closed by its reader: the write fails with EPIPE") {
  signal(SIGPIPE, SIG_IGN);
  std::string input = Input(5000, 9);
  int in[2], to[2];
  REQUIRE(pipe(in) == 0);
  REQUIRE(pipe(to) == 0);
  close(to[0]);
  std::thread feed = Feeder(in[1], input, 10);
  bool ok = true;
  int err = 0;
  {
    PassThrough pass(in[0], to[1]);
    LineReader reader;
    ssize_t n = pass.Read(reader);
    REQUIRE(n > 0);
    reader.Each([&](std::string_view line) { CHECK(pass.Note(0, line, false)); });
    ok = pass.Write("");
    err = errno;
  }
  CHECK(!ok);
  CHECK(err == EPIPE);
  close(in[0]);
  feed.join();
  close(to[1]);
}
