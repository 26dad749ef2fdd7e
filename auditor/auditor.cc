#include "auditor.h"

#include <errno.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/signalfd.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>
#include <weft/common/spawn.h>
#include <weft/common/util.h>
#include <weft/events/event.h>
#include <weft/events/line_reader.h>
#include <weft/events/writer.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "native.h"
#include "tap.h"
#include "yaml_json.h"

extern char** environ;

namespace weft::auditor {
namespace {

using events::EventWriter;
using events::JsonWriter;
using events::Key;
using events::String;
using events::WriteText;

// Flush the batch early when a flooding test fills it this far.
constexpr size_t kFlushAt = 256 * 1024;
// How long a test point waits for the YAML block that may follow it, and
// how much may pile up behind it meanwhile, before it goes out without.
constexpr uint64_t kHoldMs = 100;
constexpr size_t kHoldBytes = 4 * 1024 * 1024;
// After the test exits, how long its pipes may stay open (held by a
// process that escaped its process group) before we stop reading them.
// Lines of output kept for a timeout event (the last ones), each cut at
// kLastLineBytes.
constexpr size_t kLastLines = 10;
// The fd the test finds its native event pipe on (WEFT_EVENT_FD).
constexpr int kEventFd = 3;
constexpr size_t kLastLineBytes = 1000;

const char* DirectiveName(tap::Directive d) {
  switch (d) {
    case tap::Directive::kSkip:
      return "skip";
    case tap::Directive::kTodo:
      return "todo";
    default:
      return nullptr;
  }
}

uint64_t Ms(double seconds) {
  return static_cast<uint64_t>(std::llround(seconds * 1000.0));
}

class Auditor;

// Our children, from /proc (we are a child subreaper: the test's orphans
// are among them).
std::vector<pid_t> Children() {
  std::vector<pid_t> kids;
  std::ifstream in(fmt::format("/proc/self/task/{}/children", getpid()));
  pid_t kid;
  while (in >> kid) kids.push_back(kid);
  return kids;
}

// The processes of a process group, from /proc (a staged test is not our
// child: what it leaves is found by its group).
std::vector<pid_t> GroupMembers(pid_t pgid) {
  std::vector<pid_t> members;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name[0] < '0' || name[0] > '9') continue;
    std::ifstream stat(e.path() / "stat");
    std::string line;
    std::getline(stat, line);
    auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    std::string state;
    long ppid = 0, pgrp = 0;
    rest >> state >> ppid >> pgrp;
    if (pgrp == pgid) members.push_back(static_cast<pid_t>(std::stol(name)));
  }
  return members;
}

// A top-level scalar of a stage's one-line JSON answer (they are flat:
// {"t":"spawned","pid":123}): a string's text (escapes left as they are)
// or a number's digits; empty when absent. (The auditor links no JSON
// reader: it stays small.)
std::string_view StageField(std::string_view line, std::string_view key) {
  std::string quoted = fmt::format("\"{}\"", key);
  for (size_t at = line.find(quoted); at != std::string_view::npos;
       at = line.find(quoted, at + 1)) {
    size_t i = at + quoted.size();
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    if (i >= line.size() || line[i] != ':') continue;
    ++i;
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    if (i < line.size() && line[i] == '"') {
      size_t end = i + 1;
      while (end < line.size() && line[end] != '"') end += line[end] == '\\' ? 2 : 1;
      return line.substr(i + 1, std::min(end, line.size()) - i - 1);
    }
    size_t end = i;
    while (end < line.size() && (isdigit(static_cast<unsigned char>(line[end])) || line[end] == '-'))
      ++end;
    return line.substr(i, end - i);
  }
  return {};
}

// A process that has ended: a zombie (or gone).
bool Ended(pid_t pid) {
  std::ifstream stat(fmt::format("/proc/{}/stat", pid));
  std::string line;
  std::getline(stat, line);
  auto close = line.rfind(')');
  return close == std::string::npos || close + 2 >= line.size() ||
         line[close + 2] == 'Z' || line[close + 2] == 'X';
}

constexpr int64_t kLeakGraceUs = 200 * 1000;
constexpr uint64_t kLeakPollMs = 5;
// How long a stage has, after its test was sent SIGKILL, to say it ended.
constexpr uint64_t kStageWordMs = 5000;

// One of the test's output pipes and the lines framed from it.
struct Stream {
  uv_pipe_t pipe;
  events::LineReader reader;
  const char* name = "";
  bool open = false;
  Auditor* self = nullptr;
};

class Auditor : public tap::Sink {
 public:
  explicit Auditor(const Options& o)
      : o_(o),
        writer_(o.run.empty() ? NewRunId() : o.run, o.job),
        parser_(this) {}
  Auditor(const Auditor&) = delete;
  Auditor& operator=(const Auditor&) = delete;

  int Run();
  bool loop_closed() const { return loop_closed_; }

 private:
  // tap::Sink: every TAP item becomes an event.
  void OnPlan(const tap::Plan& plan, const tap::Context& c) override {
    JsonWriter& w = writer_.Begin("plan");
    Key(w, "count");
    w.Int64(plan.count);
    if (plan.skip_all) {
      Key(w, "skip_all");
      w.Bool(true);
    }
    if (!plan.reason.empty()) WriteText(w, "reason", plan.reason);
    Where(w, c);
    writer_.End();
  }
  void OnAssert(const tap::Assertion& a, const tap::Context& c) override {
    last_assert_number_ = a.number;
    int64_t now = writer_.batch_ts() >= 0 ? writer_.batch_ts() : events::NowMicros();
    Release();  // the one before, if held, goes as it is
    held_start_ = writer_.size();
    JsonWriter& w = writer_.Begin("assert", now);
    Key(w, "number");
    w.Uint64(a.number);
    Key(w, "ok");
    w.Bool(a.ok);
    WriteText(w, "description", a.description);
    if (const char* d = DirectiveName(a.directive)) {
      Key(w, "directive");
      String(w, d);
      WriteText(w, "reason", a.reason);
    }
    Key(w, "elapsed_us");
    w.Int64(now - last_assert_us_);
    last_assert_us_ = now;
    Where(w, c);
    writer_.End();
    // Held back a moment: a YAML block right after it becomes its "yaml"
    // field (see OnYaml, Flush).
    ++asserts_seen_;
    held_end_ = writer_.size() - 2;  // its closing '}'
    held_since_ms_ = uv_now(loop_);
  }
  void OnBail(std::string_view reason, const tap::Context& c) override {
    JsonWriter& w = writer_.Begin("bail");
    WriteText(w, "reason", reason);
    Where(w, c);
    writer_.End();
  }
  void OnComment(std::string_view text, const tap::Context& c) override {
    JsonWriter& w = writer_.Begin("comment");
    WriteText(w, "text", text);
    Where(w, c);
    writer_.End();
  }
  void OnSubtestStart(std::string_view name, const tap::Context& c) override {
    JsonWriter& w = writer_.Begin("subtest");
    WriteText(w, "name", name);
    Where(w, c);
    writer_.End();
  }
  void OnYaml(std::string_view text, const tap::Context& c) override {
    // The block's lines went out as output already (byte for byte); this
    // is the same block decoded, tied to the test point before it.
    std::string json, err;
    if (!YamlToJson(text, &json, &err)) {
      ++yaml_errors_;  // a TAP parse error, as TAP::Parser counts it
      Release();
      OnParseError(err, c);
      return;
    }
    if (held_end_ != kNone) {
      // Its test point is still here: the block becomes its field.
      json.insert(0, ",\"yaml\":");
      writer_.Insert(held_end_, json);
      Release();
      return;
    }
    // The test point went out before its block came: the block follows
    // as an event of its own, tied to it by number.
    JsonWriter& w = writer_.Begin("yaml");
    Key(w, "number");
    w.Uint64(last_assert_number_);
    Key(w, "yaml");
    w.RawValue(json.data(), json.size(), rapidjson::kObjectType);
    Where(w, c);
    writer_.End();
  }
  void OnPragma(std::string_view name, bool enabled,
                const tap::Context& c) override {
    JsonWriter& w = writer_.Begin("pragma");
    WriteText(w, "name", name);
    Key(w, "enabled");
    w.Bool(enabled);
    Where(w, c);
    writer_.End();
  }
  void OnOther(std::string_view line, const tap::Context&) override {
    Output("stdout", line);
  }
  void OnParseError(std::string_view message, const tap::Context& c) override {
    JsonWriter& w = writer_.Begin("parse_error");
    WriteText(w, "message", message);
    Key(w, "line");
    w.Uint64(c.line_no);
    Where(w, c);
    writer_.End();
  }

