#include "weft/events/input.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <memory>

namespace weft::events {

namespace {

std::string Describe(const std::string& path) { return path.empty() ? "stdin" : path; }

constexpr unsigned char kZstdMagic[4] = {0x28, 0xB5, 0x2F, 0xFD};

// Decompresses what is read from "fd" into the reader: a log written with
// weft-logger --zstd (one or more frames; the last may be unfinished, as
// when the writer died: what its complete blocks hold is read).
class ZstdInput {
 public:
  ZstdInput() : ctx_(ZSTD_createDCtx()), in_(new char[kChunk]) {}
  ~ZstdInput() { ZSTD_freeDCtx(ctx_); }
  ZstdInput(const ZstdInput&) = delete;
  ZstdInput& operator=(const ZstdInput&) = delete;

  // Feeds bytes already read; false with *err on corrupt data.
  bool Feed(const char* data, size_t n, LineReader& reader, std::string* err) {
    ZSTD_inBuffer in = {data, n, 0};
    for (;;) {
      size_t avail;
      char* space = reader.Space(ZSTD_DStreamOutSize(), &avail);
      ZSTD_outBuffer out = {space, avail, 0};
      size_t rc = ZSTD_decompressStream(ctx_, &out, &in);
      if (ZSTD_isError(rc)) {
        *err = std::string("corrupt zstd data: ") + ZSTD_getErrorName(rc);
        return false;
      }
      reader.Commit(out.pos);
      // Done when the input is used up and the decoder had room to spare
      // (a full output buffer may mean more is waiting inside it).
      if (in.pos == in.size && out.pos < out.size) break;
    }
    return true;
  }
  // One read from fd: bytes read (0 at EOF), -1 on error.
  ssize_t Read(int fd, LineReader& reader, std::string* err) {
    ssize_t n = read(fd, in_.get(), kChunk);
    if (n > 0 && !Feed(in_.get(), static_cast<size_t>(n), reader, err)) {
      errno = EINVAL;
      return -2;
    }
    return n;
  }

 private:
  static constexpr size_t kChunk = 64 * 1024;
  ZSTD_DCtx* ctx_;
  std::unique_ptr<char[]> in_;
};

}  // namespace

PumpEnd ReadInput(const InputOptions& in, LineReader& reader,
                  const PumpHandlers& h, const std::function<bool()>& done,
                  std::string* err) {
  bool is_stdin = in.path.empty() || in.path == "-";
  int fd = is_stdin ? STDIN_FILENO : open(in.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (err) *err = "cannot open " + in.path + ": " + strerror(errno);
    return PumpEnd::kReadError;
  }
  struct stat st;
  bool regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  auto fail = [&](std::string why) {
    if (err) *err = Describe(in.path) + ": " + why;
    if (!is_stdin) close(fd);
    return PumpEnd::kReadError;
  };
  // The first bytes say whether it is compressed (zstd's magic number).
  char head[4];
  size_t have = 0;
  while (have < sizeof head) {
    ssize_t n = read(fd, head + have, sizeof head - have);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(strerror(errno));
    if (n == 0) {
      // A followed log too new to tell (a compressed one shows nothing
      // for up to a second): wait for its first bytes.
      if (!in.follow || !regular || StopCount() >= in.stop_signals) break;
      usleep(50 * 1000);
      continue;
    }
    have += static_cast<size_t>(n);
  }
  std::unique_ptr<ZstdInput> zstd;
  if (have == sizeof head && memcmp(head, kZstdMagic, sizeof head) == 0) {
    zstd = std::make_unique<ZstdInput>();
    std::string why;
    if (!zstd->Feed(head, have, reader, &why)) return fail(why);
  } else {
    reader.Append(head, have);
  }
  auto drain = [&] {
    std::string_view line;
    while (reader.Next(&line)) h.line(line);
    if (h.batch_end) h.batch_end();
  };
  if (!zstd && (!in.follow || !regular) && have == sizeof head) {
    drain();
    PumpEnd end = Pump(fd, reader, h, err);
    if (end == PumpEnd::kReadError && err) *err = Describe(in.path) + ": " + *err;
    if (!is_stdin) close(fd);
    return end;
  }

  // A compressed log, a followed one, or a very short input: read here.
  bool follow = in.follow && regular;
  int watch = follow ? inotify_init1(IN_CLOEXEC | IN_NONBLOCK) : -1;
  if (watch >= 0 && !is_stdin)
    inotify_add_watch(watch, in.path.c_str(), IN_MODIFY | IN_CLOSE_WRITE);
  PumpEnd end = PumpEnd::kEof;
  int extra_fd = h.extra_fd;  // poll() skips a negative fd
  drain();
  for (bool eof = have < sizeof head && !follow; !eof;) {
    if (StopCount() >= 3) {
      end = PumpEnd::kInterrupted;
      break;
    }
    std::string why;
    ssize_t n = zstd ? zstd->Read(fd, reader, &why) : reader.ReadFrom(fd);
    if (n == -1 && errno == EINTR) continue;
    if (n == -1 && errno == EAGAIN) {
      struct pollfd p = {fd, POLLIN, 0};
      poll(&p, 1, -1);
      continue;
    }
    if (n < 0) {
      if (err) *err = Describe(in.path) + ": " + (why.empty() ? strerror(errno) : why);
      end = PumpEnd::kReadError;
      break;
    }
    drain();
    if (n > 0) continue;
    // Stop following at the run's end, or when asked to stop (a first
    // signal: what came so far is shown).
    if (!follow || (done && done()) || StopCount() >= in.stop_signals) break;
    // At the end for now: wait for the writer (at most 1 s between looks,
    // in case the file was replaced rather than appended to).
    if (h.tick) h.tick();
    int timeout = h.timeout_ms ? h.timeout_ms() : -1;
    if (timeout < 0 || timeout > 1000) timeout = 1000;
    struct pollfd p[2] = {{watch, POLLIN, 0}, {extra_fd, POLLIN, 0}};
    if (poll(p, 2, timeout) > 0) {
      if (p[0].revents) {
        char buf[4096];
        while (read(watch, buf, sizeof buf) > 0) {
        }
      }
      if (p[1].revents) {
        if (!h.extra()) extra_fd = -1;
        if (h.batch_end) h.batch_end();
      }
    }
  }
  reader.Finish();
  drain();
  if (watch >= 0) close(watch);
  if (!is_stdin) close(fd);
  return end;
}

}  // namespace weft::events
