#include "weft/events/log_index.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <memory>

#include "weft/events/event.h"
#include "weft/events/writer.h"

namespace weft::events {
namespace {

constexpr std::string_view kMagic = "weft-log-index 1 bulk=";
// A log whose landmarks are more than 1/kMostLandmarks of its bytes gets
// no index (a run of tiny tests: all landmarks, nothing to skip).
constexpr uint64_t kMostLandmarks = 4;
// (Offsets past this are no file's: off_t is signed.)
constexpr uint64_t kMostOffset = uint64_t{1} << 62;
// Said in every index's header, which is what its reader goes by (the
// same as IsBulkType's).
constexpr std::string_view kBulk[] = {"assert", "attachment", "comment",     "deps",
                                      "diag",   "note",       "output",      "parse_error",
                                      "pragma", "subtest",    "timing"};

std::string Header() {
  std::string h(kMagic);
  for (size_t i = 0; i < std::size(kBulk); ++i) {
    if (i) h.push_back(',');
    h.append(kBulk[i]);
  }
  h.push_back('\n');
  return h;
}

template <class T>
bool Number(std::string_view s, T* v) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  return ec == std::errc() && end == s.data() + s.size() && !s.empty();
}

bool PreadAll(int fd, char* buf, size_t n, off_t at) {
  while (n) {
    ssize_t r = pread(fd, buf, n, at);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) errno = EIO;  // (shorter than it was)
    if (r <= 0) return false;
    buf += r;
    n -= static_cast<size_t>(r);
    at += r;
  }
  return true;
}

}  // namespace

std::string RealPath(int fd, const std::string& path) {
  char buf[PATH_MAX];
  ssize_t n = readlink(fmt::format("/proc/self/fd/{}", fd).c_str(), buf, sizeof buf - 1);
  if (n > 0 && buf[0] == '/') return std::string(buf, static_cast<size_t>(n));
  // (No /proc: the name, resolved now.)
  std::unique_ptr<char, decltype(&free)> real(realpath(path.c_str(), nullptr), &free);
  return real ? std::string(real.get()) : std::string();
}

std::string IndexPath(const std::string& log) {
  size_t slash = log.rfind('/');
  size_t name = slash == std::string::npos ? 0 : slash + 1;
  return log.substr(0, name) + "." + log.substr(name) + ".idx";
}

IndexWriter::~IndexWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void IndexWriter::Start(const std::string& log) {
  // (What was noted stays: lines queued before the log's file opened.)
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  log_ = log;
  path_ = IndexPath(log);
  unlink(path_.c_str());  // another log's, of the same name
  early_.clear();
  covered_ = written_ = 0;
  live_ = true;
}

void IndexWriter::GiveUp() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  unlink(path_.c_str());
  live_ = false;
  pending_.clear();
  std::vector<Landmark>().swap(early_);
}

void IndexWriter::AddRecord(uint64_t offset, std::string_view line) {
  char digits[24];
  auto end = std::to_chars(digits, digits + sizeof digits, offset).ptr;
  out_.append(digits, end);
  out_.push_back(' ');
  out_.append(line);
  out_.push_back('\n');
}

void IndexWriter::AddCovered(uint64_t covered) {
  char digits[24];
  auto end = std::to_chars(digits, digits + sizeof digits, covered).ptr;
  out_.append("= ");
  out_.append(digits, end);
  out_.push_back('\n');
}

bool IndexWriter::Begin(std::string* err) {
  int log = ::open(log_.c_str(), O_RDONLY | O_CLOEXEC);
  if (log < 0) {
    *err = fmt::format("cannot read {} back to index it: {}", log_, strerror(errno));
    return false;
  }
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd_ < 0) {
    *err = fmt::format("cannot write {}: {}", path_, strerror(errno));
    ::close(log);
    return false;
  }
  // The landmarks so far, read back a window of the log at a time (the
  // logger stays small: not its first 4 MiB in memory at once).
  constexpr uint64_t kWindow = 128 * 1024;
  std::string window;
  uint64_t from = 0;
  out_ = Header();
  bool ok = true;
  for (const auto& l : early_) {
    if (l.offset < from || l.offset + l.length > from + window.size()) {
      // (Up to the last landmark's end: the log holds that much.)
      from = l.offset;
      uint64_t end = early_.back().offset + early_.back().length;
      window.resize(std::min(std::max(kWindow, l.length), end - from));
      if (!PreadAll(log, window.data(), window.size(), static_cast<off_t>(from))) {
        *err = fmt::format("cannot read {} back to index it: {}", log_, strerror(errno));
        ok = false;
        break;
      }
    }
    AddRecord(l.offset, std::string_view(window).substr(l.offset - from, l.length));
    if (out_.size() >= kWindow) {
      written_ += out_.size();
      if (!WriteAll(fd_, out_)) {
        *err = fmt::format("cannot write {}: {}", path_, strerror(errno));
        ok = false;
        break;
      }
      out_.clear();
    }
  }
  ::close(log);
  std::vector<Landmark>().swap(early_);
  return ok;
}