  void Where(JsonWriter& w, const tap::Context& c) {
    Key(w, "source");
    String(w, "tap");
    if (c.depth == 0 || !c.path) return;
    Key(w, "depth");
    w.Int(c.depth);
    Key(w, "path");
    w.StartArray();
    for (const auto& p : *c.path) events::TextValue(w, p);
    w.EndArray();
  }

  void Output(const char* stream, std::string_view line) {
    JsonWriter& w = writer_.Begin("output");
    Key(w, "stream");
    String(w, stream);
    WriteText(w, "text", line);
    writer_.End();
  }

  // The held test point's fate is known (or it waited long enough): it
  // goes out as it is with the next flush.
  void Release() {
    held_end_ = kNone;
    uv_timer_stop(&hold_timer_);
  }

  void Flush() {
    if (writer_.empty()) return;
    if (output_failed_) {
      writer_.Clear();
      Release();
      return;
    }
    if (held_end_ != kNone) {
      uint64_t held = uv_now(loop_) - held_since_ms_;
      if (held < kHoldMs && !finished_ && writer_.size() < kHoldBytes) {
        // Everything before the held test point goes now; it and what
        // came after it wait for its YAML block or the next TAP line.
        if (held_start_ > 0) {
          if (!writer_.FlushPrefix(STDOUT_FILENO, held_start_)) OutputFailed();
          held_end_ -= held_start_;
          held_start_ = 0;
        }
        if (!uv_is_active(reinterpret_cast<uv_handle_t*>(&hold_timer_)))
          uv_timer_start(&hold_timer_, OnHold, kHoldMs - held, 0);
        return;
      }
      Release();
    }
    if (!writer_.Flush(STDOUT_FILENO)) OutputFailed();
  }

  void OutputFailed() {
    // Whoever reads us is gone: nobody will see this test's events, so
    // stop it rather than let it run unobserved.
    output_failed_ = true;
    StopTest();
  }

  bool Spawn();
  // The test forked by a stage (o_.stage): false with *why when the stage
  // cannot (then it is spawned as usual).
  bool StageSpawn(const std::vector<std::string>& env, int stdin_fd, int out_w, int err_w,
                  int ev_w, pid_t* pid, std::string* why);
  static void OnStage(uv_poll_t* h, int status, int events);
  // What the stage said so far (in stage_buf_): its "exited" ends the
  // test; "more": it may still say more (else it is gone).
  void StageSaid(bool more);
  int stage_fd_ = -1;
  uv_poll_t stage_poll_;
  std::string stage_buf_;
  bool staged_ = false;
  bool stage_broken_ = false;  // it may have forked the test: no fallback
  std::string stage_error_;  // why it was spawned after all
  // What the test left behind: our children (we are a subreaper), or for
  // a staged test the rest of its process group.
  std::vector<pid_t> Leftovers() const { return staged_ ? GroupMembers(pid_) : Children(); }
  void StartJob();
  // "attempt" and "attempts", when the job may be (or was) retried; true
  // if it wrote them.
  bool Attempt(JsonWriter& w) {
    if (o_.attempts <= 1 && o_.attempt <= 1) return false;
    Key(w, "attempt");
    w.Int(o_.attempt);
    Key(w, "attempts");
    w.Int(std::max(o_.attempts, o_.attempt));
    return true;
  }
  void StopTest();
  void Kill(int sig) {
    if (pid_ > 0 && !reaped_group_) ::kill(-pid_, sig);
  }
  // SIGKILL, the last word to the test. A staged test's end is known from
  // its stage ("exited"), which a broken stage may never say: if it has not
  // said it kStageWordMs after this, the job ends without it.
  void KillHard();
  static void OnStageSilent(uv_timer_t* t);
  bool stage_wait_ = false;  // OnStageSilent is due
  void CloseStage();
  void Drain(Stream& s);
  void CloseStream(Stream& s);
  void MaybeFinish();
  void Finish();

  static void OnAlloc(uv_handle_t* h, size_t, uv_buf_t* buf);
  static void OnRead(uv_stream_t* h, ssize_t n, const uv_buf_t* buf);
  void OnExit(int wait_status);
  static void KillOrphans(std::vector<pid_t> kids);
  int ExitCode() const;
  static std::vector<std::pair<pid_t, std::string>> LivingChildren(
      const std::vector<pid_t>& kids);
  std::vector<std::pair<pid_t, std::string>> leaks_;  // left running at exit
  std::string tmpdir_;
  bool tmpdir_kept_ = false;
  static void OnCheck(uv_check_t* c);
  static void OnSignal(uv_poll_t* h, int status, int events);
  static void OnTimeout(uv_timer_t* t);
  static void OnGrace(uv_timer_t* t);
  static void OnDrain(uv_timer_t* t);
  static void OnLeakCheck(uv_timer_t* t);
  uv_timer_t leak_timer_;
  int64_t leak_check_us_ = 0;
  static void OnLifeline(uv_stream_t* h, ssize_t n, const uv_buf_t* buf);
  static void OnLifelineAlloc(uv_handle_t* h, size_t, uv_buf_t* buf);

  const Options& o_;
  EventWriter writer_;
  tap::Parser parser_;
  uv_loop_t* loop_ = nullptr;
  bool loop_closed_ = false;

