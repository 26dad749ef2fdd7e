#include "runner.h"

#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>
#include <weft/common/spawn.h>
#include <weft/common/util.h>
#include <weft/events/event.h>
#include <weft/events/line_reader.h>
#include <weft/events/writer.h>

#include "protocol.h"

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace weft::runner {
namespace {

using events::EventWriter;
using events::JsonWriter;
using events::Key;
using events::String;
using events::WriteText;

constexpr size_t kFlushAt = 1 << 20;
constexpr const char* kProg = "weft-runner";

class Runner;

// One job: its spec, its auditor process and the pipe we read it from.
struct Job {
  int64_t id = 0;
  JobSpec spec;
  Runner* runner = nullptr;
  ChildWatch watch;
  pid_t pid = -1;
  uv_pipe_t pipe;
  events::LineReader reader{16 * 1024};
  bool saw_hello = false;
  bool saw_end = false;
  bool exited = false;
  bool eof = false;
  int64_t exit_status = 0;
  int term_signal = 0;
  int test_pid = 0;  // from the auditor's job.start, to clean up after it
  bool pipe_closed = false;
  bool released = false;
  bool via_server = false;   // forked by the auditor fork server
  std::string start_error;   // the server could not fork it
};

class Runner {
 public:
  explicit Runner(const Options& o)
      : o_(o), writer_(o.run.empty() ? NewRunId() : o.run, -1) {}
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  int Run();

 private:
  void StartMore();
  bool StartJob(std::unique_ptr<Job> job);
  void OnLine(Job& job, std::string_view line);
  void JobDone(Job& job);
  void MaybeEnd();
  void MaybeRelease(Job& job);
  void LostJobEnd(int64_t id, std::string_view name, std::string_view message);
  void Stop(bool interrupted);
  void Flush();
  void HarnessError(std::string_view message, int64_t job = -1);

  static void OnAlloc(uv_handle_t* h, size_t, uv_buf_t* buf);
  static void OnRead(uv_stream_t* h, ssize_t n, const uv_buf_t*);
  void OnExit(Job& job, int wait_status);
  static void OnClosed(uv_handle_t* h);
  static void OnCheck(uv_check_t* c);
  static void OnPrepare(uv_prepare_t* p);
  static void OnSignal(uv_signal_t* s, int signum);

  const Options& o_;
  EventWriter writer_;
  events::Fields fields_;
  uv_loop_t* loop_ = nullptr;
  uv_check_t check_;
  FlushTimer flush_timer_;
  uv_prepare_t prepare_;
  uv_signal_t signals_[3];
  int lifeline_[2] = {-1, -1};

  std::deque<JobSpec> queue_;
  std::vector<std::unique_ptr<Job>> running_;
  std::vector<std::unique_ptr<Job>> graveyard_;

  // The auditor fork server (see auditor/server.h): one exec per run
  // instead of one per job.
  bool StartServer();
  bool ServerSend(Job& job, int out_fd);
  void OnServerMessage(std::string_view m);
  void ServerGone(std::string_view why);
  void StopServer();
  static void OnServerReadable(uv_poll_t* h, int status, int events);
  int server_fd_ = -1;
  pid_t server_pid_ = -1;
  bool server_up_ = false;
  uv_poll_t server_poll_;
  ChildWatch server_watch_;
  std::map<int64_t, Job*> by_id_;
  int64_t next_id_ = 1;
  int64_t planned_ = 0;
  int64_t done_ = 0;
  int slots_ = 1;
  int64_t start_us_ = 0;
  bool stopping_ = false;
  bool interrupted_ = false;
  bool output_failed_ = false;
  bool harness_error_ = false;
  bool ended_ = false;
};

void Runner::Flush() {
  if (writer_.empty()) return;
  if (output_failed_) {
    writer_.Clear();
    return;
  }
  if (!writer_.Flush(STDOUT_FILENO)) {
    int e = errno;
    output_failed_ = true;
    Error(kProg, fmt::format("cannot write events to stdout: {}; stopping "
                             "the run", strerror(e)));
    Stop(false);
  }
}

void Runner::HarnessError(std::string_view message, int64_t job) {
  harness_error_ = true;
  JsonWriter& w = writer_.Begin("error");
  Key(w, "source");
  String(w, kProg);
  if (job >= 0) {
    Key(w, "job_id");
    w.Int64(job);
  }
  WriteText(w, "message", message);
  writer_.End();
}

void Runner::OnAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* job = static_cast<Job*>(h->data);
  size_t avail;
  buf->base = job->reader.Space(16 * 1024, &avail);
  buf->len = avail;
}

void Runner::OnRead(uv_stream_t* h, ssize_t n, const uv_buf_t*) {
  auto* job = static_cast<Job*>(h->data);
  Runner* self = job->runner;
  if (n > 0) job->reader.Commit(static_cast<size_t>(n));
  if (n < 0) job->reader.Finish();
  std::string_view line;
  while (job->reader.Next(&line)) self->OnLine(*job, line);
  if (self->writer_.batch().size() >= kFlushAt) self->Flush();
  if (n < 0) {
    job->eof = true;
    uv_read_stop(h);
    uv_close(reinterpret_cast<uv_handle_t*>(h), OnClosed);
    if (job->exited) self->JobDone(*job);
  }
}

// Lines from an auditor pass through unchanged: only their type is read,
// except the hello (checked, then dropped: the merged stream has ours) and
// job.start (for the test's pid, should the auditor die).
void Runner::OnLine(Job& job, std::string_view line) {
  if (line.empty()) return;
  std::string_view type = events::TypeOf(line);
  if (!events::LooksLikeEvent(line)) {
    HarnessError(fmt::format("weft-auditor for job {} ({}) wrote a line that "
                             "is not an event: {:.200}",
                             job.id, job.spec.name, line),
                 job.id);
    return;
  }
  if (!job.saw_hello) {
    job.saw_hello = true;
    std::string err;
    if (type != "hello" || !fields_.Load(events::Event(line), &err) ||
        !events::CheckHello(fields_, &err)) {
      HarnessError(fmt::format("weft-auditor for job {}: {}", job.id,
                               err.empty() ? "stream does not start with hello"
                                           : err),
                   job.id);
      kill(job.pid, SIGTERM);
    }
    return;
  }
  if (type == "job.start") {
    if (fields_.Load(events::Event(line))) {
      if (auto pid = fields_.Int("pid")) job.test_pid = static_cast<int>(*pid);
    }
  } else if (type == "job.end") {
    job.saw_end = true;
  }
  writer_.AppendRaw(line);
}

void Runner::OnExit(Job& job, int status) {
  if (job.exited) return;
  job.exited = true;
  if (job.via_server) by_id_.erase(job.id);
  if (status == -1)
    job.exit_status = -1;  // lost: its fork server died
  else if (WIFSIGNALED(status))
    job.term_signal = WTERMSIG(status);
  else
    job.exit_status = WEXITSTATUS(status);
  job.watch.Close();
  if (job.eof) JobDone(job);
  MaybeRelease(job);
}

void Runner::OnClosed(uv_handle_t* h) {
  auto* job = static_cast<Job*>(h->data);
  job->pipe_closed = true;
  job->runner->MaybeRelease(*job);
}

// A job's memory goes when its auditor has exited and its pipe is closed;
// the watch's handle closes in the same loop turn as the exit, and the Job
// (which owns it) is freed on a later turn, from the check handle.
void Runner::MaybeRelease(Job& job) {
  if (!job.exited || !job.pipe_closed || job.released) return;
  job.released = true;
  for (auto it = running_.begin(); it != running_.end(); ++it) {
    if (it->get() == &job) {
      graveyard_.push_back(std::move(*it));
      running_.erase(it);
      break;
    }
  }
  StartMore();
  MaybeEnd();
}

void Runner::JobDone(Job& job) {
  ++done_;
  if (job.saw_end) return;
  // The auditor died without finishing the job: a harness failure, and the
  // job must not pass. Clean up after it: its test may still be running.
  if (job.test_pid > 0) ::kill(-job.test_pid, SIGKILL);
  std::string how =
      !job.start_error.empty()
          ? fmt::format("could not be started ({})", job.start_error)
      : job.term_signal
          ? fmt::format("was killed by {}", SignalName(job.term_signal))
      : job.exit_status < 0
          ? std::string("was lost with the auditor fork server")
          : fmt::format("exited with status {}", job.exit_status);
  std::string message = fmt::format(
      "weft-auditor for job {} ({}) {} without finishing the job", job.id,
      job.spec.name, how);
  HarnessError(message, job.id);
  LostJobEnd(job.id, job.spec.name, message);
}

// A job.end on behalf of a job whose auditor cannot report: it fails.
void Runner::LostJobEnd(int64_t id, std::string_view name,
                        std::string_view message) {
  JsonWriter& w = writer_.Begin("job.end", -1, id);
  WriteText(w, "name", name);
  Key(w, "verdict");
  String(w, "fail");
  Key(w, "reasons");
  w.StartArray();
  events::TextValue(w, message);
  w.EndArray();
  Key(w, "harness_error");
  w.Bool(true);
  writer_.End();
}

bool Runner::StartServer() {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    return false;
  SpawnRequest req;
  req.argv = {o_.auditor, "--serve"};
  req.stdin_fd = sv[1];
  req.extra_fds = {{lifeline_[0], 3}};
  req.new_session = true;
  int rc = weft::Spawn(req, &server_pid_);
  close(sv[1]);
  if (rc != 0) {
    close(sv[0]);
    return false;
  }
  server_fd_ = sv[0];
  fcntl(server_fd_, F_SETFL, O_NONBLOCK);
  server_poll_.data = this;
  uv_poll_init(loop_, &server_poll_, server_fd_);
  uv_poll_start(&server_poll_, UV_READABLE, OnServerReadable);
  server_watch_.Start(loop_, server_pid_, [this](int, const struct rusage&) {
    server_pid_ = -1;
    server_watch_.Close();
    if (server_up_) ServerGone("the auditor fork server died");
  });
  server_up_ = true;
  return true;
}

bool Runner::ServerSend(Job& job, int out_fd) {
  if (!server_up_) return false;
  auditor::Options o;
  o.run = writer_.run();
  o.job = job.id;
  o.name = job.spec.name;
  o.timeout_s = o_.timeout_s;
  o.idle_timeout_s = o_.idle_timeout_s;
  o.exit_timeout_s = o_.exit_timeout_s;
  o.kill_grace_s = o_.kill_grace_s;
  o.keep_tmpdir = o_.keep_tmpdir;
  o.leaks_fail = o_.leaks_fail;
  o.stdin_path = o_.stdin_path;
  o.argv = job.spec.argv;
  std::string m = auditor::EncodeJob(o);
  for (;;) {
    if (auditor::SendWithFd(server_fd_, m, out_fd) >= 0) return true;
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      struct pollfd p = {server_fd_, POLLOUT, 0};
      poll(&p, 1, 1000);
      continue;
    }
    // Too big, or the server is gone: this job is exec'ed instead.
    return false;
  }
}

