// Framing: bytes in, whole lines out.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <memory>
#include <optional>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace weft::events {

// The '\n's of a buffer, found 64 bytes at a time: one pass of vector
// compares makes a bitmask per block, and each newline is then a count of
// trailing zeros, where a memchr per line pays its call and set-up on
// every line (most lines of a log are ~100-300 bytes). 64 bytes past
// "end" must be readable (kPadding); what is there is ignored.
class Newlines {
 public:
  Newlines(const char* begin, const char* end) : block_(begin), end_(end) {
    mask_ = begin < end ? Mask(begin) : 0;
  }
  // The next '\n' before "end", or nullptr.
  const char* Next() {
    while (mask_ == 0) {
      block_ += 64;
      if (block_ >= end_) return nullptr;
      mask_ = Mask(block_);
    }
    const char* nl = block_ + __builtin_ctzll(mask_);
    mask_ &= mask_ - 1;
    return nl;
  }

 private:
  uint64_t Mask(const char* b) const {
    uint64_t m;
#if defined(__SSE2__)
    const __m128i nl = _mm_set1_epi8('\n');
    auto part = [&](int i) {
      __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 16 * i));
      return static_cast<uint64_t>(
                 static_cast<uint32_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, nl))))
             << (16 * i);
    };
    m = part(0) | part(1) | part(2) | part(3);
#else
    m = 0;
    for (int i = 0; i < 64; ++i)
      m |= static_cast<uint64_t>(b[i] == '\n') << i;
#endif
    if (end_ - b < 64) m &= (uint64_t{1} << (end_ - b)) - 1;
    return m;
  }

  const char* block_;  // the 64 bytes "mask_" describes
  const char* end_;
  uint64_t mask_;      // their '\n's not yet handed out
};

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
  bool Next(std::string_view* line) {
    // The common case inline (a filter's loop hands out a million lines a
    // second): a '\n' already found in what is buffered.
    if (begin_ != end_) {
      const char* base = buf_.get();
      if (!newlines_) newlines_.emplace(base + scan_, base + end_);
      if (const char* nl = newlines_->Next()) {
        size_t pos = static_cast<size_t>(nl - base);
        *line = std::string_view(base + begin_, pos - begin_);
        begin_ = scan_ = pos + 1;
        ++line_no_;
        return true;
      }
    }
    return NextSlow(line);
  }
  // Every line Next() would hand out now, each to hand(line), in one tight
  // loop (a filter's million lines a second: the scan's state stays in
  // registers, where a call to Next() per line reloads it). "hand" may
  // read line_no() but must not read from or feed this reader.
  template <class F>
  void Each(F&& hand) {
    if (begin_ != end_) {
      const char* base = buf_.get();
      Newlines newlines = newlines_ ? *newlines_ : Newlines(base + scan_, base + end_);
      newlines_.reset();
      size_t begin = begin_;
      while (const char* nl = newlines.Next()) {
        size_t pos = static_cast<size_t>(nl - base);
        begin_ = scan_ = pos + 1;
        ++line_no_;
        hand(std::string_view(base + begin, pos - begin));
        begin = pos + 1;
      }
    }
    std::string_view line;
    if (NextSlow(&line)) hand(line);
  }
  // No more input: the partial last line (if any) becomes available.
  void Finish() { finished_ = true; }
  bool finished() const { return finished_; }
  // How much ReadFrom() asks for at once.
  size_t read_size() const { return cap_ / 2 > 65536 ? cap_ / 2 : 65536; }
  // Where the byte at "p" (in a line handed out since the last
  // non-const call) came in: bytes received before it.
  uint64_t Offset(const char* p) const { return origin_ + static_cast<uint64_t>(p - buf_.get()); }
  // Whether [p, p + n) lies within the bytes received and held.
  bool Holds(const char* p, size_t n) const {
    return p >= buf_.get() && p <= buf_.get() + end_ && n <= static_cast<size_t>(buf_.get() + end_ - p);
  }
  // Bytes received but not yet handed out as a line.
  size_t pending() const { return end_ - begin_; }
  // True when the last line handed out ended at EOF without its '\n'.
  bool torn() const { return torn_; }
  // 1-based number of the last line handed out.
  size_t line_no() const { return line_no_; }

 private:
  void Compact(size_t need);
  // Next() when no whole line is buffered: the torn last one, or none.
  bool NextSlow(std::string_view* line);

  // Uninitialised on purpose: zero-filling 64 KiB per reader is measurable
  // in a process that starts once per test.
  std::unique_ptr<char[]> buf_;
  size_t cap_ = 0;
  size_t begin_ = 0;  // start of the first line not yet handed out
  size_t scan_ = 0;   // bytes before this offset hold no '\n'
  size_t end_ = 0;    // end of data
  size_t line_no_ = 0;
  uint64_t origin_ = 0;  // bytes received before buf_[0]
  // The '\n's of [scan_, end_), while no byte has moved or come in since
  // it was set (Commit and Compact drop it).
  std::optional<Newlines> newlines_;
  bool finished_ = false;
  bool torn_ = false;
};

}  // namespace weft::events