  ChildWatch child_;
  Stream out_, err_, ev_;  // stdout, stderr, native events
  void NativeLine(std::string_view line);
  void NativeError(std::string_view message, std::string_view line);
  // Native assertions and plan, counted beside the TAP's.
  struct {
    bool used = false, plan_seen = false, bailed = false;
    std::string bail_reason;
    int64_t planned = 0;
    uint64_t run = 0, passed = 0, failed = 0, skipped = 0, todo = 0,
             todo_passed = 0, errors = 0;
  } native_;
  uv_check_t check_;
  FlushTimer flush_timer_;
  // SIGTERM, SIGINT, SIGHUP through a signalfd: blocked, then read as
  // data; cheaper to set up than three libuv signal handles, which this
  // process (one per test) would set up and tear down every time.
  int signal_fd_ = -1;
  uv_poll_t signal_poll_;
  uv_timer_t timeout_timer_, grace_timer_, drain_timer_, idle_timer_;
  static void OnIdle(uv_timer_t* t);
  void Timeout(const char* kind, double after_s);
  void Remember(const char* stream, std::string_view line);
  // The last lines of output, in a ring, for timeout events.
  std::vector<std::pair<const char*, std::string>> last_lines_;
  size_t last_next_ = 0;
  uint64_t last_output_ms_ = 0;
  const char* timeout_kind_ = nullptr;  // "wall", "idle", "after-exit"
  double timeout_after_s_ = 0;
  uv_pipe_t lifeline_;
  bool lifeline_open_ = false;
  char lifeline_buf_[64];

  int pid_ = 0;
  int64_t start_us_ = 0;
  int64_t last_assert_us_ = 0;
  bool started_ = false;
  std::string spawn_error_;
  bool exited_ = false;
  int64_t exit_status_ = 0;
  int term_signal_ = 0;
  bool reaped_group_ = false;
  bool term_sent_ = false;
  bool timed_out_ = false;
  bool interrupted_ = false;
  bool bail_stopped_ = false;  // stopped because the run bailed out
  bool orphaned_ = false;
  bool output_failed_ = false;
  bool leaked_ = false;
  bool finished_ = false;
  bool verdict_pass_ = false;
  uint64_t last_assert_number_ = 0;
  // The last test point, held in the batch for its YAML block: where its
  // event starts and where its closing '}' is (kNone: nothing held).
  static constexpr size_t kNone = static_cast<size_t>(-1);
  size_t held_start_ = 0, held_end_ = kNone;
  uint64_t held_since_ms_ = 0;
  uint64_t asserts_seen_ = 0;
  uv_timer_t hold_timer_;
  static void OnHold(uv_timer_t* t);
  uint64_t yaml_errors_ = 0;
  bool core_dumped_ = false;
  struct rusage usage_ = {};
};

void Auditor::OnAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* s = static_cast<Stream*>(h->data);
  size_t avail;
  buf->base = s->reader.Space(64 * 1024, &avail);
  buf->len = avail;
}

void Auditor::OnRead(uv_stream_t* h, ssize_t n, const uv_buf_t*) {
  auto* s = static_cast<Stream*>(h->data);
  Auditor* self = s->self;
  if (n > 0) {
    s->reader.Commit(static_cast<size_t>(n));
    self->last_output_ms_ = uv_now(self->loop_);
    self->Drain(*s);
  } else if (n < 0) {  // UV_EOF or an error: either way, this pipe is done
    self->CloseStream(*s);
    self->MaybeFinish();
  }
}

void Auditor::Drain(Stream& s) {
  std::string_view line;
  bool is_stdout = &s == &out_;
  bool is_events = &s == &ev_;
  // Every line of this read arrived at the same moment: one clock read.
  writer_.set_batch_ts(events::NowMicros());
  while (s.reader.Next(&line)) {
    if (is_events) {
      NativeLine(line);
      continue;
    }
    Remember(s.name, line);
    if (is_stdout) {
      uint64_t asserts = asserts_seen_;
      parser_.Line(line);
      // A held test point waits only for a YAML block that follows it.
      if (held_end_ != kNone && asserts == asserts_seen_ && !parser_.yaml_open())
        Release();
    } else {
      Output(s.name, line);
    }
    if (writer_.batch().size() >= kFlushAt) Flush();
  }
  writer_.set_batch_ts(-1);
}

void Auditor::NativeError(std::string_view message, std::string_view line) {
  ++native_.errors;
  JsonWriter& w = writer_.Begin("parse_error");
  WriteText(w, "message", message);
  Key(w, "line");
  w.Uint64(ev_.reader.line_no());
  Key(w, "source");
  String(w, "fd");
  WriteText(w, "text", line.substr(0, 1000));
  writer_.End();
}

// A line from the test's event fd: checked, then stamped with the
// envelope by splicing text; or refused with a parse_error naming it.
void Auditor::NativeLine(std::string_view line) {
  if (line.empty() || line == "\r") return;
  NativeEvent e;
  std::string err;
  if (!ParseNative(line, &e, &err)) {
    NativeError(err, line);
    return;
  }
  native_.used = true;
  if (e.type == "assert") {
    ++native_.run;
    bool todo = e.directive == "todo", skip = e.directive == "skip";
    if (e.ok) {
      ++native_.passed;
      if (skip) ++native_.skipped;
      if (todo) ++native_.todo_passed;
    } else if (todo) {
      ++native_.todo;
    } else {
      ++native_.failed;
    }
  } else if (e.type == "plan") {
    if (native_.plan_seen) {
      // As in TAP: one plan; a second is an error and is not passed on.
      NativeError("a second plan on the event fd", line);
      return;
    }
    native_.plan_seen = true;
    native_.planned = e.count;
  } else if (e.type == "bail") {
    native_.bailed = true;
    native_.bail_reason = e.reason;
  }
  JsonWriter& w = writer_.Begin(e.type);
  Key(w, "source");
  String(w, "fd");
  writer_.EndRaw(e.rest);
}

void Auditor::CloseStream(Stream& s) {
  if (!s.open) return;
  s.open = false;
  s.reader.Finish();
  Drain(s);  // the last line, even without its '\n'
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&s.pipe));
  uv_close(reinterpret_cast<uv_handle_t*>(&s.pipe), nullptr);
}

