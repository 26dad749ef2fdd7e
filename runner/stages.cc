#include "stages.h"

#include <errno.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <weft/common/spawn.h>
#include <weft/common/util.h>
#include <weft/events/event.h>
#include <weft/events/line_reader.h>

#include <algorithm>
#include <filesystem>

namespace weft::runner {

using events::JsonWriter;
using events::Key;
using events::WriteText;

struct Stages::Proc {
  Stages* owner = nullptr;
  Stage spec;
  pid_t pid = -1;
  int stdin_w = -1;  // its stdin: closed, it ends
  uv_pipe_t out;
  bool out_open = false;
  events::LineReader reader{64 * 1024};
  events::Fields fields;
  ChildWatch watch;
  std::string socket;
  std::vector<std::string> preloaded;  // absolute paths
  // kWaiting: built on a stage not ready yet.
  enum State { kWaiting, kStarting, kReady, kFailed, kGone } state = kStarting;
  int64_t started_us = 0;
};

Stages::Stages(uv_loop_t* loop, events::EventWriter* out, std::string script_dir)
    : loop_(loop), out_(out), script_dir_(std::move(script_dir)) {}

Stages::~Stages() {
  StopAll();
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

const Stage* Stages::StageOf(const JobSpec& job) const {
  for (const auto& st : config_)
    for (const auto& glob : st.paths)
      if (GlobMatch(glob, job.name)) return &st;
  return nullptr;
}

std::string Stages::SocketFor(const JobSpec& job) const {
  const Stage* st = StageOf(job);
  if (!st) return "";
  // Taint mode is chosen when perl starts: a fork of a stage cannot.
  for (const auto& a : job.argv)
    if (a == "-T" || a == "-t") return "";
  for (const auto& p : procs_) {
    if (p->spec.name != st->name) continue;
    if (p->state != Proc::kReady) return "";
    // One built on another is not our child: is it still there?
    if (!p->spec.from.empty() && kill(p->pid, 0) != 0) {
      p->state = Proc::kGone;
      return "";
    }
    return p->socket;
  }
  return "";
}

void Stages::Ensure(const std::vector<Stage>& config, const std::vector<const JobSpec*>& jobs,
                    std::function<void()> done) {
  config_ = config;
  done_ = std::move(done);
  // The stages some job uses, and those they are built on.
  std::vector<std::string> needed;
  for (const JobSpec* j : jobs)
    if (const Stage* st = StageOf(*j)) {
      if (std::find(needed.begin(), needed.end(), st->name) == needed.end())
        needed.push_back(st->name);
      if (!st->from.empty() && std::find(needed.begin(), needed.end(), st->from) == needed.end())
        needed.push_back(st->from);
    }
  for (const Stage& st : config_) {
    if (std::find(needed.begin(), needed.end(), st.name) == needed.end()) continue;
    auto it = std::find_if(procs_.begin(), procs_.end(),
                           [&](const auto& p) { return p->spec.name == st.name; });
    // Up, or coming; one that failed or ended is tried again.
    if (it != procs_.end() && (*it)->state != Proc::kGone && (*it)->state != Proc::kFailed)
      continue;
    if (it != procs_.end()) {
      retired_.push_back(std::move(*it));
      procs_.erase(it);
    }
    Launch(st);
  }
  Settled();
}

// "done" once no stage is still starting.
void Stages::Settled() {
  for (const auto& p : procs_)
    if (p->state == Proc::kStarting || p->state == Proc::kWaiting) return;
  if (done_) {
    auto done = std::move(done_);
    done_ = nullptr;
    done();
  }
}

void Stages::Launch(const Stage& spec) {
  auto proc = std::make_unique<Proc>();
  Proc& p = *proc;
  p.owner = this;
  p.spec = spec;
  procs_.push_back(std::move(proc));
  auto fail = [&](std::string why) {
    p.state = Proc::kFailed;
    JsonWriter& w = out_->Begin("stage.end");
    WriteText(w, "name", p.spec.name);
    WriteText(w, "error", why);
    out_->End();
  };
  if (dir_.empty()) {
    const char* tmp = getenv("TMPDIR");
    std::string tmpl = fmt::format("{}/weft-stages-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(tmpl.data())) dir_ = tmpl;
  }
  if (dir_.empty()) return fail(fmt::format("cannot make a directory for its socket: {}",
                                            strerror(errno)));
  // A socket of its own: one replaced by a reload may still be draining.
  p.socket = fmt::format("{}/{}-{}.sock", dir_, spec.name, ++serial_);
  if (!spec.from.empty()) {
    Proc* base = nullptr;
    for (auto& b : procs_)
      if (b->spec.name == spec.from) base = b.get();
    if (!base || base->state == Proc::kFailed || base->state == Proc::kGone)
      return fail(fmt::format("the stage it is built on ({}) is not running", spec.from));
    p.state = Proc::kWaiting;
    if (base->state == Proc::kReady) Fork(*base, p);
    return;
  }
  std::vector<std::string> argv;
  if (!spec.command.empty()) {
    argv = spec.command;
    for (const std::string& a : {std::string("--socket"), p.socket, std::string("--name"), spec.name})
      argv.push_back(a);
    for (const auto& d : spec.inc) argv.push_back("--inc=" + d);
    for (const auto& m : spec.preload) argv.push_back("--preload=" + m);
  } else if (spec.lang == "python") {
    argv = {"python3", script_dir_ + "/weft-stage.py", "--socket", p.socket, "--name", spec.name};
    for (const auto& d : spec.inc) argv.push_back("--path=" + d);
    for (const auto& m : spec.preload) argv.push_back("--import=" + m);
  } else {
    argv = {"perl", script_dir_ + "/weft-stage.pl", "--socket", p.socket, "--name", spec.name};
    for (const auto& d : spec.inc) argv.push_back("-I" + d);
    for (const auto& m : spec.preload) argv.push_back("-M" + m);
  }
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0) return fail(fmt::format("pipe: {}", strerror(errno)));
  if (pipe2(out, O_CLOEXEC) != 0) {
    close(in[0]);
    close(in[1]);
    return fail(fmt::format("pipe: {}", strerror(errno)));
  }
  SpawnRequest req;
  req.argv = argv;
  req.stdin_fd = in[0];
  req.stdout_fd = out[1];
  req.new_session = true;  // a terminal's Ctrl-C is not for it
  int rc = Spawn(req, &p.pid);
  close(in[0]);
  close(out[1]);
  if (rc != 0) {
    close(in[1]);
    close(out[0]);
    return fail(fmt::format("cannot start {}: {}", argv[0], strerror(rc)));
  }
  p.stdin_w = in[1];
  p.started_us = events::NowMicros();
  uv_pipe_init(loop_, &p.out, 0);
  p.out.data = &p;
  uv_pipe_open(&p.out, out[0]);
  p.out_open = true;
  uv_read_start(reinterpret_cast<uv_stream_t*>(&p.out), OnAlloc, OnRead);
  Proc* pp = &p;
  p.watch.Start(loop_, p.pid, [this, pp](int status, const struct rusage&) {
    pp->watch.Close();
    bool was_starting = pp->state == Proc::kStarting;
    if (pp->state != Proc::kGone && pp->state != Proc::kFailed) {
      JsonWriter& w = out_->Begin("stage.end");
      WriteText(w, "name", pp->spec.name);
      Key(w, "pid");
      w.Int(pp->pid);
      WriteText(w, "error",
                fmt::format("it ended ({}){}",
                            WIFSIGNALED(status) ? SignalName(WTERMSIG(status))
                                                : fmt::format("exit code {}", WEXITSTATUS(status)),
                            was_starting ? " before it was ready" : ""));
      out_->End();
      pp->state = was_starting ? Proc::kFailed : Proc::kGone;
    }
    if (pp->stdin_w >= 0) close(pp->stdin_w);
    pp->stdin_w = -1;
    pp->pid = -1;  // reaped: never signalled again
    if (was_starting) Settled();
  });
  JsonWriter& w = out_->Begin("stage.start");
  WriteText(w, "name", spec.name);
  WriteText(w, "lang", spec.lang);
  Key(w, "pid");
  w.Int(p.pid);
  Key(w, "preload");
  w.StartArray();
  for (const auto& m : spec.preload) events::TextValue(w, m);
  w.EndArray();
  out_->End();
}

void Stages::OnAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  Proc& p = *static_cast<Proc*>(h->data);
  size_t avail;
  buf->base = p.reader.Space(64 * 1024, &avail);
  buf->len = avail;
}

void Stages::OnRead(uv_stream_t* h, ssize_t n, const uv_buf_t*) {
  Proc& p = *static_cast<Proc*>(h->data);
  if (n > 0) p.reader.Commit(static_cast<size_t>(n));
  if (n < 0) p.reader.Finish();
  std::string_view line;
  while (p.reader.Next(&line)) p.owner->OnLine(p, line);
  if (n < 0 && p.out_open) {
    p.out_open = false;
    uv_read_stop(h);
    uv_close(reinterpret_cast<uv_handle_t*>(h), nullptr);
  }
}

// The stage's word: ready (with what it loaded), or why it cannot be.
void Stages::OnLine(Proc& from, std::string_view line) {
  if (!from.fields.Load(events::Event(line))) return;
  // A stage built on this one speaks through its stdout too: by name.
  Proc* target = &from;
  if (auto name = from.fields.Str("name"); name && *name != from.spec.name) {
    target = nullptr;
    for (auto& q : procs_)
      if (q->spec.name == *name && q->spec.from == from.spec.name) target = q.get();
    if (!target) return;
  }
  Proc& p = *target;
  p.fields.Load(events::Event(line));
  if (p.state != Proc::kStarting) return;
  std::string_view t = p.fields.Str("t").value_or("");
  if (t == "ready") {
    p.state = Proc::kReady;
    if (!p.spec.from.empty()) p.pid = static_cast<pid_t>(p.fields.Int("pid").value_or(-1));
    p.fields.StrArray("preloaded", &p.preloaded);
    // (Relative ones are from our directory, which is the stage's.)
    std::error_code ec;
    for (auto& f : p.preloaded)
      f = std::filesystem::absolute(f, ec).lexically_normal().string();
    JsonWriter& w = out_->Begin("stage.ready");
    WriteText(w, "name", p.spec.name);
    Key(w, "pid");
    w.Int(p.pid);
    Key(w, "load_ms");
    w.Int64(p.fields.Int("load_ms").value_or(-1));
    Key(w, "files");
    w.Int64(static_cast<int64_t>(p.preloaded.size()));
    out_->End();
    // Those built on it can be made now.
    for (auto& q : procs_)
      if (q->state == Proc::kWaiting && q->spec.from == p.spec.name) Fork(p, *q);
    Settled();
  } else if (t == "error") {
    std::string why(p.fields.Str("message").value_or("it failed"));
    Stop(p, "");
    p.state = Proc::kFailed;
    JsonWriter& w = out_->Begin("stage.end");
    WriteText(w, "name", p.spec.name);
    Key(w, "pid");
    w.Int(p.pid);
    WriteText(w, "error", why);
    out_->End();
    Settled();
  }
}

// Its stdin closes (it ends, and so do its children) and a TERM follows.
void Stages::Stop(Proc& p, std::string_view why, bool drain) {
  if (p.state == Proc::kGone) return;
  bool was_starting = p.state == Proc::kStarting || p.state == Proc::kWaiting;
  p.state = Proc::kGone;
  // Those built on it go with it (they hold what it loaded).
  for (auto& q : procs_)
    if (q->spec.from == p.spec.name && q.get() != &p)
      Stop(*q, why.empty() ? why : fmt::format("the stage it is built on ({}) stopped", p.spec.name),
           drain);
  if (drain && !was_starting) {
    // Its stdin stays open (closing it would end it at once); it ends
    // when its last test has, and its watch closes it then.
    if (p.pid > 0) kill(p.pid, SIGUSR2);
  } else {
    if (p.stdin_w >= 0) close(p.stdin_w);
    p.stdin_w = -1;
    if (p.pid > 0) kill(p.pid, SIGTERM);
  }
  if (!why.empty()) {
    JsonWriter& w = out_->Begin("stage.end");
    WriteText(w, "name", p.spec.name);
    Key(w, "pid");
    w.Int(p.pid);
    WriteText(w, "reason", why);
    out_->End();
  }
  if (was_starting) Settled();
}

// Asks "base" (ready) to fork the stage "p" is for.
void Stages::Fork(Proc& base, Proc& p) {
  p.state = Proc::kStarting;
  p.started_us = events::NowMicros();
  rapidjson::StringBuffer buf;
  JsonWriter w(buf);
  w.StartObject();
  Key(w, "t");
  events::String(w, "fork_stage");
  WriteText(w, "name", p.spec.name);
  WriteText(w, "socket", p.socket);
  Key(w, "inc");
  w.StartArray();
  for (const auto& d : p.spec.inc) events::TextValue(w, d);
  w.EndArray();
  Key(w, "preload");
  w.StartArray();
  for (const auto& m : p.spec.preload) events::TextValue(w, m);
  w.EndArray();
  w.EndObject();
  std::string line(buf.GetString(), buf.GetSize());
  line.push_back('\n');
  if (base.stdin_w < 0 || !events::WriteAll(base.stdin_w, line)) {
    p.state = Proc::kFailed;
    JsonWriter& e = out_->Begin("stage.end");
    WriteText(e, "name", p.spec.name);
    WriteText(e, "error", fmt::format("cannot ask {} to fork it: {}", base.spec.name, strerror(errno)));
    out_->End();
    return;
  }
  JsonWriter& e = out_->Begin("stage.start");
  WriteText(e, "name", p.spec.name);
  WriteText(e, "lang", p.spec.lang);
  WriteText(e, "from", base.spec.name);
  Key(e, "preload");
  e.StartArray();
  for (const auto& m : p.spec.preload) events::TextValue(e, m);
  e.EndArray();
  out_->End();
}

void Stages::Reconfigure(const std::vector<Stage>& config) {
  for (auto& p : procs_) {
    auto it = std::find_if(config.begin(), config.end(),
                           [&](const Stage& s) { return s.name == p->spec.name; });
    bool same = it != config.end() && it->lang == p->spec.lang && it->command == p->spec.command &&
                it->preload == p->spec.preload && it->inc == p->spec.inc && it->from == p->spec.from;
    if (!same && (p->state == Proc::kReady || p->state == Proc::kStarting ||
                  p->state == Proc::kWaiting))
      Stop(*p, "weft.toml changed", true);
  }
  config_ = config;
}

size_t Stages::Restart(const std::vector<std::string>& changed) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<std::string> abs;
  for (const auto& f : changed) abs.push_back(fs::absolute(f, ec).lexically_normal().string());
  size_t n = 0;
  for (auto& p : procs_) {
    if (p->state != Proc::kReady && p->state != Proc::kStarting) continue;
    for (const auto& f : abs) {
      if (std::find(p->preloaded.begin(), p->preloaded.end(), f) == p->preloaded.end()) continue;
      Stop(*p, fmt::format("reload: {} changed", fs::path(f).lexically_relative(fs::current_path(ec)).string()),
           true);
      ++n;
      break;
    }
  }
  return n;
}