bool IndexWriter::Commit(uint64_t base, std::string_view batch, std::string* err) {
  if (!live_) {
    pending_.clear();
    return true;
  }
  out_.clear();
  if (fd_ < 0) {
    for (const auto& l : pending_) early_.push_back({base + l.offset, l.length});
    pending_.clear();
    // A short log is scanned as fast as its index would be read.
    if (base + batch.size() < kIndexFrom) return true;
    // Nor is a log of landmarks worth a copy: a run of tiny tests.
    uint64_t landmarks = 0;
    for (const auto& l : early_) landmarks += l.length + 1;
    if (landmarks > (base + batch.size()) / kMostLandmarks) {
      live_ = false;
      std::vector<Landmark>().swap(early_);
      return true;
    }
    if (!Begin(err)) {
      *err += "; replays will read the whole log";
      GiveUp();
      return false;
    }
  }
  for (const auto& l : pending_) AddRecord(base + l.offset, batch.substr(l.offset, l.length));
  pending_.clear();
  if (out_.empty()) return true;  // (COVERED moves on with the next landmark)
  covered_ = base + batch.size();
  AddCovered(covered_);
  written_ += out_.size();
  if (written_ > covered_ / kMostLandmarks * 2) {
    // The run turned into one of landmarks after all: no index.
    GiveUp();
    return true;
  }
  if (WriteAll(fd_, out_)) return true;
  *err = fmt::format("cannot write {}: {}; replays will read the whole log", path_,
                     strerror(errno));
  GiveUp();
  return false;
}