void Auditor::OnExit(int status) {
  exited_ = true;
  if (WIFSIGNALED(status)) {
    term_signal_ = WTERMSIG(status);
    core_dumped_ = WCOREDUMP(status);
  } else {
    exit_status_ = WEXITSTATUS(status);
  }
  // We are a child subreaper, so whatever the test left running (in its
  // process group or out of it) is now our child: it was leaked, unless we
  // were stopping the test (then it is what is left of that). Kill it all,
  // so nothing outlives the job.
  // With no child left at all, nothing of the test's is left either (every
  // leftover is a descendant of one of our children).
  // A process that is still ending (a child the test forked and never
  // waited for) gets a moment to finish first: see OnLeakCheck.
  if (std::vector<pid_t> kids = Leftovers(); !kids.empty()) {
    if (term_sent_) {
      ::kill(-pid_, SIGKILL);
      KillOrphans(std::move(kids));
    } else {
      leak_check_us_ = events::NowMicros();
      uv_timer_start(&leak_timer_, OnLeakCheck, 0, kLeakPollMs);
    }
  }
  reaped_group_ = true;
  uv_timer_stop(&timeout_timer_);
  uv_timer_stop(&grace_timer_);
  uv_timer_stop(&idle_timer_);
  uv_timer_start(&drain_timer_, OnDrain, Ms(o_.limits.exit_timeout_s), 0);
  MaybeFinish();
}

// After the test exited with processes of its own left: every 5 ms, are
// any still running? Those still running 200 ms after its exit are leaks:
// reported, and killed with whatever else is left.
void Auditor::OnLeakCheck(uv_timer_t* t) {
  auto* self = static_cast<Auditor*>(t->data);
  std::vector<pid_t> kids = self->Leftovers();
  bool running = false;
  for (pid_t k : kids) running = running || !Ended(k);
  if (running && events::NowMicros() - self->leak_check_us_ < kLeakGraceUs) return;
  uv_timer_stop(t);
  if (running) self->leaks_ = LivingChildren(kids);
  self->leaked_ = !self->leaks_.empty();
  ::kill(-self->pid_, SIGKILL);
  if (!kids.empty()) KillOrphans(std::move(kids));
  self->MaybeFinish();
}

// Children that are not zombies (a zombie has already ended), with their
// command lines, for the leak report.
std::vector<std::pair<pid_t, std::string>> Auditor::LivingChildren(
    const std::vector<pid_t>& kids) {
  std::vector<std::pair<pid_t, std::string>> living;
  for (pid_t k : kids) {
    if (Ended(k)) continue;
    std::ifstream cmdline(fmt::format("/proc/{}/cmdline", k), std::ios::binary);
    std::string cmd((std::istreambuf_iterator<char>(cmdline)), {});
    while (!cmd.empty() && cmd.back() == '\0') cmd.pop_back();
    for (char& c : cmd)
      if (c == '\0') c = ' ';
    living.emplace_back(k, std::move(cmd));
  }
  return living;
}

// We are a child subreaper: whatever the test started and left running
// outside its process group (a daemon, a setsid() child) is re-parented to
// us when its parent dies. Kill each, wait for it (so its own children come
// to us in turn), until none is left. "kids" is the first round's list.
void Auditor::KillOrphans(std::vector<pid_t> kids) {
  for (int round = 0; round < 10000 && !kids.empty(); ++round) {
    for (pid_t k : kids) {
      ::kill(-k, SIGKILL);  // its group, if it leads one
      ::kill(k, SIGKILL);
    }
    for (pid_t k : kids)
      while (waitpid(k, nullptr, 0) < 0 && errno == EINTR) {
      }
    kids = Children();
  }
}

void Auditor::OnDrain(uv_timer_t* t) {
  auto* self = static_cast<Auditor*>(t->data);
  self->Timeout("after-exit", self->o_.limits.exit_timeout_s);
  // A process outside the test's group still holds its pipes open.
  self->CloseStream(self->out_);
  self->CloseStream(self->err_);
  self->CloseStream(self->ev_);
  self->MaybeFinish();
}

void Auditor::OnCheck(uv_check_t* c) {
  auto* self = static_cast<Auditor*>(c->data);
  // Only the held test point and what follows it: the hold timer sends it.
  bool waiting = self->held_end_ != kNone && self->held_start_ == 0;
  if (!self->writer_.empty() && !waiting) self->flush_timer_.Kick();
  if (waiting && !uv_is_active(reinterpret_cast<uv_handle_t*>(&self->hold_timer_))) {
    uint64_t held = uv_now(self->loop_) - self->held_since_ms_;
    uv_timer_start(&self->hold_timer_, OnHold, held < kHoldMs ? kHoldMs - held : 0, 0);
  }
}

void Auditor::OnHold(uv_timer_t* t) {
  auto* self = static_cast<Auditor*>(t->data);
  self->Release();
  self->Flush();
}

void Auditor::StopTest() {
  if (!started_ || exited_) return;
  if (!term_sent_) {
    term_sent_ = true;
    Kill(SIGTERM);
    uv_timer_start(&grace_timer_, OnGrace, Ms(o_.limits.kill_grace_s), 0);
  } else {
    KillHard();  // asked twice: no more grace
  }
}

void Auditor::OnGrace(uv_timer_t* t) {
  static_cast<Auditor*>(t->data)->KillHard();
}

void Auditor::KillHard() {
  Kill(SIGKILL);
  // (The grace timer is done with by now: it waits for the stage, from
  // the first SIGKILL: more stop signals do not push the wait back.)
  if (staged_ && stage_fd_ >= 0 && !exited_ && !stage_wait_) {
    stage_wait_ = true;
    uv_timer_start(&grace_timer_, OnStageSilent, kStageWordMs, 0);
  }
}

void Auditor::OnStageSilent(uv_timer_t* t) {
  auto* self = static_cast<Auditor*>(t->data);
  if (self->exited_ || self->stage_fd_ < 0) return;
  self->CloseStage();
  self->stage_error_ = fmt::format(
      "its stage never said how it ended ({} s after SIGKILL; taken as killed)",
      kStageWordMs / 1000);
  self->OnExit(SIGKILL);  // as a wait status: killed by SIGKILL
}

void Auditor::OnTimeout(uv_timer_t* t) {
  auto* self = static_cast<Auditor*>(t->data);
  self->Timeout("wall", self->o_.limits.timeout_s);
}

// Idle: no output on any stream for --idle-timeout. The timer is not
// restarted on every read; when it fires early, it sleeps the rest.
void Auditor::OnIdle(uv_timer_t* t) {
  auto* self = static_cast<Auditor*>(t->data);
  uint64_t now = uv_now(self->loop_);
  uint64_t limit = Ms(self->o_.limits.idle_timeout_s);
  uint64_t quiet = now - self->last_output_ms_;
  if (quiet < limit) {
    uv_timer_start(t, OnIdle, limit - quiet, 0);
    return;
  }
  self->Timeout("idle", self->o_.limits.idle_timeout_s);
}

void Auditor::Remember(const char* stream, std::string_view line) {
  if (last_lines_.size() < kLastLines) {
    last_lines_.emplace_back(stream, std::string());
    last_next_ = last_lines_.size() - 1;
  }
  auto& slot = last_lines_[last_next_];
  slot.first = stream;
  slot.second.assign(line.substr(0, kLastLineBytes));
  last_next_ = (last_next_ + 1) % kLastLines;
}