void Runner::OnServerReadable(uv_poll_t* h, int, int) {
  auto* self = static_cast<Runner*>(h->data);
  char buf[256];
  for (;;) {
    ssize_t n = recv(self->server_fd_, buf, sizeof buf, 0);
    if (n > 0) {
      self->OnServerMessage(std::string_view(buf, static_cast<size_t>(n)));
      continue;
    }
    if (n < 0 && (errno == EINTR)) continue;
    if (n < 0 && errno == EAGAIN) return;
    self->ServerGone("the auditor fork server closed its socket");
    return;
  }
}

void Runner::OnServerMessage(std::string_view m) {
  char kind = 0;
  long long job_id = 0, value = 0;
  if (sscanf(std::string(m).c_str(), "%c %lld %lld", &kind, &job_id, &value) != 3)
    return;
  auto it = by_id_.find(job_id);
  if (it == by_id_.end()) return;
  Job& job = *it->second;
  if (kind == 'S') {
    job.pid = static_cast<pid_t>(value);
    if (stopping_) kill(job.pid, SIGTERM);
  } else if (kind == 'E') {
    OnExit(job, static_cast<int>(value));
  } else if (kind == 'F') {
    job.start_error = strerror(static_cast<int>(value));
    OnExit(job, 0);
  }
}

