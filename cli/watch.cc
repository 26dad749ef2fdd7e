#include "watch.h"

#include <errno.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>
#include <weft/common/cli.h>
#include <weft/common/util.h>
#include <weft/events/event.h>
#include <weft/events/line_reader.h>
#include <weft/events/writer.h>

#include <filesystem>
#include <memory>
#include <set>
#include <thread>

#include "chain.h"
#include "server.h"

namespace weft::cli {
namespace {

constexpr const char* kProg = "weft";
constexpr size_t kMaxDirs = 20000;

// Directories not worth watching: hidden ones (.git, .weft), node_modules,
// and build trees (they change on every build, not on an edit).
bool Skipped(const std::filesystem::path& dir) {
  std::string name = dir.filename().string();
  if (name.size() > 1 && name[0] == '.') return true;
  if (name == "node_modules" || name == "__pycache__") return true;
  std::error_code ec;
  for (const char* marker : {"CACHEDIR.TAG", "meson-private", "CMakeCache.txt"})
    if (std::filesystem::exists(dir / marker, ec)) return true;
  return false;
}

// A file name an editor writes on the way to saving (not the save itself).
bool Scratch(std::string_view name) {
  return name.empty() || name[0] == '.' || name.back() == '~' || name.ends_with(".swp") ||
         name.ends_with(".swx") || name == "4913" || name.starts_with("#");
}

class Watcher {
 public:
  Watcher(const WatchOptions& o, int control_fd, int keys_fd)
      : o_(o), control_fd_(control_fd), keys_fd_(keys_fd) {}

  void Start(uv_loop_t* loop) {
    loop_ = loop;
    uv_timer_init(loop_, &debounce_);
    debounce_.data = this;
    uv_async_init(loop_, &done_, OnDone);
    done_.data = this;
    uv_pipe_init(loop_, &keys_, 0);
    keys_.data = this;
    if (uv_pipe_open(&keys_, keys_fd_) == 0)
      uv_read_start(reinterpret_cast<uv_stream_t*>(&keys_), OnAlloc, OnKeys);
    AddTree(".");
    if (dirs_ >= kMaxDirs)
      Warning(kProg, fmt::format("watching the first {} directories only", kMaxDirs));
    Request({});
  }
  uv_async_t* done() { return &done_; }

 private:
  void AddTree(const std::filesystem::path& root) {
    AddDir(root);
    std::error_code ec;
    std::filesystem::recursive_directory_iterator it(
        root, std::filesystem::directory_options::skip_permission_denied, ec);
    for (; !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      if (!it->is_directory(ec) || it->is_symlink(ec)) continue;
      if (Skipped(it->path())) {
        it.disable_recursion_pending();
        continue;
      }
      if (dirs_ >= kMaxDirs) break;
      AddDir(it->path());
    }
  }

  void AddDir(const std::filesystem::path& dir) {
    std::string path = dir.lexically_normal().string();
    if (path.ends_with('/')) path.pop_back();
    if (path.empty()) path = ".";
    if (watched_.count(path) || dirs_ >= kMaxDirs) return;
    auto* h = new uv_fs_event_t;
    uv_fs_event_init(loop_, h);
    h->data = this;
    if (uv_fs_event_start(h, OnEvent, path.c_str(), 0) != 0) {
      uv_close(reinterpret_cast<uv_handle_t*>(h), [](uv_handle_t* x) {
        delete reinterpret_cast<uv_fs_event_t*>(x);
      });
      return;
    }
    watched_.insert(path);
    handles_.push_back(h);
    ++dirs_;
  }

  static void OnEvent(uv_fs_event_t* h, const char* filename, int, int status) {
    auto* self = static_cast<Watcher*>(h->data);
    if (status < 0 || !filename || self->closing_) return;
    if (Scratch(filename)) return;
    char dir[4096];
    size_t len = sizeof dir;
    if (uv_fs_event_getpath(h, dir, &len) != 0) return;
    std::filesystem::path path = std::filesystem::path(std::string(dir, len)) / filename;
    std::string rel = path.lexically_normal().string();
    if (rel.starts_with("./")) rel = rel.substr(2);
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) {
      // A new directory: watched too (a test file may come in it).
      if (!Skipped(path)) self->AddTree(path);
      return;
    }
    self->changed_.insert(rel);
    uv_timer_start(&self->debounce_, OnDebounced, static_cast<uint64_t>(self->o_.debounce_ms),
                   0);
  }

  static void OnDebounced(uv_timer_t* t) {
    auto* self = static_cast<Watcher*>(t->data);
    std::vector<std::string> files(self->changed_.begin(), self->changed_.end());
    self->changed_.clear();
    self->Request(files);
  }