// A timeout fired: say which, with the last lines of output, and stop the
// test (after-exit: it has exited; stop reading what it left open).
void Auditor::Timeout(const char* kind, double after_s) {
  if (timeout_kind_ || finished_) return;
  timed_out_ = true;
  timeout_kind_ = kind;
  timeout_after_s_ = after_s;
  JsonWriter& w = writer_.Begin("timeout");
  Key(w, "kind");
  String(w, kind);
  Key(w, "after_s");
  w.Double(after_s);
  Key(w, "last_lines");
  w.StartArray();
  size_t n = last_lines_.size();
  size_t first = n < kLastLines ? 0 : last_next_;
  for (size_t i = 0; i < n; ++i) {
    const auto& [stream, text] = last_lines_[(first + i) % n];
    w.StartObject();
    Key(w, "stream");
    String(w, stream);
    WriteText(w, "text", text);
    w.EndObject();
  }
  w.EndArray();
  writer_.End();
  if (std::string_view(kind) != "after-exit") StopTest();
}

void Auditor::OnSignal(uv_poll_t* h, int, int) {
  auto* self = static_cast<Auditor*>(h->data);
  struct signalfd_siginfo si;
  while (read(self->signal_fd_, &si, sizeof si) == sizeof si) {
    // Each one counts: a second signal skips the grace (StopTest).
    // SIGUSR1 is the runner's "the run bailed out"; the others interrupt.
    if (si.ssi_signo == SIGUSR1)
      self->bail_stopped_ = true;
    else
      self->interrupted_ = true;
    self->StopTest();
  }
}

void Auditor::OnLifelineAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* self = static_cast<Auditor*>(h->data);
  buf->base = self->lifeline_buf_;
  buf->len = sizeof self->lifeline_buf_;
}

void Auditor::OnLifeline(uv_stream_t* h, ssize_t n, const uv_buf_t*) {
  auto* self = static_cast<Auditor*>(h->data);
  if (n >= 0) return;  // nobody writes here; only EOF matters
  self->orphaned_ = true;
  uv_read_stop(h);
  uv_close(reinterpret_cast<uv_handle_t*>(h), nullptr);
  self->lifeline_open_ = false;
  self->StopTest();
}

