#include "weft/events/line_reader.h"

#include <unistd.h>

#include <cstring>

#include "weft/events/event.h"

namespace weft::events {

LineReader::LineReader(size_t initial_capacity)
    : buf_(new char[initial_capacity + kPadding]),
      cap_(initial_capacity + kPadding) {}

void LineReader::Compact(size_t need) {
  newlines_.reset();
  // Keep the unread bytes; make room for "need" more plus the padding.
  size_t live = end_ - begin_;
  if (begin_ > 0 && live + need + kPadding <= cap_) {
    origin_ += begin_;
    std::memmove(buf_.get(), buf_.get() + begin_, live);
    scan_ -= begin_;
    end_ = live;
    begin_ = 0;
    return;
  }
  if (end_ + need + kPadding <= cap_) return;
  size_t cap = cap_;
  while (live + need + kPadding > cap) cap *= 2;
  std::unique_ptr<char[]> bigger(new char[cap]);
  std::memcpy(bigger.get(), buf_.get() + begin_, live);
  origin_ += begin_;
  buf_ = std::move(bigger);
  cap_ = cap;
  scan_ -= begin_;
  end_ = live;
  begin_ = 0;
}

char* LineReader::Space(size_t min, size_t* available) {
  if (begin_ == end_) {
    origin_ += end_;
    begin_ = scan_ = end_ = 0;
    newlines_.reset();
  }
  if (end_ + min + kPadding > cap_) Compact(min);
  // Offer what is free, but at least "min".
  *available = cap_ - kPadding - end_;
  return buf_.get() + end_;
}

void LineReader::Commit(size_t n) {
  end_ += n;
  newlines_.reset();
}

void LineReader::Append(const char* data, size_t n) {
  size_t avail;
  char* p = Space(n, &avail);
  std::memcpy(p, data, n);
  Commit(n);
}

ssize_t LineReader::ReadFrom(int fd) {
  size_t avail;
  // Grow geometrically when a long line fills the buffer, so a 100 MB
  // line costs O(size) copying, not O(size^2).
  char* p = Space(read_size(), &avail);
  ssize_t n = ::read(fd, p, avail);
  if (n > 0) Commit(static_cast<size_t>(n));
  return n;
}

bool LineReader::NextSlow(std::string_view* line) {
  if (begin_ == end_) return false;
  scan_ = end_;
  newlines_.reset();
  if (!finished_) return false;
  torn_ = true;
  *line = std::string_view(buf_.get() + begin_, end_ - begin_);
  begin_ = scan_ = end_;
  ++line_no_;
  return true;
}

}  // namespace weft::events
