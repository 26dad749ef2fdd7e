#include "logger.h"

#include <errno.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <weft/common/util.h>
#include <weft/events/event.h>
#include <weft/events/writer.h>
#include <time.h>
#include <zstd.h>

namespace weft::logger {
namespace {

bool MakeDir(const std::string& path, std::string* err) {
  if (mkdir(path.c_str(), 0777) == 0 || errno == EEXIST) return true;
  *err = fmt::format("cannot create {}: {}", path, strerror(errno));
  return false;
}

}  // namespace

struct Logger::ZstdState {
  ZSTD_CCtx* ctx = ZSTD_createCCtx();
  std::string held;  // compressed, not yet written (see WriteLog)
  bool open = false;  // lines given since the last frame's end
  ~ZstdState() { ZSTD_freeCCtx(ctx); }
};

namespace {
int64_t NowMs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}
}  // namespace

Logger::Logger(Options o) : o_(std::move(o)) {}

Logger::~Logger() {
  if (fd_ >= 0) close(fd_);
}

bool Logger::WriteLog(std::string_view data, int mode) {
  if (!z_) return events::WriteAll(fd_, data);
  // Nothing since the frame ended (at run.end): no empty frame after it.
  if (data.empty() && !z_->open) return true;
  z_->open = true;
  ZSTD_inBuffer in = {data.data(), data.size(), 0};
  auto directive = static_cast<ZSTD_EndDirective>(mode);
  // What zstd makes of whole lines "continue"d is kept here, not written:
  // its blocks end anywhere in a line, and a log cut off after one would
  // decode to a torn last line. Only a flush (or the frame's end) makes
  // the compressed bytes end where the lines do; then they are written.
  constexpr size_t kHeld = 1 << 20;
  if (directive == ZSTD_e_continue && z_->held.size() >= kHeld)
    directive = ZSTD_e_flush;
  if (z_->held.capacity() < kHeld) z_->held.reserve(kHeld + ZSTD_CStreamOutSize());
  for (;;) {
    size_t at = z_->held.size();
    z_->held.resize(at + ZSTD_CStreamOutSize());
    ZSTD_outBuffer out = {z_->held.data() + at, ZSTD_CStreamOutSize(), 0};
    size_t left = ZSTD_compressStream2(z_->ctx, &out, &in, directive);
    z_->held.resize(at + out.pos);
    if (ZSTD_isError(left)) {
      errno = EIO;
      return false;
    }
    bool done = directive == ZSTD_e_continue ? in.pos == in.size : left == 0;
    if (done) break;
  }
  if (directive == ZSTD_e_continue) {
    if (unflushed_since_ms_ < 0 && !data.empty()) unflushed_since_ms_ = NowMs();
    return true;
  }
  unflushed_since_ms_ = -1;
  if (directive == ZSTD_e_end) z_->open = false;
  bool ok = events::WriteAll(fd_, z_->held);
  z_->held.clear();
  if (z_->held.capacity() > 2 * kHeld) z_->held.shrink_to_fit();
  return ok;
}

void Logger::WriteBehind() {
  constexpr off_t kStep = 8 << 20;
  off_t end = lseek(fd_, 0, SEEK_CUR);
  if (end < 0 || end - written_back_ < kStep) return;
  // Start the writing of what is in the page cache; no waiting for it (a
  // pipe, a tty or /dev/null says EINVAL or ESPIPE: nothing to do).
  sync_file_range(fd_, written_back_, end - written_back_, SYNC_FILE_RANGE_WRITE);
  written_back_ = end;
}

int Logger::PendingMs() const {
  if (!z_ || unflushed_since_ms_ < 0 || fd_ < 0) return -1;
  int64_t due = unflushed_since_ms_ + 1000 - NowMs();
  return due < 0 ? 0 : static_cast<int>(due);
}