bool Auditor::Spawn() {
  // The job's clock starts here, also for a job that cannot start.
  start_us_ = last_assert_us_ = events::NowMicros();
  // Its own TMPDIR: removed after a pass, kept (and named in job.end)
  // after a failure or with --keep.
  if (!o_.tmpdir.empty()) {
    tmpdir_ = o_.tmpdir;
  } else {
    tmpdir_ = MakeTmpdir(fmt::format("{}-{}", writer_.run(), o_.job));
  }

  // The test's environment: ours, plus what a TAP test expects under a
  // harness and what identifies the job.
  std::vector<std::string> env_store;
  for (char** e = environ; *e; ++e) {
    std::string_view kv(*e);
    if (kv.starts_with("HARNESS_ACTIVE=") || kv.starts_with("WEFT_RUN_ID=") ||
        kv.starts_with("WEFT_JOB_ID=") || kv.starts_with("WEFT_EVENT_FD=") ||
        kv.starts_with("WEFT_ATTEMPT=") || kv.starts_with("TAP_VERSION=") ||
        kv.starts_with("WEFT_VERSION=") ||
        (kv.starts_with("TMPDIR=") && !tmpdir_.empty()))
      continue;
    env_store.emplace_back(kv);
  }
  if (!tmpdir_.empty()) env_store.push_back("TMPDIR=" + tmpdir_);
  env_store.push_back("HARNESS_ACTIVE=1");
  // What the harness reads: a producer may pick its TAP from it.
  env_store.push_back("TAP_VERSION=14");
  env_store.push_back("WEFT_VERSION=" WEFT_VERSION);
  env_store.push_back(fmt::format("WEFT_ATTEMPT={}", o_.attempt));
  env_store.push_back("WEFT_RUN_ID=" + writer_.run());
  env_store.push_back(fmt::format("WEFT_JOB_ID={}", o_.job));
  env_store.push_back(fmt::format("WEFT_EVENT_FD={}", kEventFd));
  // The job's own variables (from weft.toml or the job spec) last: they
  // win over ours and the inherited ones (glibc's getenv takes the first
  // match, so an earlier duplicate is dropped).
  for (const auto& kv : o_.env) SetEnvEntry(&env_store, kv);
  std::vector<char*> env;
  for (auto& e : env_store) env.push_back(e.data());
  env.push_back(nullptr);

  int out[2], err[2], ev[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    spawn_error_ = fmt::format("cannot start {}: pipe: {}", o_.argv[0], strerror(errno));
    return false;
  }
  if (pipe2(err, O_CLOEXEC) != 0 || pipe2(ev, O_CLOEXEC) != 0) {
    spawn_error_ = fmt::format("cannot start {}: pipe: {}", o_.argv[0], strerror(errno));
    for (int fd : {out[0], out[1], err[0], err[1]}) close(fd);
    return false;
  }
  if (!o_.cwd.empty()) {
    struct stat st;
    if (stat(o_.cwd.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      spawn_error_ = fmt::format("cannot start {}: cannot run it in {}: {}", o_.argv[0],
                                 o_.cwd, stat(o_.cwd.c_str(), &st) != 0
                                             ? strerror(errno)
                                             : "not a directory");
      for (int fd : {out[0], out[1], err[0], err[1], ev[0], ev[1]}) close(fd);
      return false;
    }
  }
  int stdin_fd = -1;
  if (!o_.limits.stdin_path.empty()) {
    stdin_fd = open(o_.limits.stdin_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (stdin_fd < 0) {
      spawn_error_ = fmt::format("cannot open {} for the test's stdin: {}",
                                 o_.limits.stdin_path, strerror(errno));
      for (int fd : {out[0], out[1], err[0], err[1], ev[0], ev[1]}) close(fd);
      return false;
    }
  }
  if (!o_.stage.empty()) {
    pid_t pid = -1;
    start_us_ = last_assert_us_ = events::NowMicros();
    if (StageSpawn(env_store, stdin_fd, out[1], err[1], ev[1], &pid, &stage_error_)) {
      close(out[1]);
      close(err[1]);
      close(ev[1]);
      if (stdin_fd >= 0) close(stdin_fd);
      pid_ = pid;
      started_ = staged_ = true;
      uv_pipe_open(&out_.pipe, out[0]);
      uv_pipe_open(&err_.pipe, err[0]);
      uv_pipe_open(&ev_.pipe, ev[0]);
      uv_poll_init(loop_, &stage_poll_, stage_fd_);
      stage_poll_.data = this;
      uv_poll_start(&stage_poll_, UV_READABLE, OnStage);
      return true;
    }
    // The stage cannot: the test is spawned as usual (job.start says why).
    if (stage_broken_) {
      for (int fd : {out[0], out[1], err[0], err[1], ev[0], ev[1]}) close(fd);
      if (stdin_fd >= 0) close(stdin_fd);
      spawn_error_ = fmt::format("cannot start {} on its stage: {}", o_.argv[0], stage_error_);
      return false;
    }
  }
  SpawnRequest req;
  req.argv = o_.argv;
  req.stdin_fd = stdin_fd;
  req.envp = env.data();
  req.stdout_fd = out[1];
  req.stderr_fd = err[1];
  req.extra_fds = {{ev[1], kEventFd}};
  // Its own process group, so a signal to the group reaches everything it
  // started. Not its own session: the runner already put us in a session
  // of our own, without a terminal, so a terminal's Ctrl-C never reaches
  // the test (we stop it in order), and a new session per test would cost
  // the kernel a scheduling group per test.
  req.new_group = true;
  req.no_handlers = true;  // SIGTERM, SIGINT, SIGHUP come by signalfd
  if (!o_.cwd.empty()) req.cwd = o_.cwd.c_str();
  start_us_ = last_assert_us_ = events::NowMicros();
  pid_t pid = -1;
  int rc = weft::Spawn(req, &pid);
  close(out[1]);
  close(err[1]);
  close(ev[1]);
  if (stdin_fd >= 0) close(stdin_fd);
  if (rc != 0) {
    close(out[0]);
    close(err[0]);
    close(ev[0]);
    spawn_error_ = fmt::format("cannot start {}: {}", o_.argv[0],
                               uv_strerror(-rc));
    return false;
  }
  pid_ = pid;
  started_ = true;
  uv_pipe_open(&out_.pipe, out[0]);
  uv_pipe_open(&err_.pipe, err[0]);
  uv_pipe_open(&ev_.pipe, ev[0]);
  int wrc = child_.Start(loop_, pid, [this](int status, const struct rusage& usage) {
    usage_ = usage;
    OnExit(status);
  });
  if (wrc != 0) {
    // Cannot learn when it ends: do not run it unobserved.
    ::kill(-pid, SIGKILL);
    Error("weft-auditor", fmt::format("cannot watch the test: {}", uv_strerror(wrc)));
  }
  return true;
}

bool Auditor::StageSpawn(const std::vector<std::string>& env, int stdin_fd, int out_w,
                         int err_w, int ev_w, pid_t* pid, std::string* why) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (o_.stage.size() >= sizeof addr.sun_path) {
    *why = "its socket's path is too long";
    if (fd >= 0) close(fd);
    return false;
  }
  memcpy(addr.sun_path, o_.stage.c_str(), o_.stage.size() + 1);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    *why = fmt::format("cannot reach the stage at {}: {}", o_.stage, strerror(errno));
    if (fd >= 0) close(fd);
    return false;
  }
  // The stage opens our pipes' write ends through /proc, then forks.
  auto ours = [](int n) { return fmt::format("/proc/{}/fd/{}", getpid(), n); };
  char cwd[4096] = "";
  if (o_.cwd.empty() && !getcwd(cwd, sizeof cwd)) cwd[0] = 0;
  rapidjson::StringBuffer buf;
  JsonWriter w(buf);
  w.StartObject();
  Key(w, "t");
  events::String(w, "spawn");
  Key(w, "argv");
  w.StartArray();
  for (const auto& a : o_.argv) events::TextValue(w, a);
  w.EndArray();
  Key(w, "env");
  w.StartArray();
  for (const auto& e : env) events::TextValue(w, e);
  w.EndArray();
  WriteText(w, "cwd", o_.cwd.empty() ? std::string(cwd) : o_.cwd);
  Key(w, "fds");
  w.StartArray();
  events::TextValue(w, stdin_fd >= 0 ? ours(stdin_fd) : std::string("/dev/null"));
  events::TextValue(w, ours(out_w));
  events::TextValue(w, ours(err_w));
  events::TextValue(w, ours(ev_w));
  w.EndArray();
  w.EndObject();
  std::string request(buf.GetString(), buf.GetSize());
  request.push_back('\n');
  std::string reply;
  if (events::WriteAll(fd, request)) {
    // The answer is a fork away: a stage that takes more than 30 s is stuck.
    char chunk[4096];
    while (reply.find('\n') == std::string::npos) {
      struct pollfd p = {fd, POLLIN, 0};
      if (poll(&p, 1, 30000) <= 0) break;
      ssize_t n = read(fd, chunk, sizeof chunk);
      if (n <= 0) break;
      reply.append(chunk, static_cast<size_t>(n));
    }
  }
  size_t nl = reply.find('\n');
  std::string line = reply.substr(0, nl);
  std::string_view t = StageField(line, "t");
  long spawned = std::strtol(std::string(StageField(line, "pid")).c_str(), nullptr, 10);
  if (t == "spawned" && spawned > 0) {
    *pid = static_cast<pid_t>(spawned);
    stage_buf_ = nl == std::string::npos ? std::string() : reply.substr(nl + 1);
    stage_fd_ = fd;
    return true;
  }
  close(fd);
  if (t == "error") {
    // It did not fork: the test can be spawned as usual.
    *why = fmt::format("the stage said: {:.300}", StageField(line, "message"));
    return false;
  }
  // No answer we understand: it may have forked the test, which must not
  // run twice. The job fails.
  *why = line.empty() ? std::string("the stage did not answer")
                      : fmt::format("the stage answered {:.300}", line);
  stage_broken_ = true;
  return false;
}

// The stage's word when the test has ended: its wait status.
void Auditor::OnStage(uv_poll_t* h, int, int) {
  auto* self = static_cast<Auditor*>(h->data);
  char chunk[4096];
  ssize_t n = read(self->stage_fd_, chunk, sizeof chunk);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n > 0) self->stage_buf_.append(chunk, static_cast<size_t>(n));
  self->StageSaid(n > 0);
}

void Auditor::StageSaid(bool more) {
  size_t nl = stage_buf_.find('\n');
  bool done = false;
  int status = 0;
  if (nl != std::string::npos) {
    std::string_view line(stage_buf_.data(), nl);
    std::string_view st = StageField(line, "status");
    if (StageField(line, "t") == "exited" && !st.empty()) {
      done = true;
      status = static_cast<int>(std::strtol(std::string(st).c_str(), nullptr, 10));
    }
  }
  if (!done && more && nl == std::string::npos) return;
  CloseStage();
  if (done) {
    OnExit(status);
  } else {
    // The stage is gone: the test cannot be watched any longer.
    stage_error_ = "the stage went away while the test ran";
    ::kill(-pid_, SIGKILL);
    OnExit(SIGKILL);  // as a wait status: killed by SIGKILL
  }
}

void Auditor::CloseStage() {
  uv_poll_stop(&stage_poll_);
  uv_close(reinterpret_cast<uv_handle_t*>(&stage_poll_), nullptr);
  close(stage_fd_);
  stage_fd_ = -1;
}

