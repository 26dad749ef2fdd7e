#include "scoreboard.h"

#include <dirent.h>
#include <sys/stat.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

namespace weft::scoreboard {

namespace bip = boost::interprocess;

namespace {

constexpr uint32_t kMagic = 0x77656674;  // "weft"
constexpr uint32_t kVersion = 1;

template <size_t N>
void Copy(char (&to)[N], std::string_view from) {
  size_t n = std::min(from.size(), N - 1);
  std::memcpy(to, from.data(), n);
  to[n] = '\0';
}

// The segment: plain data under a sequence counter (odd while the writer
// is changing it; a reader copies it and retries until it read an even,
// unchanged counter). No lock a dead writer could leave held.
struct Layout {
  uint32_t magic;
  uint32_t version;
  std::atomic<uint64_t> seq;
  int32_t pid;
  uint64_t pid_start;  // the overlord's start time (/proc): pid reuse
  char run[128], host[128], cwd[512];
  int64_t start_us, updated_us;
  int64_t planned, P, F, A, R, T, flaky, cancelled, timed_out;
  int32_t ended;
  int64_t running_total;
  uint32_t nrunning;
  struct Slot {
    int64_t job;
    int64_t start_us;
    char name[240];
  } running[kMaxRunning];
};
static_assert(std::atomic<uint64_t>::is_always_lock_free);

// Field 22 of /proc/PID/stat: when the process started (clock ticks since
// boot). 0 when the process is gone.
uint64_t StartTime(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return 0;
  size_t close = line.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  // Fields from 3 (state) on; the start time is field 22.
  for (int i = 3; i < 22 && rest >> field; ++i) {
  }
  uint64_t start = 0;
  rest >> start;
  return start;
}

}  // namespace

std::string SegmentName(std::string_view run) {
  std::string name = "weft-";
  for (char c : run) name.push_back(c == '/' ? '_' : c);
  return name;
}

struct Board::Impl {
  std::string name;
  bip::shared_memory_object shm;
  bip::mapped_region region;
  Layout* b = nullptr;
  struct Begin {
    Layout* b;
    explicit Begin(Layout* l) : b(l) { b->seq.fetch_add(1, std::memory_order_acq_rel); }
    ~Begin() { b->seq.fetch_add(1, std::memory_order_release); }
  };
};

Board::Board(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Board::~Board() {
  if (impl_) bip::shared_memory_object::remove(impl_->name.c_str());
}

std::unique_ptr<Board> Board::Create(std::string_view run, std::string_view host,
                                     std::string_view cwd, int64_t start_us,
                                     std::string* err) {
  auto impl = std::make_unique<Impl>();
  impl->name = SegmentName(run);
  try {
    bip::shared_memory_object::remove(impl->name.c_str());
    impl->shm = bip::shared_memory_object(bip::create_only, impl->name.c_str(),
                                          bip::read_write, bip::permissions(0644));
    impl->shm.truncate(sizeof(Layout));
    impl->region = bip::mapped_region(impl->shm, bip::read_write);
  } catch (const bip::interprocess_exception& e) {
    *err = std::string("cannot make the scoreboard /dev/shm/") + impl->name + ": " + e.what();
    bip::shared_memory_object::remove(impl->name.c_str());
    return nullptr;
  }
  Layout* b = new (impl->region.get_address()) Layout();
  b->seq.store(1);
  b->version = kVersion;
  b->pid = getpid();
  b->pid_start = StartTime(getpid());
  Copy(b->run, run);
  Copy(b->host, host);
  Copy(b->cwd, cwd);
  b->start_us = b->updated_us = start_us;
  b->magic = kMagic;
  b->seq.store(2, std::memory_order_release);
  impl->b = b;
  return std::unique_ptr<Board>(new Board(std::move(impl)));
}

void Board::Counts(int64_t planned, int64_t P, int64_t F, int64_t A, int64_t R, int64_t T,
                   int64_t flaky, int64_t cancelled, int64_t timed_out, int64_t now_us) {
  Layout* b = impl_->b;
  Impl::Begin write(b);
  b->planned = planned;
  b->P = P, b->F = F, b->A = A, b->R = R, b->T = T;
  b->flaky = flaky, b->cancelled = cancelled, b->timed_out = timed_out;
  b->updated_us = now_us;
}

void Board::JobStarted(int64_t job, std::string_view name, int64_t start_us) {
  Layout* b = impl_->b;
  Impl::Begin write(b);
  ++b->running_total;
  if (b->nrunning >= kMaxRunning) return;  // counted, not listed
  auto& slot = b->running[b->nrunning++];
  slot.job = job;
  slot.start_us = start_us;
  Copy(slot.name, name);
}

void Board::JobEnded(int64_t job) {
  Layout* b = impl_->b;
  Impl::Begin write(b);
  if (b->running_total > 0) --b->running_total;
  for (uint32_t i = 0; i < b->nrunning; ++i) {
    if (b->running[i].job != job) continue;
    // Keep the order (oldest first): shift the rest down.
    std::memmove(&b->running[i], &b->running[i + 1],
                 (b->nrunning - i - 1) * sizeof(Layout::Slot));
    --b->nrunning;
    return;
  }
}

void Board::Ended(int64_t now_us) {
  Layout* b = impl_->b;
  Impl::Begin write(b);
  b->ended = 1;
  b->updated_us = now_us;
}

std::vector<Snapshot> ReadAll(std::vector<Stale>* stale) {
  std::vector<Snapshot> all;
  DIR* dir = opendir("/dev/shm");
  if (!dir) return all;
  std::vector<std::string> names;
  while (dirent* e = readdir(dir))
    if (std::strncmp(e->d_name, "weft-", 5) == 0) names.emplace_back(e->d_name);
  closedir(dir);
  auto remove = [&](const std::string& name, std::string why) {
    // (Another user's, in the sticky /dev/shm: not ours to remove.)
    if (bip::shared_memory_object::remove(name.c_str()) && stale)
      stale->push_back({name, std::move(why)});
  };
  // An overlord makes its board in microseconds: one still unreadable a
  // minute after it was last changed never will be.
  auto long_unreadable = [](const std::string& name) {
    struct stat st;
    return stat(("/dev/shm/" + name).c_str(), &st) == 0 && time(nullptr) - st.st_mtime > 60;
  };
  auto owner_gone = [](int32_t pid, uint64_t pid_start) {
    // (EPERM: alive, another user's; the pid reused by another process:
    // gone.)
    bool alive = kill(pid, 0) == 0 || errno == EPERM;
    return !alive || StartTime(pid) != pid_start;
  };
  for (const auto& name : names) {
    Layout copy;
    bool read = false;
    int32_t pid = 0;
    uint64_t pid_start = 0;
    try {
      bip::shared_memory_object shm(bip::open_only, name.c_str(), bip::read_only);
      bip::offset_t size = 0;
      if (!shm.get_size(size)) continue;
      constexpr bip::offset_t kHead = 2 * sizeof(uint32_t);  // magic, version
      if (size < kHead) {
        if (long_unreadable(name)) remove(name, "cut short, not a scoreboard");
        continue;
      }
      // The head alone when the segment is too short to be one of our
      // boards: another weft's, with a layout of another size, is left alone.
      bool whole = size >= static_cast<bip::offset_t>(sizeof(Layout));
      bip::mapped_region region(shm, bip::read_only, 0, whole ? 0 : kHead);
      const auto* b = static_cast<const Layout*>(region.get_address());
      if (b->magic != kMagic) {
        if (long_unreadable(name))
          remove(name, whole ? "not a weft scoreboard" : "cut short, not a scoreboard");
        continue;
      }
      if (b->version != kVersion || !whole) continue;  // another weft's: not ours to judge
      // Its owner, written once at the start and never changed.
      pid = b->pid;
      pid_start = b->pid_start;
      for (int tries = 0; tries < 1000 && !read; ++tries) {
        uint64_t before = b->seq.load(std::memory_order_acquire);
        if (before & 1) continue;
        std::memcpy(static_cast<void*>(&copy), static_cast<const void*>(b), sizeof copy);
        std::atomic_thread_fence(std::memory_order_acquire);
        read = b->seq.load(std::memory_order_relaxed) == before;
      }
    } catch (const bip::interprocess_exception&) {
      continue;
    }
    // Its overlord gone (died even in the middle of an update): stale.
    if (owner_gone(pid, pid_start)) {
      remove(name, "its run's weft-overlord is gone");
      continue;
    }
    if (!read) continue;  // being written: shown next time
    Snapshot s;
    s.run = copy.run;
    s.host = copy.host;
    s.cwd = copy.cwd;
    s.pid = copy.pid;
    s.start_us = copy.start_us;
    s.updated_us = copy.updated_us;
    s.planned = copy.planned;
    s.P = copy.P, s.F = copy.F, s.A = copy.A, s.R = copy.R, s.T = copy.T;
    s.flaky = copy.flaky, s.cancelled = copy.cancelled, s.timed_out = copy.timed_out;
    s.ended = copy.ended != 0;
    s.running_total = copy.running_total;
    for (uint32_t i = 0; i < copy.nrunning && i < kMaxRunning; ++i)
      s.running.push_back({copy.running[i].job, copy.running[i].start_us, copy.running[i].name});
    all.push_back(std::move(s));
  }
  std::sort(all.begin(), all.end(),
            [](const Snapshot& a, const Snapshot& b) { return a.start_us < b.start_us; });
  return all;
}

}  // namespace weft::scoreboard