bool Logger::Tick() {
  if (failed_ || PendingMs() != 0) return true;
  // A block the reader can decode: a crash now loses nothing before it.
  if (!WriteLog({}, ZSTD_e_flush)) {
    error_ = fmt::format("cannot write log {}: {}", path_, strerror(errno));
    failed_ = true;
    return false;
  }
  return true;
}

bool Logger::Open(std::string_view run) {
  std::string path;
  if (!o_.output.empty()) {
    path = o_.output;
  } else {
    if (!SafeRunId(run)) {
      error_ = fmt::format("run id \"{}\" cannot name a log file", run);
      return false;
    }
    if (!MakeDir(o_.dir, &error_) || !MakeDir(o_.dir + "/runs", &error_))
      return false;
    path = fmt::format("{}/runs/{}.jsonl{}", o_.dir, run, o_.zstd ? ".zst" : "");
  }
  fd_ = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  written_back_ = 0;
  if (fd_ < 0) {
    error_ = fmt::format("cannot open log {}: {}", path, strerror(errno));
    return false;
  }
  path_ = path;
  run_ = std::string(run);
  logged_ = 0;
  // An index beside a long log (not a compressed one, nor a pipe; beside
  // the file itself, where its readers look, when PATH is a link). A
  // compressed log removes an old one of its name.
  if (struct stat st; fstat(fd_, &st) == 0 && S_ISREG(st.st_mode)) {
    std::string real = path;
    if (struct stat l; lstat(path.c_str(), &l) == 0 && S_ISLNK(l.st_mode))
      real = events::RealPath(fd_, path);
    if (real.empty()) real = path;
    if (o_.zstd)
      unlink(events::IndexPath(real).c_str());
    else
      index_.Start(real);
  }
  if (o_.zstd) {
    z_ = std::make_unique<ZstdState>();
    // A checksum per frame: a reader can tell a damaged log from a short one.
    ZSTD_CCtx_setParameter(z_->ctx, ZSTD_c_checksumFlag, 1);
  }
  if (o_.output.empty()) {
    // .weft/latest -> runs/<id>.jsonl, replaced atomically.
    std::string tmp = o_.dir + "/.latest.tmp";
    unlink(tmp.c_str());
    std::string target = fmt::format("runs/{}.jsonl{}", run, o_.zstd ? ".zst" : "");
    if (symlink(target.c_str(), tmp.c_str()) != 0 ||
        rename(tmp.c_str(), (o_.dir + "/latest").c_str()) != 0)
      Warning("weft-logger", fmt::format("cannot update {}/latest: {}",
                                         o_.dir, strerror(errno)));
  }
  return true;
}

bool Logger::Close() {
  if (fd_ < 0) return true;
  bool ok = true;
  if (z_ && !WriteLog({}, ZSTD_e_end)) {
    ok = false;
    error_ = fmt::format("cannot write log {}: {}", path_, strerror(errno));
  }
  z_.reset();
  ok = ok && (fsync(fd_) == 0 || errno == EINVAL);  // EINVAL: a pipe or tty
  if (!ok) error_ = fmt::format("cannot sync log {}: {}", path_, strerror(errno));
  if (close(fd_) != 0 && ok) {
    ok = false;
    error_ = fmt::format("cannot close log {}: {}", path_, strerror(errno));
  }
  fd_ = -1;
  index_.Finish(logged_);
  return ok;
}

void Logger::Line(std::string_view line, bool torn) {
  if (failed_) return;
  if (torn && !events::LooksLikeEvent(line)) {
    // The producer died mid-line: keep the log a valid JSONL prefix.
    Warning("weft-logger",
            fmt::format("dropped a torn last line of {} bytes (its producer "
                        "ended mid-line)",
                        line.size()));
    return;
  }
  std::string_view type = events::TypeOf(line);
  bool is_start = type == "hello" || type == "run.start";
  if (is_start && o_.output.empty()) {
    events::Fields fields;
    if (fields.Load(events::Event(line))) {
      if (auto run = fields.Str("run"); run && *run != run_) {
        // A new run (a long-lived runner serves many): a new file.
        if (!Flush() || !Close()) {
          failed_ = true;
          return;
        }
        if (!Open(*run)) {
          failed_ = true;
          return;
        }
      }
    }
  } else if (fd_ < 0 && !o_.output.empty() && path_.empty()) {
    if (!Open("")) {
      failed_ = true;
      return;
    }
  }
  if (!o_.zstd) index_.Line(batch_.size(), line, type);
  if (pass_) pass_->Note(batch_.size(), line, true);
  batch_.append(line);
  batch_.push_back('\n');
  if (type == "run.end") sync_after_flush_ = true;
}