void Auditor::StartJob() {
  JsonWriter& w = writer_.Begin("job.start", start_us_);
  WriteText(w, "name", o_.name.empty() ? o_.argv[0] : o_.name);
  Key(w, "argv");
  w.StartArray();
  for (const auto& a : o_.argv) events::TextValue(w, a);
  w.EndArray();
  if (started_) {
    Key(w, "pid");
    w.Int(pid_);
  }
  if (staged_) WriteText(w, "stage", o_.stage);
  if (!stage_error_.empty()) WriteText(w, "stage_error", stage_error_);
  if (o_.limits.timeout_s > 0) {
    Key(w, "timeout_s");
    w.Double(o_.limits.timeout_s);
  }
  Attempt(w);
  writer_.End();
}

void Auditor::MaybeFinish() {
  if (finished_) return;
  if (started_ && (!exited_ || out_.open || err_.open || ev_.open)) return;
  if (uv_is_active(reinterpret_cast<uv_handle_t*>(&leak_timer_))) return;
  Finish();
}

void Auditor::Finish() {
  finished_ = true;
  int64_t end_us = events::NowMicros();
  parser_.End();
  Release();

  std::vector<std::string> reasons;
  if (!spawn_error_.empty()) reasons.push_back(spawn_error_);
  if (staged_ && !stage_error_.empty()) reasons.push_back(stage_error_);
  if (timeout_kind_) {
    std::string_view kind = timeout_kind_;
    if (kind == "wall")
      reasons.push_back(fmt::format("timed out after {}s", timeout_after_s_));
    else if (kind == "idle")
      reasons.push_back(fmt::format("no output for {}s (idle timeout)", timeout_after_s_));
    else
      reasons.push_back(fmt::format(
          "its output was still held open {}s after it exited (after-exit timeout)",
          timeout_after_s_));
  }
  if (interrupted_) reasons.push_back("interrupted");
  else if (bail_stopped_) reasons.push_back("stopped: the run bailed out");
  if (orphaned_) reasons.push_back("stopped: the runner went away");
  if (started_) {
    if (term_signal_ != 0)
      reasons.push_back(fmt::format("killed by {}{}", SignalName(term_signal_),
                                    core_dumped_ ? " (core dumped)" : ""));
    else if (exit_status_ != 0)
      reasons.push_back(fmt::format("exited with status {}", exit_status_));
    const tap::Tally& tap = parser_.tally();
    // A test that speaks only native events prints no TAP: no TAP plan is
    // then no problem.
    bool tap_silent = tap.run == 0 && !tap.plan_seen && tap.parse_errors == 0 &&
                      !tap.bailed;
    for (auto& p : parser_.Problems())
      if (!(native_.used && tap_silent && p == "no plan"))
        reasons.push_back(std::move(p));
    if (native_.bailed)
      reasons.push_back(native_.bail_reason.empty()
                            ? std::string("bailed out")
                            : "bailed out: " + native_.bail_reason);
    if (native_.used) {
      if (native_.failed)
        reasons.push_back(fmt::format("{} of {} native assertions failed",
                                      native_.failed, native_.run));
      if (!native_.plan_seen && native_.run > 0)
        reasons.push_back("no plan on the event fd");
      else if (native_.plan_seen &&
               static_cast<uint64_t>(native_.planned) != native_.run)
        reasons.push_back(fmt::format("planned {} but ran {} on the event fd",
                                      native_.planned, native_.run));
    }
    if (leaked_ && o_.limits.leaks_fail) {
      std::string which;
      for (const auto& [pid, cmd] : leaks_)
        which += fmt::format("{}{} ({})", which.empty() ? "" : ", ", pid,
                             cmd.substr(0, 80));
      reasons.push_back(fmt::format("left {} process{} running: {}", leaks_.size(),
                                    leaks_.size() == 1 ? "" : "es", which));
    }
    if (yaml_errors_)
      reasons.push_back(fmt::format("{} malformed YAML block{}", yaml_errors_,
                                    yaml_errors_ == 1 ? "" : "s"));
    if (native_.errors)
      reasons.push_back(fmt::format("{} bad line{} on the event fd",
                                    native_.errors, native_.errors == 1 ? "" : "s"));
  }
  const tap::Tally& t = parser_.tally();
  const char* verdict = !reasons.empty() ? "fail"
                        : t.skip_all     ? "skip"
                                         : "pass";
  verdict_pass_ = reasons.empty();
  if (!tmpdir_.empty()) {
    tmpdir_kept_ = !verdict_pass_ || o_.limits.keep_tmpdir;
    std::error_code ec;
    if (!tmpdir_kept_ && !o_.tmpdir.empty()) {
      // The fork server's, to be reused: emptied, kept.
      for (const auto& entry : std::filesystem::directory_iterator(tmpdir_, ec))
        std::filesystem::remove_all(entry.path(), ec);
    } else if (!tmpdir_kept_ && rmdir(tmpdir_.c_str()) != 0) {
      // Most tests leave it empty: one rmdir; the tree walk only if not.
      std::filesystem::remove_all(tmpdir_, ec);
    }
  }

  JsonWriter& w = writer_.Begin("job.end", end_us);
  WriteText(w, "name", o_.name.empty() ? o_.argv[0] : o_.name);
  Key(w, "verdict");
  String(w, verdict);
  Key(w, "reasons");
  w.StartArray();
  for (const auto& r : reasons) events::TextValue(w, r);
  w.EndArray();
  Key(w, "exit");
  w.StartObject();
  Key(w, "code");
  if (started_ && term_signal_ == 0)
    w.Int64(exit_status_);
  else
    w.Null();
  Key(w, "signal");
  if (started_ && term_signal_ != 0)
    String(w, SignalName(term_signal_));
  else
    w.Null();
  if (core_dumped_) {
    Key(w, "core_dumped");
    w.Bool(true);
  }
  w.EndObject();
  // What the test (and what it waited for) used, from wait4.
  if (started_ && exited_) events::WriteUsage(w, "usage", usage_);
  Key(w, "counts");
  w.StartObject();
  // TAP and native events together.
  Key(w, "planned");
  if (t.plan_seen || native_.plan_seen)
    w.Int64((t.plan_seen ? t.planned : 0) + (native_.plan_seen ? native_.planned : 0));
  else
    w.Null();
  Key(w, "run");
  w.Uint64(t.run + native_.run);
  Key(w, "passed");
  w.Uint64(t.passed + native_.passed);
  Key(w, "failed");
  w.Uint64(t.failed + native_.failed);
  Key(w, "skipped");
  w.Uint64(t.skipped + native_.skipped);
  Key(w, "todo");
  w.Uint64(t.todo + native_.todo);
  Key(w, "todo_passed");
  w.Uint64(t.todo_passed + native_.todo_passed);
  Key(w, "parse_errors");
  w.Uint64(t.parse_errors + native_.errors + yaml_errors_);
  w.EndObject();
  if (t.skip_all && !t.skip_reason.empty())
    WriteText(w, "skip_reason", t.skip_reason);
  if (t.bailed)
    WriteText(w, "bail_reason", t.bail_reason);
  else if (native_.bailed)
    WriteText(w, "bail_reason", native_.bail_reason);
  if (timed_out_) {
    Key(w, "timed_out");
    w.Bool(true);
    Key(w, "timeout");
    String(w, timeout_kind_);
  }
  if (interrupted_ || orphaned_) {
    Key(w, "interrupted");
    w.Bool(true);
  } else if (bail_stopped_) {
    Key(w, "stopped");
    String(w, "bail");
  }
  if (leaked_) {
    Key(w, "leaked");
    w.Bool(true);
    Key(w, "leaks");
    w.StartArray();
    for (const auto& [pid, cmd] : leaks_) {
      w.StartObject();
      Key(w, "pid");
      w.Int(pid);
      WriteText(w, "cmd", cmd);
      w.EndObject();
    }
    w.EndArray();
  }
  if (!tmpdir_.empty() && tmpdir_kept_) WriteText(w, "tmpdir", tmpdir_);
  if (Attempt(w)) {
    if (!verdict_pass_ && o_.attempt < o_.attempts && !interrupted_ &&
        !orphaned_ && !output_failed_ && !bail_stopped_ && !t.bailed &&
        !native_.bailed) {
      // Not the job's last word: the runner runs it again.
      Key(w, "retry");
      w.Bool(true);
    } else if (verdict_pass_ && o_.attempt > 1) {
      // Failed before, passes now.
      Key(w, "flaky");
      w.Bool(true);
    }
  }
  Key(w, "duration_us");
  w.Int64(end_us - start_us_);
  writer_.End();
  Flush();

  // Close every handle; the loop ends when the last close completes.
  auto close = [](auto* h) {
    auto* handle = reinterpret_cast<uv_handle_t*>(h);
    if (!uv_is_closing(handle)) uv_close(handle, nullptr);
  };
  child_.Close();
  close(&check_);
  flush_timer_.Close();
  if (signal_fd_ >= 0) close(&signal_poll_);
  close(&timeout_timer_);
  close(&grace_timer_);
  close(&drain_timer_);
  close(&idle_timer_);
  close(&hold_timer_);
  close(&leak_timer_);
  if (lifeline_open_) {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&lifeline_));
    close(&lifeline_);
  }
}

