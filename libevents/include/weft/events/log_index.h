// A log's index: a copy of its landmark lines, so that a reader wanting
// only those (a replay of job.end and summary, the history index, the jobs
// that failed) reads a few per cent of the log and not all of it.
//
// A landmark is a line whose type is not one of the bulk types (the events
// a test's every line makes: assert, output, comment, …); a line with no
// type is none. weft-logger writes the index beside an uncompressed log
// that grows past kIndexFrom (below that a scan of the log costs about a
// millisecond), as DIR/.NAME.idx for DIR/NAME (hidden, so that a glob of
// the runs finds the logs only). Text, appended to after the log's lines
// are written:
//
//   weft-log-index 1 bulk=assert,comment,…      the header
//   OFFSET LINE                                 a landmark line of the log,
//                                               byte for byte, and where
//                                               it starts in the log
//   = COVERED                                   every landmark before byte
//                                               COVERED is listed above
//
// The log stays the source of truth: a reader uses an index only when the
// log holds COVERED bytes, ends a line there, has not changed since the
// index was last written (when the index covers all of it), and holds,
// byte for byte, the lines it samples (the first, the last and some
// between); past COVERED it reads the log itself.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace weft::events {

// DIR/.NAME.idx for DIR/NAME.
std::string IndexPath(const std::string& log);
// The path of the file "fd" is open on (opened as "path"), symbolic links
// resolved; empty when it cannot be told.
std::string RealPath(int fd, const std::string& path);

// The types an index leaves out (a run has many of each). Asked of every
// line the logger writes: a compare or two of a fixed size, no search.
inline bool IsBulkType(std::string_view t) {
  // (A compare of a constant size is a load or two, no call.)
  auto is = [p = t.data()]<size_t N>(const char (&name)[N]) {
    return __builtin_memcmp(p, name, N - 1) == 0;
  };
  switch (t.size()) {
    case 6: return is("assert") || is("output") || is("pragma") || is("timing");
    case 7: return is("comment") || is("subtest");
    case 4: return is("deps") || is("diag") || is("note");
    case 10: return is("attachment");
    case 11: return is("parse_error");
    default: return false;
  }
}

// A log of fewer bytes gets no index.
inline constexpr uint64_t kIndexFrom = 4 << 20;

// The logger's half: notes landmarks as lines are queued into a batch, and
// lists them once the log holds the batch. An index that cannot be written
// is given up (removed): the log matters, not its index.
class IndexWriter {
 public:
  IndexWriter() = default;
  ~IndexWriter();
  IndexWriter(const IndexWriter&) = delete;
  IndexWriter& operator=(const IndexWriter&) = delete;

  // A new log at "log" (an old index of that name is removed).
  void Start(const std::string& log);
  // A line queued at "offset" in the batch being built (a landmark is
  // noted, any other line ignored).
  void Line(size_t offset, std::string_view line, std::string_view type) {
    if (!type.empty() && !IsBulkType(type)) pending_.push_back({offset, line.size()});
  }
  // "batch" is in the log, from byte "base" on: its landmarks are listed,
  // and the log said covered to its end. false (the index given up, *err
  // says why) when the index cannot be written.
  bool Commit(uint64_t base, std::string_view batch, std::string* err);
  // The log ends "size" bytes long: says the index covers it all.
  void Finish(uint64_t size);

 private:
  struct Landmark {
    uint64_t offset, length;
  };
  // Writes the landmarks of the log's first bytes, read back from it.
  bool Begin(std::string* err);
  void AddRecord(uint64_t offset, std::string_view line);  // to out_
  void AddCovered(uint64_t covered);
  void GiveUp();
  std::vector<Landmark> pending_;  // in the batch being built
  std::vector<Landmark> early_;    // in the log, while it is short
  std::string log_, path_;
  std::string out_;
  uint64_t covered_ = 0;
  uint64_t written_ = 0;  // bytes of records in the index
  bool live_ = false;     // a log is being indexed
  int fd_ = -1;           // the index, once the log is long enough
};

// The reader's half: the lines of a few types, from a log's index.
class IndexedLines {
 public:
  IndexedLines() = default;
  ~IndexedLines();
  IndexedLines(const IndexedLines&) = delete;
  IndexedLines& operator=(const IndexedLines&) = delete;

  // When "log" (open as "fd", a regular file) has an index that serves
  // "types" (none of them bulk), finds every line of those types before
  // the index's COVERED and returns COVERED: where to read the log on
  // from. Returns 0 (and no lines) when there is no such index or any
  // check fails.
  off_t Load(int fd, const std::string& log, const std::vector<std::string>& types);
  // Those lines, in the log's order, without their '\n'; each has
  // kPadding readable bytes after it. Valid while this lives.
  const std::vector<std::string_view>& lines() const { return lines_; }

 private:
  void Unmap();
  off_t Check(int fd, const std::vector<std::string>& types, const struct stat& st,
              const struct stat& log_st);
  std::vector<std::string_view> lines_;
  void* map_ = nullptr;  // the index
  size_t size_ = 0;
  std::string tail_;  // the lines too near the mapping's end, copied
};

}  // namespace weft::events