namespace {
constexpr size_t kSubscriberBacklog = 8 * 1024 * 1024;  // then dropped
}  // namespace

bool Logger::StartSubscribers() {
  auto add = [&](const std::string& spec, bool is_fifo) {
    Subscriber s;
    s.name = spec;
    std::string where = spec;
    if (size_t colon = spec.rfind(':'); colon != std::string::npos) {
      where = spec.substr(0, colon);
      std::string types = spec.substr(colon + 1);
      size_t start = 0;
      while (start <= types.size()) {
        size_t comma = types.find(',', start);
        if (comma == std::string::npos) comma = types.size();
        if (comma > start) s.types.insert(types.substr(start, comma - start));
        start = comma + 1;
      }
    }
    if (is_fifo) {
      struct stat st;
      if (stat(where.c_str(), &st) != 0 || !S_ISFIFO(st.st_mode)) {
        error_ = fmt::format("--fifo {}: not a named pipe (make one with mkfifo)", where);
        return false;
      }
      s.path = where;
      // No reader yet (ENXIO): opened on a later try.
      s.fd = open(where.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    } else {
      char* end = nullptr;
      long fd = strtol(where.c_str(), &end, 10);
      if (where.empty() || *end || fd < 3 || fcntl(static_cast<int>(fd), F_GETFD) < 0) {
        error_ = fmt::format("--fd {}: not an open file descriptor above 2", where);
        return false;
      }
      s.fd = static_cast<int>(fd);
      fcntl(s.fd, F_SETFL, fcntl(s.fd, F_GETFL) | O_NONBLOCK);
    }
    subscribers_.push_back(std::move(s));
    return true;
  };
  for (const auto& f : o_.fifos)
    if (!add(f, true)) return false;
  for (const auto& f : o_.fds)
    if (!add(f, false)) return false;
  return true;
}

void Logger::Drop(Subscriber& s, const std::string& why) {
  s.dropped = true;
  if (s.fd >= 0) close(s.fd);
  s.fd = -1;
  std::string().swap(s.pending);
  std::string message = fmt::format("subscriber {} dropped: {}", s.name, why);
  Warning("weft-logger", message);
  events::EventWriter w(run_, -1);
  events::JsonWriter& j = w.Begin("warning");
  events::Key(j, "source");
  events::String(j, "weft-logger");
  events::WriteText(j, "message", message);
  w.End();
  warnings_.append(w.batch());
}

void Logger::Drain(Subscriber& s) {
  if (s.dropped || s.pending.empty()) return;
  if (s.fd < 0) {
    s.fd = open(s.path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (s.fd < 0) {
      if (s.pending.size() > kSubscriberBacklog)
        Drop(s, "nobody opened it to read");
      return;
    }
  }
  size_t done = 0;
  while (done < s.pending.size()) {
    ssize_t n = write(s.fd, s.pending.data() + done, s.pending.size() - done);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    s.pending.erase(0, done);
    Drop(s, n < 0 && errno == EPIPE ? std::string("its reader went away")
                                    : fmt::format("cannot write to it: {}", strerror(errno)));
    return;
  }
  s.pending.erase(0, done);
  if (s.pending.size() > kSubscriberBacklog)
    Drop(s, fmt::format("it fell more than {} MiB behind", kSubscriberBacklog >> 20));
}

void Logger::Feed(Subscriber& s, std::string_view batch) {
  if (s.dropped) return;
  if (s.types.empty()) {
    s.pending.append(batch);
  } else {
    size_t start = 0;
    while (start < batch.size()) {
      size_t nl = batch.find('\n', start);
      std::string_view line = batch.substr(start, nl - start + 1);
      if (s.types.count(events::TypeOf(line))) s.pending.append(line);
      start = nl + 1;
    }
  }
  Drain(s);
}

int Logger::SubscriberMs() const {
  for (const auto& s : subscribers_)
    if (!s.dropped && !s.pending.empty()) return 50;
  return -1;
}

void Logger::RetrySubscribers() {
  for (auto& s : subscribers_) Drain(s);
  if (!warnings_.empty()) {
    // A subscriber dropped with no input to carry the news: now.
    QueueWarnings();
    Flush();
  }
}

void Logger::QueueWarnings() {
  for (size_t at = 0; at < warnings_.size();) {
    size_t nl = warnings_.find('\n', at);
    if (nl == std::string::npos) nl = warnings_.size();  // (each ends in one)
    std::string_view line(warnings_.data() + at, nl - at);
    if (!o_.zstd) index_.Line(batch_.size() + at, line, events::TypeOf(line));
    at = nl + 1;
  }
  batch_.append(warnings_);
  warnings_.clear();
}

bool Logger::Flush() {
  if (failed_) return false;
  if (!warnings_.empty()) QueueWarnings();
  if (batch_.empty()) return true;
  if (fd_ < 0 && !o_.output.empty() && !Open("")) {
    failed_ = true;
    return false;
  }
  if (fd_ >= 0) {
    // At run.end a compressed log ends its frame (a complete file); with
    // --sync each batch is flushed to the file, to be synced.
    if (!WriteLog(batch_, sync_after_flush_ ? ZSTD_e_end
                          : o_.sync         ? ZSTD_e_flush
                                            : ZSTD_e_continue)) {
      error_ = fmt::format("cannot write log {}: {}", path_, strerror(errno));
      failed_ = true;
      return false;
    }
    if (!sync_after_flush_ && !o_.sync) WriteBehind();
    if ((sync_after_flush_ || o_.sync) && fdatasync(fd_) != 0 && errno != EINVAL) {
      error_ = fmt::format("cannot sync log {}: {}", path_, strerror(errno));
      failed_ = true;
      return false;
    }
    sync_after_flush_ = false;
  } else {
    return true;  // no run id yet: keep the lines until the file opens
  }
  for (auto& s : subscribers_) Feed(s, batch_);
  if (!warnings_.empty()) {
    // Dropped just now: the log says so with this batch.
    if (!WriteLog(warnings_, 0)) {
      error_ = fmt::format("cannot write log {}: {}", path_, strerror(errno));
      failed_ = true;
      return false;
    }
    QueueWarnings();
  }
  // The batch is in the log: its landmarks go in the index.
  if (std::string why; !index_.Commit(logged_, batch_, &why))
    Warning("weft-logger", why);
  logged_ += batch_.size();
  bool forward = o_.forward && !forward_failed_;
  if (pass_ && !forward) pass_->Drop();
  if (forward && !(pass_ && pass_->pending() ? pass_->Write(batch_)
                                             : events::WriteAll(STDOUT_FILENO, batch_))) {
    // The log matters more than the view: keep logging.
    forward_failed_ = true;
    Warning("weft-logger", fmt::format("cannot write to stdout ({}); still "
                                       "logging to {}",
                                       strerror(errno), path_));
  }
  batch_.clear();
  return true;
}

bool Logger::Finish() {
  if (failed_) return false;
  if (fd_ < 0 && !batch_.empty() && o_.output.empty()) {
    // A stream that never named its run: log it under a new id anyway.
    Warning("weft-logger", "the stream named no run id; logging it under a new one");
    if (!Open(NewRunId())) return false;
  }
  if (!Flush()) return false;
  return Close();
}

}  // namespace weft::logger