int Auditor::Run() {
  loop_ = uv_default_loop();
  // (No uv_disable_stdio_inheritance(): InitStreamProcess marked every
  // inherited fd close-on-exec, and our own are created so.)
  // Orphans of the test come to us, not to init: see KillOrphans().
  prctl(PR_SET_CHILD_SUBREAPER, 1);

  writer_.Hello("weft-auditor");

  for (Stream* s : {&out_, &err_, &ev_}) {
    uv_pipe_init(loop_, &s->pipe, 0);
    s->pipe.data = s;
    s->self = this;
    s->open = true;
  }
  out_.name = "stdout";
  err_.name = "stderr";
  ev_.name = "events";

  uv_check_init(loop_, &check_);
  check_.data = this;
  uv_check_start(&check_, OnCheck);
  flush_timer_.Init(loop_, [this] { Flush(); });
  uv_timer_init(loop_, &timeout_timer_);
  uv_timer_init(loop_, &grace_timer_);
  uv_timer_init(loop_, &drain_timer_);
  uv_timer_init(loop_, &idle_timer_);
  uv_timer_init(loop_, &hold_timer_);
  uv_timer_init(loop_, &leak_timer_);
  leak_timer_.data = this;
  timeout_timer_.data = grace_timer_.data = drain_timer_.data =
      idle_timer_.data = hold_timer_.data = this;
  sigset_t stop_signals = JobStopSignals();
  sigprocmask(SIG_BLOCK, &stop_signals, nullptr);  // the test's mask is reset
  signal_fd_ = signalfd(-1, &stop_signals, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signal_fd_ >= 0) {
    uv_poll_init(loop_, &signal_poll_, signal_fd_);
    signal_poll_.data = this;
    uv_poll_start(&signal_poll_, UV_READABLE, OnSignal);
  }
  if (o_.lifeline_fd >= 0) {
    // Started for a runner: besides the lifeline pipe, a SIGTERM (through
    // the signalfd just made) when our parent dies, however it dies.
    pid_t parent = getppid();
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) kill(getpid(), SIGTERM);  // it died just now
    uv_pipe_init(loop_, &lifeline_, 0);
    lifeline_.data = this;
    if (uv_pipe_open(&lifeline_, o_.lifeline_fd) == 0 &&
        uv_read_start(reinterpret_cast<uv_stream_t*>(&lifeline_),
                      OnLifelineAlloc, OnLifeline) == 0) {
      lifeline_open_ = true;
    } else {
      uv_close(reinterpret_cast<uv_handle_t*>(&lifeline_), nullptr);
    }
  }

  bool spawned = Spawn();
  StartJob();
  Flush();
  if (spawned) {
    for (Stream* s : {&out_, &err_, &ev_})
      uv_read_start(reinterpret_cast<uv_stream_t*>(&s->pipe), OnAlloc, OnRead);
    if (o_.limits.timeout_s > 0)
      uv_timer_start(&timeout_timer_, OnTimeout, Ms(o_.limits.timeout_s), 0);
    last_output_ms_ = uv_now(loop_);
    if (o_.limits.idle_timeout_s > 0)
      uv_timer_start(&idle_timer_, OnIdle, Ms(o_.limits.idle_timeout_s), 0);
    // A test that ended at once: the stage's "exited" may have come with
    // its "spawned", in the same read, and the socket says nothing more.
    if (staged_ && stage_fd_ >= 0 && stage_buf_.find('\n') != std::string::npos)
      StageSaid(true);
  } else {
    for (Stream* s : {&out_, &err_, &ev_}) {
      s->open = false;
      uv_close(reinterpret_cast<uv_handle_t*>(&s->pipe), nullptr);
    }
    MaybeFinish();
  }

  uv_run(loop_, UV_RUN_DEFAULT);
  loop_closed_ = uv_loop_close(loop_) == 0;
  if (signal_fd_ >= 0) ::close(signal_fd_);

  return ExitCode();
}

int Auditor::ExitCode() const {
  if (output_failed_) return 3;
  if (interrupted_) return 130;
  return verdict_pass_ ? 0 : 1;
}

}  // namespace

std::string MakeTmpdir(std::string_view stem) {
  const char* base = getenv("TMPDIR");
  std::string tmpl = fmt::format("{}/weft-{}-XXXXXX",
                                 base && *base ? base : "/tmp", stem);
  return mkdtemp(tmpl.data()) ? tmpl : std::string();
}

int Run(const Options& options, bool* reusable) {
  Auditor auditor(options);
  int rc = auditor.Run();
  if (reusable) *reusable = auditor.loop_closed();
  return rc;
}

}  // namespace weft::auditor