// The server is gone: jobs it had not reported as ended never will be.
void Runner::ServerGone(std::string_view why) {
  if (!server_up_) return;
  bool busy = !by_id_.empty();
  StopServer();
  if (busy) HarnessError(why);
  std::vector<Job*> lost;
  for (auto& [id, job] : by_id_) lost.push_back(job);
  for (Job* job : lost) {
    // Its auditor may still run, orphaned: have it stop its test and end.
    if (job->pid > 0) kill(job->pid, SIGTERM);
    OnExit(*job, -1);
  }
}

void Runner::StopServer() {
  if (!server_up_) return;
  server_up_ = false;
  uv_poll_stop(&server_poll_);
  uv_close(reinterpret_cast<uv_handle_t*>(&server_poll_), nullptr);
  close(server_fd_);  // the server sees EOF and exits
  server_fd_ = -1;
}

void Runner::StartMore() {
  while (!stopping_ && !queue_.empty() &&
         static_cast<int>(running_.size()) < slots_) {
    auto job = std::make_unique<Job>();
    job->id = next_id_++;
    job->spec = std::move(queue_.front());
    queue_.pop_front();
    if (!StartJob(std::move(job))) break;
  }
}

bool Runner::StartJob(std::unique_ptr<Job> job) {
  std::vector<std::string> args = {
      o_.auditor,        "--run",     writer_.run(), "--job",
      std::to_string(job->id), "--name", job->spec.name, "--lifeline-fd",
      "3"};
  if (o_.timeout_s > 0) {
    args.push_back("--timeout");
    args.push_back(fmt::format("{}", o_.timeout_s));
  }
  if (o_.idle_timeout_s > 0) {
    args.push_back("--idle-timeout");
    args.push_back(fmt::format("{}", o_.idle_timeout_s));
  }
  args.push_back("--exit-timeout");
  args.push_back(fmt::format("{}", o_.exit_timeout_s));
  args.push_back("--kill-grace");
  args.push_back(fmt::format("{}", o_.kill_grace_s));
  if (o_.keep_tmpdir) args.push_back("--keep");
  args.push_back(o_.leaks_fail ? "--leaks=fail" : "--leaks=warn");
  if (!o_.stdin_path.empty()) args.push_back("--stdin=" + o_.stdin_path);
  args.push_back("--");
  for (const auto& a : job->spec.argv) args.push_back(a);
  job->pipe.data = job.get();
  job->runner = this;

  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    HarnessError(fmt::format("pipe: {}", strerror(errno)));
    Stop(false);
    return false;
  }
  // Room for an auditor's whole batch (256 KiB): a chatty test's events
  // reach us in fewer, larger reads. Memory is only used when filled.
  fcntl(out[1], F_SETPIPE_SZ, 512 * 1024);
  int rc = 0;
  if (ServerSend(*job, out[1])) {
    job->via_server = true;
    close(out[1]);
  } else {
    SpawnRequest req;
    req.argv = std::move(args);
    req.stdout_fd = out[1];
    req.extra_fds = {{lifeline_[0], 3}};
    // Its own session: a terminal's Ctrl-C reaches us, and we stop each
    // job in order; it never reaches auditors and tests behind our back.
    req.new_session = true;
    rc = weft::Spawn(req, &job->pid);
    close(out[1]);
  }
  if (rc != 0) {
    close(out[0]);
    // Cannot run the auditor at all: this job fails, and nothing else
    // will start either.
    std::string message =
        fmt::format("cannot start {}: {}", o_.auditor, strerror(rc));
    HarnessError(message, job->id);
    LostJobEnd(job->id, job->spec.name, message);
    ++done_;
    Stop(false);
    return false;
  }
  uv_pipe_init(loop_, &job->pipe, 0);
  uv_pipe_open(&job->pipe, out[0]);
  Job* j = job.get();
  if (job->via_server) {
    by_id_[job->id] = j;
  } else if (int wrc = job->watch.Start(
                 loop_, job->pid, [this, j](int status, const struct rusage&) { OnExit(*j, status); })) {
    HarnessError(fmt::format("cannot watch weft-auditor: {}", uv_strerror(wrc)));
    kill(job->pid, SIGKILL);
  }
  uv_read_start(reinterpret_cast<uv_stream_t*>(&job->pipe), OnAlloc, OnRead);
  running_.push_back(std::move(job));
  return true;
}

