#include "services.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <weft/common/spawn.h>
#include <weft/common/util.h>
#include <weft/events/event.h>
#include <weft/events/line_reader.h>

#include <deque>

namespace weft::runner {

using events::JsonWriter;
using events::Key;
using events::WriteText;

namespace {
constexpr uint64_t kCheckMs = 50;     // readiness is looked at this often
constexpr size_t kTailLines = 200;    // output kept per service
constexpr size_t kLineMax = 2000;     // bytes kept of one line
}  // namespace

struct Services::Svc {
  Services* owner = nullptr;
  Service spec;
  pid_t pid = -1;
  uv_pipe_t pipe;
  events::LineReader reader{16 * 1024};
  std::deque<std::string> tail;
  ChildWatch watch;
  uv_timer_t check;
  int64_t started_us = 0;
  bool ready = false, exited = false, eof = false, stop_sent = false, ended = false;
  bool failed = false;
  std::string error;  // why it failed
  int status = 0;
  uint64_t retired_at = 0;
};

Services::Services(uv_loop_t* loop, events::EventWriter* out, std::string auditor, int lifeline)
    : loop_(loop), out_(out), auditor_(std::move(auditor)), lifeline_(lifeline) {}

Services::~Services() = default;

bool Services::active() const {
  for (const auto& s : started_)
    if (!s->ended) return true;
  return start_done_ != nullptr;
}

void Services::Start(const std::vector<Service>& list,
                     std::function<void(bool, std::string)> done) {
  list_ = list;
  for (auto& s : started_) {  // an earlier run's, ended (freed when closed)
    s->retired_at = tick_;
    retired_.push_back(std::move(s));
  }
  started_.clear();
  stopping_ = hurry_ = output_ = false;
  start_done_ = std::move(done);
  StartNext();
}

void Services::StartNext() {
  if (stopping_ || !start_done_) return;
  if (started_.size() == list_.size()) {
    auto done = std::move(start_done_);
    start_done_ = nullptr;
    done(true, "");
    return;
  }
  auto svc = std::make_unique<Svc>();
  Svc& s = *svc;
  s.owner = this;
  s.spec = list_[started_.size()];
  started_.push_back(std::move(svc));
  std::vector<std::string> argv = {auditor_, "--guard", "--lifeline-fd=3",
                                   fmt::format("--kill-grace={}", s.spec.stop_grace_s)};
  for (const auto& e : s.spec.env) argv.push_back("--env=" + e);
  argv.push_back("--");
  argv.insert(argv.end(), s.spec.command.begin(), s.spec.command.end());
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    s.ended = s.exited = s.eof = true;
    Failed(s, fmt::format("pipe: {}", strerror(errno)));
    return;
  }
  SpawnRequest req;
  req.argv = argv;
  req.stdout_fd = fds[1];
  req.stderr_fd = fds[1];
  req.extra_fds = {{lifeline_, 3}};
  req.new_session = true;  // a terminal's Ctrl-C is ours to pass on, in order
  req.block_stop_signals = true;
  int rc = Spawn(req, &s.pid);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    s.ended = s.exited = s.eof = true;
    Failed(s, fmt::format("cannot start {}: {}", auditor_, strerror(rc)));
    return;
  }
  s.started_us = events::NowMicros();
  uv_pipe_init(loop_, &s.pipe, 0);
  s.pipe.data = &s;
  uv_pipe_open(&s.pipe, fds[0]);
  uv_read_start(reinterpret_cast<uv_stream_t*>(&s.pipe), OnAlloc, OnRead);
  uv_timer_init(loop_, &s.check);
  s.check.data = &s;
  Svc* sp = &s;
  s.watch.Start(loop_, s.pid, [this, sp](int status, const struct rusage&) {
    sp->exited = true;
    sp->status = status;
    sp->watch.Close();
    if (!sp->ready && !stopping_)
      Failed(*sp, fmt::format("it exited ({}) before it was ready",
                              WIFSIGNALED(status) ? SignalName(WTERMSIG(status))
                                                  : fmt::format("status {}", WEXITSTATUS(status))));
    if (sp->eof) Ended(*sp);
  });
  {
    JsonWriter& w = out_->Begin("service.start");
    WriteText(w, "name", s.spec.name);
    Key(w, "pid");
    w.Int(s.pid);
    Key(w, "argv");
    w.StartArray();
    for (const auto& a : s.spec.command) events::TextValue(w, a);
    w.EndArray();
    out_->End();
  }
  if (s.spec.ready_port == 0 && s.spec.ready_file.empty() && s.spec.ready_line.empty()) {
    Ready(s, "started");
    return;
  }
  uv_timer_start(&s.check, OnCheck, 0, kCheckMs);
}

// Looks at a port or a file, and at the clock.
void Services::OnCheck(uv_timer_t* t) {
  Svc& s = *static_cast<Svc*>(t->data);
  Services* self = s.owner;
  if (s.ready || s.exited) return;
  if (s.spec.ready_port > 0) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(s.spec.ready_port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool up = fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    if (fd >= 0) close(fd);
    if (up) return self->Ready(s, fmt::format("port {} accepts", s.spec.ready_port));
  } else if (!s.spec.ready_file.empty()) {
    if (access(s.spec.ready_file.c_str(), F_OK) == 0)
      return self->Ready(s, fmt::format("{} exists", s.spec.ready_file));
  }
  if (events::NowMicros() - s.started_us > static_cast<int64_t>(s.spec.ready_timeout_s * 1e6)) {
    std::string what = s.spec.ready_port > 0    ? fmt::format("port {}", s.spec.ready_port)
                       : !s.spec.ready_file.empty() ? s.spec.ready_file
                                                    : fmt::format("\"{}\"", s.spec.ready_line);
    self->Failed(s, fmt::format("not ready ({}) after {}s", what, s.spec.ready_timeout_s));
  }
}