  // A run request to the runner: the tests among "changed", or all.
  void Request(const std::vector<std::string>& changed) {
    if (closing_) return;
    Send(RunRequest("", ".", o_.run_args, changed));
  }

  void Send(const std::string& line) {
    if (control_fd_ < 0) return;
    if (!events::WriteAll(control_fd_, line + "\n")) {
      close(control_fd_);
      control_fd_ = -1;
    }
  }

  static void OnAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
    auto* self = static_cast<Watcher*>(h->data);
    size_t avail;
    buf->base = self->reader_.Space(4096, &avail);
    buf->len = avail;
  }

  // The renderer's keys: q (a stop line) ends the watch.
  static void OnKeys(uv_stream_t* h, ssize_t n, const uv_buf_t*) {
    auto* self = static_cast<Watcher*>(h->data);
    if (n > 0) self->reader_.Commit(static_cast<size_t>(n));
    if (n < 0) {
      uv_read_stop(h);
      return;
    }
    std::string_view line;
    while (self->reader_.Next(&line)) {
      if (events::TypeOf(line) == "stop" && !self->quitting_) {
        self->quitting_ = true;
        self->Send(R"({"type":"shutdown","grace_s":0})");
      } else if (events::TypeOf(line) == "stop") {
        self->Send(R"({"type":"stop"})");
      }
    }
  }

  // The chain has ended: every handle closes, and the loop with them.
  static void OnDone(uv_async_t* a) {
    auto* self = static_cast<Watcher*>(a->data);
    self->closing_ = true;
    for (auto* h : self->handles_)
      uv_close(reinterpret_cast<uv_handle_t*>(h), [](uv_handle_t* x) {
        delete reinterpret_cast<uv_fs_event_t*>(x);
      });
    self->handles_.clear();
    uv_close(reinterpret_cast<uv_handle_t*>(&self->debounce_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&self->keys_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(a), nullptr);
    if (self->control_fd_ >= 0) close(self->control_fd_);
    self->control_fd_ = -1;
  }

  const WatchOptions& o_;
  int control_fd_, keys_fd_;
  uv_loop_t* loop_ = nullptr;
  uv_timer_t debounce_;
  uv_async_t done_;
  uv_pipe_t keys_;
  events::LineReader reader_{4096};
  std::vector<uv_fs_event_t*> handles_;
  std::set<std::string> watched_;
  std::set<std::string> changed_;
  size_t dirs_ = 0;
  bool closing_ = false, quitting_ = false;
};

}  // namespace

int Watch(const WatchOptions& o) {
  // The runner's control pipe (we write), the renderer's keys (we read).
  int control[2], keys[2];
  if (pipe2(control, O_CLOEXEC) != 0 || pipe2(keys, O_CLOEXEC) != 0) {
    Error(kProg, fmt::format("pipe: {}", strerror(errno)));
    return kExitHarness;
  }
  std::string dir = SelfDir();
  std::vector<std::string> runner = {dir + "/weft-runner", "--serve", "--control=/dev/fd/3",
                                     fmt::format("--parent-pid={}", getpid())};
  std::vector<std::string> logger = {dir + "/weft-logger"};
  if (o.zstd) logger.push_back("--zstd");
  std::vector<std::string> render = {dir + "/weft-render-term", "--control=/dev/fd/3"};
  render.insert(render.end(), o.render.begin(), o.render.end());
  ChainFds fds = {{{control[0], 3}}, {}, {}, {{keys[1], 3}}};

  // The chain's signals are RunChain's (its thread waits for them); this
  // thread only watches files.
  sigset_t all, old;
  sigemptyset(&all);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGCHLD}) sigaddset(&all, s);
  pthread_sigmask(SIG_BLOCK, &all, &old);

  uv_loop_t* loop = uv_default_loop();
  Watcher watcher(o, control[1], keys[0]);
  watcher.Start(loop);
  ChainResult r;
  std::thread chain([&] {
    r = RunChain({runner, {dir + "/weft-overlord", "--serve"}, logger, render}, 0, fds);
    uv_async_send(watcher.done());
  });
  uv_run(loop, UV_RUN_DEFAULT);
  chain.join();
  uv_loop_close(loop);
  close(control[0]);
  close(keys[1]);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (!r.error.empty()) {
    Error(kProg, r.error);
    return kExitHarness;
  }
  for (size_t i = 0; i < r.codes.size(); ++i)
    if (r.signaled[i] && !r.interrupted) return kExitHarness;
  if (r.interrupted) return kExitInterrupted;
  for (int code : r.codes)
    if (code == kExitHarness) return kExitHarness;
  return 0;
}

}  // namespace weft::cli