void IndexWriter::Finish(uint64_t size) {
  // The whole log covered (its last batches may have had no landmark):
  // written last, so the index is newer than the log it covers.
  // (When that write fails, the index stays right as far as it goes: a
  // torn last line is no record.)
  if (fd_ >= 0 && covered_ < size) {
    out_.clear();
    AddCovered(size);
    WriteAll(fd_, out_);
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  live_ = false;
  pending_.clear();
  std::vector<Landmark>().swap(early_);
}

IndexedLines::~IndexedLines() { Unmap(); }

void IndexedLines::Unmap() {
  if (map_) munmap(map_, size_);
  map_ = nullptr;
  size_ = 0;
  lines_.clear();
  tail_.clear();
}

off_t IndexedLines::Load(int fd, const std::string& log, const std::vector<std::string>& types) {
  Unmap();
  if (types.empty()) return 0;
  for (const auto& t : types)
    if (t.empty()) return 0;
  // The index is beside the file "fd" is (.weft/latest is a link, which
  // may be pointed elsewhere meanwhile: the file open is the one read).
  std::string real = RealPath(fd, log);
  if (real.empty()) return 0;
  // (Not blocking on a FIFO of that name; not mapping what is no file.)
  int ifd = ::open(IndexPath(real).c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (ifd < 0) return 0;
  struct stat st, log_st;
  if (fstat(ifd, &st) == 0 && S_ISREG(st.st_mode) && fstat(fd, &log_st) == 0 &&
      st.st_size > 0) {
    // Mapped, not read: a few faults for the index's pages, no copy.
    void* map = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, ifd, 0);
    if (map != MAP_FAILED) {
      map_ = map;
      size_ = static_cast<size_t>(st.st_size);
    }
  }
  ::close(ifd);
  if (!map_) return 0;
  off_t covered = Check(fd, types, st, log_st);
  if (covered == 0) Unmap();
  return covered;
}

off_t IndexedLines::Check(int fd, const std::vector<std::string>& types, const struct stat& st,
                          const struct stat& log_st) {
  std::string_view index(static_cast<const char*>(map_), size_);
  std::string_view rest = index;
  auto next_line = [&](std::string_view* line) {
    size_t nl = rest.find('\n');
    if (nl == std::string_view::npos) return false;  // none, or torn
    *line = rest.substr(0, nl);
    rest.remove_prefix(nl + 1);
    return true;
  };
  std::string_view line;
  if (!next_line(&line) || !line.starts_with(kMagic)) return 0;
  // The types this index leaves out: none may be wanted.
  std::string_view bulk = line.substr(kMagic.size());
  while (!bulk.empty()) {
    size_t comma = bulk.find(',');
    std::string_view b = bulk.substr(0, comma);
    for (const auto& t : types)
      if (t == b) return 0;
    bulk.remove_prefix(comma == std::string_view::npos ? bulk.size() : comma + 1);
  }
  auto wanted = [&](std::string_view type) {
    for (const auto& t : types)
      if (t.size() == type.size() && t == type) return true;
    return false;
  };

  struct Record {
    uint64_t offset;
    std::string_view line;
  };
  std::vector<Record> records;
  size_t committed = 0, committed_lines = 0;  // before the last "="
  uint64_t covered = 0, next_free = 0;
  while (next_line(&line)) {
    if (line.starts_with("= ")) {
      uint64_t c;
      if (!Number(line.substr(2), &c) || c < next_free) break;
      covered = c;
      committed = records.size();
      committed_lines = lines_.size();
      continue;
    }
    size_t space = line.find(' ');
    uint64_t offset;
    if (space == std::string_view::npos || !Number(line.substr(0, space), &offset) ||
        offset < next_free || offset > kMostOffset)
      break;
    std::string_view l = line.substr(space + 1);
    next_free = offset + l.size() + 1;
    records.push_back({offset, l});
    if (wanted(TypeOf(l))) lines_.push_back(l);
  }
  records.resize(committed);
  lines_.resize(committed_lines);
  uint64_t size = static_cast<uint64_t>(log_st.st_size);
  if (covered == 0 || covered > size) return 0;
  char last;
  if (!PreadAll(fd, &last, 1, static_cast<off_t>(covered - 1)) || last != '\n') return 0;
  // A log that changed after its index was last written (not merely
  // grown: a logger killed leaves lines past COVERED) is read whole.
  auto newer = [](const struct timespec& a, const struct timespec& b) {
    return a.tv_sec != b.tv_sec ? a.tv_sec > b.tv_sec : a.tv_nsec > b.tv_nsec;
  };
  if (covered == size && newer(log_st.st_mtim, st.st_mtim)) return 0;
  // Some of its lines, byte for byte, with a line's end either side.
  constexpr size_t kSamples = 32;
  std::string buf;
  for (size_t k = 0; k <= kSamples && !records.empty(); ++k) {
    const Record& r = records[(records.size() - 1) * k / kSamples];
    uint64_t from = r.offset ? r.offset - 1 : 0;
    buf.resize(r.offset + r.line.size() + 1 - from);
    if (!PreadAll(fd, buf.data(), buf.size(), static_cast<off_t>(from)) ||
        (r.offset && buf[0] != '\n') || buf.back() != '\n' ||
        std::string_view(buf).substr(r.offset - from, r.line.size()) != r.line)
      return 0;
  }
  // The last lines, too near the mapping's end for their padding: copied.
  const char* padded = index.data() + index.size() - std::min(index.size(), kPadding);
  size_t near = lines_.size();
  while (near > 0 && lines_[near - 1].data() + lines_[near - 1].size() > padded) --near;
  size_t bytes = 0;
  for (size_t i = near; i < lines_.size(); ++i) bytes += lines_[i].size() + 1;
  tail_.reserve(bytes + kPadding);
  for (size_t i = near; i < lines_.size(); ++i) {
    size_t at = tail_.size();
    tail_.append(lines_[i]);
    tail_.push_back('\n');
    lines_[i] = std::string_view(tail_.data() + at, lines_[i].size());
  }
  return static_cast<off_t>(covered);
}

}  // namespace weft::events