void Services::Ready(Svc& s, std::string how) {
  if (s.ready) return;
  s.ready = true;
  uv_timer_stop(&s.check);
  JsonWriter& w = out_->Begin("service.ready");
  WriteText(w, "name", s.spec.name);
  WriteText(w, "how", how);
  Key(w, "after_us");
  w.Int64(events::NowMicros() - s.started_us);
  out_->End();
  StartNext();
}

// Not ready: the run cannot go on (the caller bails out), and this one
// is stopped with the others.
void Services::Failed(Svc& s, std::string why) {
  if (s.failed) return;
  s.failed = true;
  if (!s.ended) uv_timer_stop(&s.check);
  auto done = std::move(start_done_);
  start_done_ = nullptr;
  if (done) done(false, fmt::format("service {}: {}", s.spec.name, why));
  // (Its service.end, with its output, says more when it has ended.)
  s.error = std::move(why);
}

void Services::OnAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  Svc& s = *static_cast<Svc*>(h->data);
  size_t avail;
  buf->base = s.reader.Space(16 * 1024, &avail);
  buf->len = avail;
}

void Services::OnRead(uv_stream_t* h, ssize_t n, const uv_buf_t*) {
  Svc& s = *static_cast<Svc*>(h->data);
  if (n > 0) s.reader.Commit(static_cast<size_t>(n));
  if (n < 0) s.reader.Finish();
  std::string_view line;
  while (s.reader.Next(&line)) {
    if (!s.ready && !s.failed && !s.spec.ready_line.empty() &&
        line.find(s.spec.ready_line) != std::string_view::npos)
      s.owner->Ready(s, fmt::format("its output said \"{}\"", s.spec.ready_line));
    if (s.tail.size() >= kTailLines) s.tail.pop_front();
    s.tail.emplace_back(line.substr(0, kLineMax));
  }
  if (n < 0) {
    s.eof = true;
    uv_read_stop(h);
    if (s.exited) s.owner->Ended(s);
  }
}

void Services::Stop(bool output, std::function<void()> done) {
  stopping_ = true;
  output_ = output;
  start_done_ = nullptr;  // a start going on is over
  stop_done_ = std::move(done);
  StopNext();
}

void Services::Hurry() {
  hurry_ = true;
  for (auto& s : started_)
    if (s->stop_sent && !s->exited && s->pid > 0) kill(s->pid, SIGTERM);  // a second: KILL
}

// The last one not yet ended is stopped; the one before it when it has.
void Services::StopNext() {
  for (auto it = started_.rbegin(); it != started_.rend(); ++it) {
    Svc& s = **it;
    if (s.ended) continue;
    if (!s.stop_sent) {
      s.stop_sent = true;
      uv_timer_stop(&s.check);
      if (!s.exited && s.pid > 0) {
        kill(s.pid, SIGTERM);
        if (hurry_) kill(s.pid, SIGTERM);
      }
    }
    return;  // wait for it
  }
  if (stop_done_) {
    auto done = std::move(stop_done_);
    stop_done_ = nullptr;
    done();
  }
}

void Services::Ended(Svc& s) {
  if (s.ended) return;
  s.ended = true;
  uv_timer_stop(&s.check);
  bool during_run = !s.stop_sent && !s.failed;
  // Its output goes into the log when the run failed, when it failed, or
  // when it ended on its own in the middle of the run.
  EndEvent(s, output_ || s.failed || during_run,
           s.failed ? s.error : during_run ? "it ended during the run" : "");
  uv_close(reinterpret_cast<uv_handle_t*>(&s.pipe), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&s.check), nullptr);
  if (stopping_) StopNext();
}

void Services::EndEvent(Svc& s, bool output, std::string_view error) {
  JsonWriter& w = out_->Begin("service.end");
  WriteText(w, "name", s.spec.name);
  Key(w, "exit");
  w.StartObject();
  // (Its guard ends as it did: the same exit code, or the same signal.)
  Key(w, "code");
  if (WIFEXITED(s.status))
    w.Int(WEXITSTATUS(s.status));
  else
    w.Null();
  Key(w, "signal");
  if (WIFSIGNALED(s.status))
    events::String(w, SignalName(WTERMSIG(s.status)));
  else
    w.Null();
  w.EndObject();
  Key(w, "stopped");
  w.Bool(s.stop_sent);
  if (!error.empty()) WriteText(w, "error", error);
  Key(w, "duration_us");
  w.Int64(events::NowMicros() - s.started_us);
  if (output) {
    Key(w, "output");
    w.StartArray();
    for (const auto& line : s.tail) events::TextValue(w, line);
    w.EndArray();
  }
  out_->End();
}

void Services::Sweep() {
  ++tick_;
  // Freed two turns after: their handles' close callbacks have run.
  std::erase_if(retired_, [&](const std::unique_ptr<Svc>& s) { return s->retired_at + 1 < tick_; });
  // Ended ones from an earlier run: their handles closed on an earlier turn.
  if (!stopping_ || active()) return;
  for (auto& s : started_) {
    s->retired_at = tick_;
    retired_.push_back(std::move(s));
  }
  started_.clear();
}

}  // namespace weft::runner