void Runner::Stop(bool interrupted) {
  if (interrupted) interrupted_ = true;
  stopping_ = true;
  // Each auditor stops its test in order (TERM, grace, KILL) and reports.
  for (auto& job : running_)
    if (!job->exited && job->pid > 0) kill(job->pid, SIGTERM);
  MaybeEnd();
}

void Runner::OnSignal(uv_signal_t* s, int) {
  auto* self = static_cast<Runner*>(s->data);
  // A second signal makes each auditor skip the grace (it KILLs at once).
  self->Stop(true);
}

void Runner::OnCheck(uv_check_t* c) {
  auto* self = static_cast<Runner*>(c->data);
  if (!self->writer_.empty()) self->flush_timer_.Kick();
}

// Before polling: jobs released on the last turn have had their handles'
// close callbacks run (libuv closes after the check phase); free them.
void Runner::OnPrepare(uv_prepare_t* p) {
  static_cast<Runner*>(p->data)->graveyard_.clear();
}

void Runner::MaybeEnd() {
  if (ended_ || !running_.empty()) return;
  if (!queue_.empty() && !stopping_) return;
  ended_ = true;
  StopServer();
  int64_t cancelled = static_cast<int64_t>(queue_.size());
  queue_.clear();
  JsonWriter& w = writer_.Begin("run.end");
  Key(w, "jobs_done");
  w.Int64(done_);
  Key(w, "cancelled");
  w.Int64(cancelled);
  Key(w, "interrupted");
  w.Bool(interrupted_);
  Key(w, "harness_error");
  w.Bool(harness_error_ || output_failed_);
  Key(w, "duration_us");
  w.Int64(events::NowMicros() - start_us_);
  writer_.End();
  Flush();
  uv_close(reinterpret_cast<uv_handle_t*>(&check_), nullptr);
  flush_timer_.Close();
  uv_close(reinterpret_cast<uv_handle_t*>(&prepare_), nullptr);
  for (auto& s : signals_) uv_close(reinterpret_cast<uv_handle_t*>(&s), nullptr);
}