void Stages::StopAll(bool ending) {
  if (!ending) {
    for (auto& p : procs_)
      if (p->state == Proc::kReady || p->state == Proc::kStarting || p->state == Proc::kWaiting)
        Stop(*p, "reload", true);
    return;
  }
  for (auto& p : procs_)
    if (p->state == Proc::kReady || p->state == Proc::kStarting) Stop(*p, "");
  // Those draining after a reload end now too.
  for (auto* list : {&procs_, &retired_})
    for (auto& p : *list) {
      if (p->stdin_w >= 0) close(p->stdin_w);
      p->stdin_w = -1;
      if (p->pid > 0) kill(p->pid, SIGTERM);
    }
  // They end at once (stdin closed, TERM): reaped here, none left behind
  // as a zombie (at most a second for all, then KILL).
  int64_t until = events::NowMicros() + 1000000;
  for (auto* list : {&procs_, &retired_})
    for (auto& p : *list) {
      if (p->pid <= 0) continue;
      while (waitpid(p->pid, nullptr, WNOHANG) == 0) {
        if (events::NowMicros() > until) {
          kill(p->pid, SIGKILL);
          waitpid(p->pid, nullptr, 0);
          break;
        }
        usleep(2000);
      }
      p->pid = -1;
    }
  for (auto& p : procs_) {
    if (p->out_open) {
      p->out_open = false;
      uv_read_stop(reinterpret_cast<uv_stream_t*>(&p->out));
      uv_close(reinterpret_cast<uv_handle_t*>(&p->out), nullptr);
    }
    p->watch.Close();
  }
  done_ = nullptr;
}

}  // namespace weft::runner
