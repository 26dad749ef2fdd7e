#include "weft/events/pass_through.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "weft/events/line_reader.h"
#include "weft/events/writer.h"

namespace weft::events {
namespace {

bool IsPipe(int fd, struct stat* st) { return fstat(fd, st) == 0 && S_ISFIFO(st->st_mode); }

// Waits until "fd" can take more (a non-blocking output that is full).
void AwaitWritable(int fd) {
  struct pollfd p = {fd, POLLOUT, 0};
  poll(&p, 1, -1);
}

}  // namespace

PassThrough::PassThrough(int in, int out) : in_(in), out_(out) {
  struct stat si, so;
  if (!IsPipe(out, &so) || fstat(in, &si) != 0) return;
  if (S_ISREG(si.st_mode)) {
    off_t at = lseek(in, 0, SEEK_CUR);
    if (at < 0) return;
    file_base_ = at;
    file_ = si;
    mode_ = Mode::kFile;
    return;
  }
  // (A pipe in packet mode, O_DIRECT, would lose the rest of a packet tee
  // took only part of.)
  int flags = fcntl(in, F_GETFL);
  if (!S_ISFIFO(si.st_mode) || flags < 0 || (flags & O_DIRECT)) return;
  null_ = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (null_ < 0 || pipe2(dup_, O_CLOEXEC) != 0) return;
  fcntl(dup_[1], F_SETPIPE_SZ, 1 << 20);
  int size = fcntl(dup_[1], F_GETPIPE_SZ);
  if (size <= 0) return;
  dup_room_ = static_cast<size_t>(size);
  mode_ = Mode::kPipe;
}

PassThrough::~PassThrough() {
  for (int fd : {dup_[0], dup_[1], null_})
    if (fd >= 0) close(fd);
}

ssize_t PassThrough::Read(LineReader& reader) {
  reader_ = &reader;
  // (Lines inserted by note are written before the next read; should one
  // not be, its bytes in the reader are about to move: only the input has
  // them now.)
  for (Noted& n : notes_)
    if (!n.skip) n.data = nullptr;
  size_t avail = 0;
  char* p = reader.Space(reader.read_size(), &avail);
  if (mode_ == Mode::kPipe && notes_.empty()) {
    // Lines read and not passed on (dropped, or written from memory) go;
    // the start of a line not yet whole stays, to be passed when it is.
    uint64_t unread = read_ - reader.pending();
    if (!Discard(std::min(unread, dup_end_))) mode_ = Mode::kOff;
  }
  size_t want = avail;
  if (mode_ == Mode::kPipe && dup_begin_ == dup_end_) {
    // An empty duplicate starts again where the input is.
    dup_begin_ = dup_end_ = read_;
  }
  // A trickle (a few lines a read, as a live run of small tests makes)
  // costs more in tee's extra calls than its copies: read as before
  // until a read comes back big.
  bool tee_now = mode_ == Mode::kPipe && last_read_ >= kTeeFrom && dup_end_ == read_ &&
                 dup_end_ - dup_begin_ < dup_room_;
  if (tee_now) {
    want = std::min(want, dup_room_ - static_cast<size_t>(dup_end_ - dup_begin_));
    ssize_t t = -1;
    for (int tries = 0; tries < 2; ++tries) {
      t = tee(in_, dup_[1], want, SPLICE_F_NONBLOCK);
      if (t < 0 && errno == EINTR) return -1;  // a signal: the caller decides
      if (t >= 0 || errno != EAGAIN || tries) break;
      // Nothing to read yet (or the duplicate is full): wait for input,
      // as a blocking read would, then try once more.
      struct pollfd pf = {in_, POLLIN, 0};
      if (poll(&pf, 1, -1) < 0) return -1;  // EINTR: the caller decides
    }
    if (t == 0) return 0;  // EOF: no writer, nothing left
    if (t > 0) {
      // The same bytes, now read: they are all there (tee took them from
      // what the pipe holds, and only this process reads it).
      size_t got = 0;
      while (got < static_cast<size_t>(t)) {
        ssize_t n = ::read(in_, p + got, static_cast<size_t>(t) - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          // Cannot happen with a pipe only this process reads; if it
          // does, the duplicate no longer matches: stop using it.
          mode_ = Mode::kOff;
          if (got == 0) return n;
          break;
        }
        got += static_cast<size_t>(n);
      }
      if (mode_ == Mode::kPipe) dup_end_ += got;
      read_ += got;
      last_read_ = got;
      reader.Commit(got);
      return static_cast<ssize_t>(got);
    }
    if (errno != EAGAIN) mode_ = Mode::kOff;  // (EINVAL: no tee here)
    // EAGAIN twice: the duplicate is full; these bytes are read only, as
    // many as there is room for.
    want = avail;
  }
  ssize_t n = ::read(in_, p, want);
  if (n > 0) {
    last_read_ = static_cast<size_t>(n);
    read_ += static_cast<uint64_t>(n);
    reader.Commit(static_cast<size_t>(n));
  }
  return n;
}

bool PassThrough::Note(size_t at, std::string_view line, bool copied) {
  if (mode_ == Mode::kOff || !reader_ || !reader_->Holds(line.data(), line.size() + 1))
    return false;
  uint64_t offset = reader_->Offset(line.data());
  uint64_t end = offset + line.size() + 1;
  bool there = mode_ == Mode::kFile ? end <= read_
                                    : offset >= dup_begin_ && end <= dup_end_;
  if (!there || line.data()[line.size()] != '\n') return false;
  size_t length = line.size() + 1;
  if (!notes_.empty()) {
    // The line right after the last one noted, in the input and in the
    // batch: one longer splice.
    Noted& last = notes_.back();
    bool next_in_input = last.offset + last.length == offset;
    bool next_in_batch = copied ? last.skip != 0 && last.at + last.skip == at
                                : last.skip == 0 && last.at == at && last.data &&
                                      last.data + last.length == line.data();
    if (next_in_input && next_in_batch) {
      last.length += length;
      if (copied) last.skip += length;
      return true;
    }
  }
  notes_.push_back({at, copied ? length : 0, offset, length, copied ? nullptr : line.data()});
  return true;
}

bool PassThrough::FileUnchanged() const {
  struct stat now;
  return fstat(in_, &now) == 0 && now.st_size == file_.st_size &&
         now.st_mtim.tv_sec == file_.st_mtim.tv_sec &&
         now.st_mtim.tv_nsec == file_.st_mtim.tv_nsec &&
         now.st_ctim.tv_sec == file_.st_ctim.tv_sec &&
         now.st_ctim.tv_nsec == file_.st_ctim.tv_nsec;
}

bool PassThrough::Discard(uint64_t offset) {
  while (dup_begin_ < offset) {
    size_t n = static_cast<size_t>(offset - dup_begin_);
    ssize_t k = splice(dup_[0], nullptr, null_, nullptr, n, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    dup_begin_ += static_cast<uint64_t>(k);
  }
  return true;
}

size_t PassThrough::Send(uint64_t offset, size_t length) {
  size_t sent = 0;
  if (mode_ == Mode::kPipe && (offset < dup_begin_ || !Discard(offset))) {
    mode_ = Mode::kOff;
    errno = EIO;
    return 0;
  }
  loff_t at = file_base_ + static_cast<off_t>(offset);
  while (sent < length) {
    ssize_t k = mode_ == Mode::kPipe
                    ? splice(dup_[0], nullptr, out_, nullptr, length - sent, 0)
                    : splice(in_, &at, out_, nullptr, length - sent, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0 && errno == EAGAIN) {
      AwaitWritable(out_);
      continue;
    }
    if (k <= 0) {
      if (k == 0) errno = EIO;  // a file that shrank
      break;
    }
    sent += static_cast<size_t>(k);
    if (mode_ == Mode::kPipe) dup_begin_ += static_cast<uint64_t>(k);
  }
  passed_ += sent;
  return sent;
}

bool PassThrough::Write(std::string_view batch) {
  if (mode_ == Mode::kFile && !notes_.empty() && !FileUnchanged()) {
    // Written to since it was opened: its pages may no longer hold what
    // was read and decoded. From memory from now on.
    mode_ = Mode::kOff;
  }
  size_t done = 0;  // bytes of "batch" written or stood for
  bool ok = true;
  for (Noted& n : notes_) {
    if (!ok) break;
    ok = WriteAll(out_, batch.substr(done, n.at - done));
    done = n.at + n.skip;
    if (!ok) break;
    size_t sent = mode_ == Mode::kOff ? 0 : Send(n.offset, n.length);
    if (sent == n.length) continue;
    // The output failed (then so does this), or the input could not give
    // the bytes back (a file that shrank): the rest from memory, and no
    // more from the input.
    int e = errno;
    mode_ = Mode::kOff;
    const char* data = n.skip ? batch.data() + n.at : n.data;
    if (!data || e == EPIPE) {
      errno = data ? e : EIO;
      ok = false;
      break;
    }
    fallback_ += n.length - sent;
    ok = WriteAll(out_, std::string_view(data + sent, n.length - sent));
  }
  if (ok) ok = WriteAll(out_, batch.substr(done));
  notes_.clear();
  return ok;
}

}  // namespace weft::events
