// weft-logger's logic: the stream, byte for byte, into one file per run.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <vector>
#include <string>
#include <string_view>

#include <weft/events/log_index.h>
#include <weft/events/pass_through.h>

namespace weft::logger {

struct Options {
  std::string output;          // -o FILE; empty: <dir>/runs/<run-id>.jsonl
  std::string dir = ".weft";   // where runs/ and latest live
  bool forward = true;         // copy the stream to stdout
  bool zstd = false;           // compress: <run-id>.jsonl.zst
  // Subscribers: "PATH[:TYPE,…]" (a named pipe) and "N[:TYPE,…]" (an fd).
  std::vector<std::string> fifos, fds;
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

  // Opens the subscribers (a FIFO without a reader yet is opened later).
  // false with error() on a bad spec.
  bool StartSubscribers();
  // Subscribers still to be written to: milliseconds until the next try.
  int SubscriberMs() const;
  void RetrySubscribers();

  // Lines read through "pass" (see pass_through.h; it outlives this
  // Logger) go on to stdout from there, not from the batch.
  void set_pass_through(events::PassThrough* pass) { pass_ = pass; }

  const std::string& error() const { return error_; }
  bool forward_failed() const { return forward_failed_; }
  const std::string& path() const { return path_; }

 private:
  bool Open(std::string_view run);
  bool Close();
  // Writes "data" to the log (compressed with --zstd; "mode" is the zstd
  // end directive: continue, flush the block, or end the frame).
  bool WriteLog(std::string_view data, int mode);

  // A reader of a copy of the stream, of the types it asked for. Never
  // allowed to slow the log: written without blocking, its backlog
  // bounded; past the bound, or when it is gone, it is dropped and the
  // stream says so in a warning event.
  struct Subscriber {
    std::string name;           // as given, for messages
    std::string path;           // a FIFO; empty for an fd
    int fd = -1;
    std::set<std::string, std::less<>> types;  // empty: all
    std::string pending;
    bool dropped = false;
  };
  void Feed(Subscriber& s, std::string_view batch);
  void Drain(Subscriber& s);
  void Drop(Subscriber& s, const std::string& why);
  std::vector<Subscriber> subscribers_;
  std::string warnings_;  // warning events to add to the stream

  // Appends warnings_ to the batch (and their landmarks to the index's).
  void QueueWarnings();

  Options o_;
  std::string batch_;
  events::PassThrough* pass_ = nullptr;
  // The log's index (uncompressed logs in regular files), and how many
  // bytes the log holds.
  events::IndexWriter index_;
  uint64_t logged_ = 0;
  std::string path_;
  std::string run_;
  int fd_ = -1;
  struct ZstdState;
  std::unique_ptr<ZstdState> z_;
  int64_t unflushed_since_ms_ = -1;  // compressed data not yet in the file
  bool sync_after_flush_ = false;
  // Write-behind: where the disk was last asked to start writing the log
  // out (sync_file_range), so that run.end's fdatasync waits only for the
  // tail, and a crash of the machine loses less.
  off_t written_back_ = 0;
  void WriteBehind();
  bool forward_failed_ = false;
  bool failed_ = false;
  std::string error_;
};

}  // namespace weft::logger