int Runner::Run() {
  if (o_.parent_pid > 0) {
    // Started by weft: if it dies (even by SIGKILL), stop the run.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != o_.parent_pid) return 130;
  }
  writer_.Hello(kProg);
  start_us_ = events::NowMicros();

  std::vector<JobSpec> specs;
  std::vector<std::string> warnings;
  std::string err;
  if (!Discover(o_.paths, &specs, &warnings, &err)) {
    Error(kProg, err);
    return 2;
  }
  for (const auto& w : warnings) Warning(kProg, w);
  planned_ = static_cast<int64_t>(specs.size());
  for (auto& s : specs) queue_.push_back(std::move(s));
  slots_ = o_.jobs > 0 ? o_.jobs
                       : std::max(1, static_cast<int>(
                                         std::thread::hardware_concurrency()));

  char host[256] = "";
  gethostname(host, sizeof host - 1);
  char cwd[4096] = "";
  if (!getcwd(cwd, sizeof cwd)) cwd[0] = 0;
  {
    JsonWriter& w = writer_.Begin("run.start", start_us_);
    Key(w, "argv");
    w.StartArray();
    for (const auto& a : o_.argv) events::TextValue(w, a);
    w.EndArray();
    WriteText(w, "cwd", cwd);
    WriteText(w, "host", host);
    Key(w, "jobs");
    w.Int64(planned_);
    Key(w, "slots");
    w.Int(slots_);
    if (o_.timeout_s > 0) {
      Key(w, "timeout_s");
      w.Double(o_.timeout_s);
    }
    if (o_.idle_timeout_s > 0) {
      Key(w, "idle_timeout_s");
      w.Double(o_.idle_timeout_s);
    }
    writer_.End();
  }

  loop_ = uv_default_loop();
  uv_disable_stdio_inheritance();
  // Every auditor holds the read end; we hold the write end and never
  // write. When we die, however we die, they all see EOF and stop.
  if (pipe2(lifeline_, O_CLOEXEC) != 0) {
    Error(kProg, fmt::format("pipe: {}", strerror(errno)));
    return 3;
  }
  uv_check_init(loop_, &check_);
  check_.data = this;
  uv_check_start(&check_, OnCheck);
  flush_timer_.Init(loop_, [this] { Flush(); });
  uv_prepare_init(loop_, &prepare_);
  prepare_.data = this;
  uv_prepare_start(&prepare_, OnPrepare);
  int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
  for (int i = 0; i < 3; ++i) {
    uv_signal_init(loop_, &signals_[i]);
    signals_[i].data = this;
    uv_signal_start(&signals_[i], OnSignal, sigs[i]);
  }

  if (planned_ == 0) {
    Warning(kProg, o_.paths.empty()
                       ? "no tests found"
                       : fmt::format("no tests found in {}",
                                     fmt::join(o_.paths, ", ")));
  }
  if (planned_ > 0 && o_.fork_server && !StartServer())
    Warning(kProg, "cannot start the auditor fork server; exec'ing each auditor");
  StartMore();
  MaybeEnd();
  Flush();
  uv_run(loop_, UV_RUN_DEFAULT);
  graveyard_.clear();
  uv_loop_close(loop_);
  close(lifeline_[0]);
  close(lifeline_[1]);

  if (output_failed_ || harness_error_) return 3;
  if (interrupted_) return 130;
  if (planned_ == 0) return 4;
  return 0;
}

}  // namespace

int Run(const Options& options) {
  Options o = options;
  if (o.auditor.empty()) o.auditor = SelfDir() + "/weft-auditor";
  Runner runner(o);
  return runner.Run();
}

}  // namespace weft::runner
