// Framing: bytes in, whole lines out.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string_view>
#include <memory>

namespace weft::events {

// Frames bytes (read from an fd, or handed in by a libuv callback) into
// whole lines. A line of any length is kept whole (the buffer grows); the
// last line without '\n' is delivered after Finish(). Every line handed out
// has kPadding readable bytes after it, so Fields can parse it in place.
class LineReader {
 public:
  explicit LineReader(size_t initial_capacity = 64 * 1024);
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // Reads once from "fd": bytes read, 0 at EOF, -1 on error (errno set;
  // EINTR and EAGAIN are returned as -1 too, for the caller to decide).
  ssize_t ReadFrom(int fd);

  // For callers that read themselves: space for at least "min" bytes, then
  // Commit() how many were written there.
  char* Space(size_t min, size_t* available);
  void Commit(size_t n);
  void Append(const char* data, size_t n);

  // The next whole line without its '\n' (a trailing '\r' is kept: the
  // line is the producer's bytes). Valid until the next non-const call.
  bool Next(std::string_view* line);
  // No more input: the partial last line (if any) becomes available.
  void Finish() { finished_ = true; }
  bool finished() const { return finished_; }
  // Bytes received but not yet handed out as a line.
  size_t pending() const { return end_ - begin_; }
  // True when the last line handed out ended at EOF without its '\n'.
  bool torn() const { return torn_; }
  // 1-based number of the last line handed out.
  size_t line_no() const { return line_no_; }

 private:
  void Compact(size_t need);

  // Uninitialised on purpose: zero-filling 64 KiB per reader is measurable
  // in a process that starts once per test.
  std::unique_ptr<char[]> buf_;
  size_t cap_ = 0;
  size_t begin_ = 0;  // start of the first line not yet handed out
  size_t scan_ = 0;   // bytes before this offset hold no '\n'
  size_t end_ = 0;    // end of data
  size_t line_no_ = 0;
  bool finished_ = false;
  bool torn_ = false;
};

}  // namespace weft::events
