// weft-logger's logic: the stream, byte for byte, into one file per run.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace weft::logger {

struct Options {
  std::string output;          // -o FILE; empty: <dir>/runs/<run-id>.jsonl
  std::string dir = ".weft";   // where runs/ and latest live
  bool forward = true;         // copy the stream to stdout
  bool zstd = false;           // compress: <run-id>.jsonl.zst
  bool sync = false;           // fdatasync after every batch, not only run.end
};

// Takes whole lines; writes them to the log and to stdout in one write()
// each per batch. Opens the run's file when the run id is known (hello or
// run.start), fsyncs at run.end.
class Logger {
 public:
  explicit Logger(Options o);
  ~Logger();
  Logger(const Logger&) = delete;
  Logger& operator=(const Logger&) = delete;

  // "torn": the line ended at EOF without its '\n'. "line" needs
  // events::kPadding readable bytes after it (LineReader's lines have them).
  void Line(std::string_view line, bool torn);
  // Writes what the batch holds. false after a log write error (fatal).
  bool Flush();
  // End of input: flush, fsync, close. false on a write error.
  bool Finish();
  // Compressed logs: milliseconds until the pending compressed data must
  // reach the file (at most a second after it came), or -1; Tick() does it.
  int PendingMs() const;
  bool Tick();

  const std::string& error() const { return error_; }
  bool forward_failed() const { return forward_failed_; }
  const std::string& path() const { return path_; }

 private:
  bool Open(std::string_view run);
  bool Close();
  // Writes "data" to the log (compressed with --zstd; "mode" is the zstd
  // end directive: continue, flush the block, or end the frame).
  bool WriteLog(std::string_view data, int mode);

  Options o_;
  std::string batch_;
  std::string path_;
  std::string run_;
  int fd_ = -1;
  struct ZstdState;
  std::unique_ptr<ZstdState> z_;
  int64_t unflushed_since_ms_ = -1;  // compressed data not yet in the file
  bool sync_after_flush_ = false;
  bool forward_failed_ = false;
  bool failed_ = false;
  std::string error_;
};

}  // namespace weft::logger
