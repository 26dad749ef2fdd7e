#include "weft/events/input.h"
#include "weft/events/log_index.h"

#include "weft/events/event.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <system_error>
#include <thread>

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

// A file of this size or more is mapped rather than read (below it, the
// mapping costs more than the copy it saves).
constexpr off_t kMapAtLeast = 1 << 20;
// Input consumed between two batch ends (where the handlers flush).
constexpr size_t kMapBatch = 1 << 20;
// How much of a mapping is made present at a time, ahead of the scan,
// and how far ahead at most.
constexpr off_t kPopulateChunk = 4 << 20;
constexpr off_t kPopulateLead = 16 << 20;

// A mapped file cut short while it is read (truncated by someone else)
// raises SIGBUS at the first page past its new end: the handler maps zeros
// from there to the mapping's end, so the read goes on (seeing NULs, which
// are no event) and ends as a read error, instead of the process dying.
std::atomic<bool> g_map_shrank{false};
long g_page = 4096;  // set before the handler is installed
uintptr_t g_map_lo = 0, g_map_hi = 0;  // the mapping being read
void OnMapBus(int sig, siginfo_t* info, void*) {
  auto at = reinterpret_cast<uintptr_t>(info->si_addr);
  if (at < g_map_lo || at >= g_map_hi) {
    // Not ours: die of it, as without this handler.
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  // Zeros from that page to the mapping's end: one fault, not one a page.
  uintptr_t addr = at & ~static_cast<uintptr_t>(g_page - 1);
  if (mmap(reinterpret_cast<void*>(addr), g_map_hi - addr, PROT_READ,
           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED)
    _exit(3);
  g_map_shrank = true;
}

// A regular, uncompressed file read to its end: its lines handed over
// straight from a mapping of it, with no copy (a filtered replay skips most
// lines by their type alone: it should cost little more than the scan for
// their ends). The last lines (within kPadding of the mapping's end, or
// without a '\n') go through "reader" as read ones, for their padding.
// False when the file is not mapped (compressed, or mmap refused): then
// nothing was consumed.
bool MapLines(int fd, off_t pos, off_t size, LineReader& reader, const PumpHandlers& h,
              PumpEnd* end, std::string* why) {
  void* map = mmap(nullptr, static_cast<size_t>(size), PROT_READ, MAP_PRIVATE, fd, 0);
  if (map == MAP_FAILED) return false;
  const char* base = static_cast<const char*>(map);
  const char* p = base + pos;
  const char* stop = base + size;
  // Readable: up to the end of the last page (zeros after the file's end).
  long page = g_page = sysconf(_SC_PAGESIZE);
  const char* readable = base + (size + page - 1) / page * page;
  struct sigaction bus = {}, old_bus;
  g_map_lo = reinterpret_cast<uintptr_t>(base);
  g_map_hi = reinterpret_cast<uintptr_t>(readable);
  bus.sa_sigaction = OnMapBus;
  bus.sa_flags = SA_SIGINFO;
  sigemptyset(&bus.sa_mask);
  g_map_shrank = false;
  sigaction(SIGBUS, &bus, &old_bus);
  if (stop - p >= 4 && memcmp(p, kZstdMagic, 4) == 0) {
    sigaction(SIGBUS, &old_bus, nullptr);
    munmap(map, static_cast<size_t>(size));
    return false;
  }
  madvise(map, static_cast<size_t>(size), MADV_SEQUENTIAL);
  // The kernel's share of reading a mapping (filling its page tables, a
  // fault per 64 KiB) is as much work as the scan for lines: a thread does
  // it ahead of the scan, a few MiB at a time, on the other core. (All at
  // once before the scan, MAP_POPULATE, is slower: nothing runs meanwhile.)
  // It keeps at most kPopulateLead ahead of the scan (told at each batch),
  // so that a log bigger than the page cache is not read twice.
  std::atomic<bool> quit{false};
  std::atomic<off_t> scanned{pos};
  std::thread ahead;
  auto populate = [&] {
    for (off_t at = pos / page * page; at < size; at += kPopulateChunk) {
      for (off_t seen = scanned.load(); at > seen + kPopulateLead; seen = scanned.load())
        scanned.wait(seen);
      if (quit.load()) break;
      size_t n = static_cast<size_t>(std::min<off_t>(kPopulateChunk, size - at));
      // (Beyond a file cut short: an error, no SIGBUS; the scan sees it.)
      if (madvise(const_cast<char*>(base) + at, n, MADV_POPULATE_READ) != 0) break;
    }
  };
  try {
    ahead = std::thread(populate);
  } catch (const std::system_error&) {
    // No thread to be had (a process limit): the scan faults pages in.
  }
  *end = PumpEnd::kEof;
  const char* batch = p;
  // Lines that end before the last kPadding readable bytes are handed
  // over from here (and the scan reads no further than "readable").
  Newlines newlines(p, std::min(stop, readable - kPadding));
  while (const char* nl = newlines.Next()) {
    h.Hand(std::string_view(p, static_cast<size_t>(nl - p)));
    p = nl + 1;
    if (static_cast<size_t>(p - batch) >= kMapBatch) {
      if (h.batch_end) h.batch_end();
      batch = p;
      scanned.store(p - base);
      scanned.notify_one();
      if (StopCount() >= 3) {
        *end = PumpEnd::kInterrupted;
        break;
      }
    }
  }
  if (*end == PumpEnd::kEof) {
    reader.Append(p, static_cast<size_t>(stop - p));
    reader.Finish();
    h.HandAll(reader);
  }
  if (h.batch_end) h.batch_end();
  if (h.end) h.end();  // before the unmap, which takes milliseconds
  quit = true;
  scanned.store(size);  // (wakes it, to see "quit")
  scanned.notify_one();
  if (ahead.joinable()) ahead.join();
  sigaction(SIGBUS, &old_bus, nullptr);
  munmap(map, static_cast<size_t>(size));
  if (g_map_shrank) {
    *why = "it shrank while it was being read";
    *end = PumpEnd::kReadError;
  }
  return true;
}

PumpEnd ReadLines(const InputOptions& in, LineReader& reader,
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
  if (regular && !in.follow && !is_stdin && !in.types.empty()) {
    // The lines wanted, from the log's index, if it has one that lists
    // them: then the log is read on from where the index ends.
    IndexedLines indexed;
    if (off_t covered = indexed.Load(fd, in.path, in.types);
        covered > 0 && lseek(fd, covered, SEEK_SET) == covered) {
      size_t batch = 0;
      for (std::string_view line : indexed.lines()) {
        h.Hand(line);
        if ((batch += line.size()) >= kMapBatch) {
          if (h.batch_end) h.batch_end();
          batch = 0;
        }
      }
      if (h.batch_end) h.batch_end();
    }
  }
  if (regular && !in.follow) {
    off_t pos = lseek(fd, 0, SEEK_CUR);
    PumpEnd end;
    std::string why;
    if (pos >= 0 && st.st_size - pos >= kMapAtLeast &&
        MapLines(fd, pos, st.st_size, reader, h, &end, &why)) {
      if (end == PumpEnd::kReadError) return fail(why);
      if (!is_stdin) close(fd);
      return end;
    }
  }
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
    h.HandAll(reader);
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

}  // namespace

PumpEnd ReadInput(const InputOptions& in, LineReader& reader,
                  const PumpHandlers& h, const std::function<bool()>& done,
                  std::string* err) {
  if (!h.end) return ReadLines(in, reader, h, done, err);
  // h.end once, whichever way the input was read (a mapped log says it
  // before it is unmapped).
  bool said = false;
  PumpHandlers own = h;
  own.end = [&] {
    said = true;
    h.end();
  };
  PumpEnd end = ReadLines(in, reader, own, done, err);
  if (!said) h.end();
  return end;
}

}  // namespace weft::events
