// Lines a stream filter passes on unchanged leave it without being copied.
//
// weft-overlord and weft-logger hand on nearly every line they read, byte
// for byte. Read and written back, each line crosses the user/kernel line
// twice more per filter, and each pipe between them allocates pages for
// it. When the filter's output is a pipe, this keeps what it reads in the
// kernel too: a pipe of its own gets a duplicate of every chunk before the
// chunk is read (tee(2), page references, no copy), and a line passed on
// is spliced from there into the output (splice(2), no copy) in its place
// among the filter's own lines. From a regular file the line is spliced
// from the file itself. On 173 MiB through overlord | logger | renderer
// this is a third of the chain's system time (docs/performance.md).
//
// The bytes that reach the output are exactly those a write() of the same
// batch would have written; a line that cannot be passed this way (no
// pipe, the duplicate pipe full, a torn last line, an input file written
// to since it was opened) is written from memory as before.
//
// Spliced pages are the input's own, not copies: a regular input file
// written to while its lines are still in the pipes downstream (at most a
// few MiB, for milliseconds) would show the readers there its new bytes.
// That is why a file changed since the filter opened it is no longer
// spliced from; the rare writer that strikes in the window between a
// splice and its reading is not caught.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace weft::events {

class LineReader;

class PassThrough {
 public:
  // Passes lines from "in" to "out"; inactive (every line copied) unless
  // "out" is a pipe and "in" a pipe or a regular file.
  PassThrough(int in, int out);
  ~PassThrough();
  PassThrough(const PassThrough&) = delete;
  PassThrough& operator=(const PassThrough&) = delete;

  bool active() const { return mode_ != Mode::kOff; }

  // Reads once from "in" into "reader" (LineReader::ReadFrom's contract:
  // bytes read, 0 at EOF, -1 with errno: EINTR when a signal came). Waits
  // for input when there is none, even if "in" is non-blocking.
  ssize_t Read(LineReader& reader);

  // The output batch being built holds, at byte "at", the line "line"
  // (handed out by the reader since the last Read) and its '\n'. "copied":
  // the batch holds those bytes itself (they are sent from the input
  // instead); otherwise they stand there only in this note, and "line"
  // must stay valid until Write() or Drop(). false when the line cannot
  // be passed from the input: the caller must put it in the batch.
  bool Note(size_t at, std::string_view line, bool copied);
  // Lines noted and not yet written or dropped.
  bool pending() const { return !notes_.empty(); }
  // Writes "batch" to "out" with the noted lines in their places, and
  // forgets the notes. false (errno set) when a write failed.
  bool Write(std::string_view batch);
  // Forgets the notes: those lines are not passed on.
  void Drop() { notes_.clear(); }

  // For tests: whether lines can be passed at all, bytes passed from the
  // input, bytes of noted lines that had to be written from memory.
  struct Stats {
    bool active = false;
    uint64_t passed = 0, fallback = 0;
  };
  Stats stats() const { return {mode_ != Mode::kOff || passed_ > 0, passed_, fallback_}; }

 private:
  enum class Mode { kOff, kPipe, kFile };
  struct Noted {
    size_t at;         // where in the batch it goes
    size_t skip;       // bytes of the batch it stands for (0: inserted)
    uint64_t offset;   // where it starts in the input
    size_t length;     // with its '\n'
    const char* data;  // its bytes, while valid (inserted lines)
  };
  // Sends input bytes [offset, offset + length) to "out": how many went
  // (all, unless errno says why not).
  size_t Send(uint64_t offset, size_t length);
  // Throws away the duplicate's bytes before "offset".
  bool Discard(uint64_t offset);

  Mode mode_ = Mode::kOff;
  LineReader* reader_ = nullptr;  // what Read() reads into
  int in_ = -1, out_ = -1;
  int dup_[2] = {-1, -1};   // the duplicate pipe (kPipe)
  int null_ = -1;           // /dev/null, to throw bytes away
  size_t dup_room_ = 0;     // its capacity
  // Reads smaller than this are not worth tee's extra calls: the next
  // read is a plain one.
  static constexpr size_t kTeeFrom = 32 * 1024;
  size_t last_read_ = kTeeFrom;  // bytes the last read brought
  uint64_t read_ = 0;       // input bytes read so far
  uint64_t dup_begin_ = 0;  // the duplicate holds input [dup_begin_, dup_end_)
  uint64_t dup_end_ = 0;
  off_t file_base_ = 0;     // kFile: the file offset of input byte 0
  struct stat file_ = {};   // kFile: the file when it was opened
  // Whether the input file is as it was (size, modification and change
  // times): its pages then still hold what was read.
  bool FileUnchanged() const;
  std::vector<Noted> notes_;
  uint64_t passed_ = 0, fallback_ = 0;
};

}  // namespace weft::events
