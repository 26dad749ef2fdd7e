#include "runner.h"

#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>
#include <weft/common/spawn.h>
#include <weft/common/util.h>
#include <weft/events/event.h>
#include <weft/events/line_reader.h>
#include <weft/events/writer.h>

#include "history.h"
#include "plan.h"
#include "protocol.h"
#include "services.h"
#include "stages.h"

#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <algorithm>
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

// One datagram with an fd to a non-blocking socket, waiting while it is
// full; false when it cannot be sent (too big, or no one at the other end).
bool SendWaiting(int sock, std::string_view message, int fd) {
  for (;;) {
    if (auditor::SendWithFd(sock, message, fd) >= 0) return true;
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return false;
    struct pollfd p = {sock, POLLOUT, 0};
    poll(&p, 1, 1000);
  }
}

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
  std::string stage;         // the stage that forks its test (its socket)
  bool retry = false;        // its job.end said it will be rerun
  bool requeue = false;      // …and it will be (decided when its pipe ends)
  bool bailed = false;       // its own "Bail out!" stopped the run
};

class Runner {
 public:
  explicit Runner(const Options& o)
      : o_(o), writer_(o.run.empty() ? NewRunId() : o.run, -1) {}
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  int Run();

 private:
  // The plan of one run: its jobs, ordered; false with *err (a usage
  // problem). Warnings go to *warnings.
  bool PlanRun(Options& o, bool streaming, std::vector<JobSpec>* specs,
               std::vector<std::string>* warnings, std::string* err);
  // Starts a run of these jobs (the queue is empty, nothing runs).
  void BeginRun(std::vector<JobSpec> specs, bool streaming,
                const std::vector<std::string>& warnings);
  // The run's jobs are all done: run.end, then the next run or the end.
  void EndRun();
  void Shutdown();
  void EnsureStages();
  void StartPendingRun();
  void ShutdownRequest(std::string_view line);
  static void OnGrace(uv_timer_t* t);
  void StartMore();
  bool StartJob(std::unique_ptr<Job> job);
  void Enqueue(JobSpec spec);
  void Bail(std::string_view reason);
  void CancelQueue(std::string_view reason);
  void JobEnded(Job& job, std::string_view line);
  // Job specs and control lines from --jobs-from on a pipe (the run lasts
  // until it ends), and control lines from --control (it does not).
  struct Control {
    Runner* runner = nullptr;
    uv_pipe_t pipe;
    events::LineReader reader{16 * 1024};
    bool open = false;
    bool jobs = false;  // job specs allowed
    uint64_t line = 0;
    std::string name;
  };
  bool OpenControl(Control& c, int fd);
  // Serve mode: a run request from the control stream.
  void RequestRun(Control& c, std::string_view line);
  void CloseControl(Control& c);
  void ControlLine(Control& c, std::string_view line);
  static void OnControlAlloc(uv_handle_t* h, size_t, uv_buf_t* buf);
  static void OnControlRead(uv_stream_t* h, ssize_t n, const uv_buf_t*);
  Control jobs_in_, control_in_;
  Config config_;
  std::vector<std::string> job_env_;  // WEFT_JOBS, for every job
  std::map<std::string, int> group_max_, group_running_;
  bool grouped_ = false;  // some job has a group
  int64_t failures_ = 0;  // final failures (not those retried)
  int bail_after_ = 0;
  std::string bail_reason_;
  bool bailed_ = false;
  int64_t cancelled_ = 0;
  std::string order_;
  uint64_t seed_ = 0;
  // Repeat mode and serve mode: what lasts across runs.
  Options run_opts_;              // the current run's options
  bool in_run_ = false;           // a run is going on
  bool shutdown_ = false;         // no run after this one
  bool shut_ = false;             // our handles are closed
  bool any_harness_error_ = false, any_interrupted_ = false;
  int64_t repeat_total_ = 1;      // 0: until stopped
  bool until_fail_ = false;
  int64_t repetition_ = 0;
  int64_t failed_runs_ = 0;
  int64_t flaky_failures_ = 0;    // flaky jobs, when flaky ones fail the run
  bool flaky_fails_ = false;
  std::vector<JobSpec> base_specs_;  // each repetition's jobs
  uint64_t base_seed_ = 0;
  struct Rate {
    int64_t runs = 0, failed = 0, flaky = 0;
  };
  std::map<std::string, Rate> rates_;  // by test name, over the repetitions
  void Rated(const std::string& name, bool failed, bool flaky);
  struct PendingRun {
    Options o;
    std::string run;
    // weft watch: the files that changed (from the project root); the run
    // is of the tests among them, or of all when none is a test.
    std::vector<std::string> changed;
    bool coalesce = false;  // replaces a coalescing request not yet started
    std::string error;      // the request cannot be run: why
  };
  std::vector<std::string> changed_;  // the current run's
  // Each test's "deps" (the files a staged test loaded beyond its stage),
  // from its last run: a change to one of them reruns it (weft watch).
  std::map<std::string, std::vector<std::string>> deps_;
  std::deque<PendingRun> pending_runs_;
  int base_slots_ = 1;
  // weft.toml's services, started before each run's jobs, stopped after.
  std::unique_ptr<Services> services_;
  bool services_ready_ = true;
  bool services_stopping_ = false;
  // weft.toml's stages, started when a run needs them, kept across runs.
  std::unique_ptr<Stages> stages_;
  bool stages_ready_ = true;
  uv_timer_t grace_timer_;
  bool grace_armed_ = false;
  void OnLine(Job& job, std::string_view line);
  void JobDone(Job& job);
  void MaybeEnd();
  void MaybeRelease(Job& job);
  void LostJobEnd(int64_t id, std::string_view name, std::string_view message);
  // Stops the run: "sig" to every auditor (SIGTERM: interrupted; SIGUSR1:
  // the run bailed out).
  void Stop(bool interrupted, int sig = SIGTERM);
  int stop_signal_ = 0;
  uint64_t last_signal_ms_ = 0;
  void Flush();
  void HarnessError(std::string_view message, int64_t job = -1);
  void RunWarning(std::string_view message);
  void ControlWarning(std::string_view message);

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
  Options opts_;
  std::vector<std::unique_ptr<Job>> running_;
  std::vector<std::unique_ptr<Job>> graveyard_;

  // The auditor fork server (see auditor/server.h): one exec per run
  // instead of one per job.
  bool StartServer();
  bool ServerSend(Job& job, int out_fd);
  void ServerGone(std::string_view why);
  void StopServer();
  void CloseServer();
  static void OnServerReadable(uv_poll_t* h, int status, int events);
  int server_fd_ = -1;
  pid_t server_pid_ = -1;
  bool server_up_ = false;
  uv_poll_t server_poll_;
  ChildWatch server_watch_;
  // The server's workers, each an auditor process reused job after job,
  // that we talk to directly (see auditor/server.h).
  struct Worker {
    Runner* runner = nullptr;
    int sock = -1;
    pid_t pid = -1;        // from its "H"
    Job* job = nullptr;    // the job it runs
    bool last = false;     // it takes no other job
    bool dropped = false;  // closed; freed when its handle is
    uv_poll_t poll;
  };
  std::vector<Worker*> workers_;
  Worker* IdleWorker();
  static void OnWorkerReadable(uv_poll_t* h, int status, int events);
  void ReadWorker(Worker& w);
  void OnWorkerMessage(Worker& w, std::string_view m);
  void DropWorker(Worker& w);
  int64_t next_id_ = 1;
  int64_t planned_ = 0;
  int64_t done_ = 0;
  int slots_ = 1;
  // A make jobserver (MAKEFLAGS --jobserver-auth): besides the one job we
  // may always run, each running job holds a token read from it, given
  // back when the job ends and the queue no longer needs it.
  bool OpenJobserver();
  void WantToken();
  void ReturnTokens(size_t keep);
  static void OnToken(uv_poll_t* h, int status, int events);
  int js_read_ = -1, js_write_ = -1;
  uv_poll_t js_poll_;
  bool js_polling_ = false;
  std::string tokens_;  // held, to give back byte for byte
  int64_t start_us_ = 0;
  bool stopping_ = false;
  bool interrupted_ = false;
  bool output_failed_ = false;
  bool harness_error_ = false;
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

// A problem that does not fail the run: on stderr and in the stream.
void Runner::RunWarning(std::string_view message) {
  Warning(kProg, message);
  JsonWriter& w = writer_.Begin("warning");
  Key(w, "source");
  String(w, kProg);
  WriteText(w, "message", message);
  writer_.End();
}

// A bad control line: in the stream when a run goes on (or we serve
// none); between a persistent runner's runs, on stderr only (a run's log
// has ended, and the next is not begun).
void Runner::ControlWarning(std::string_view message) {
  if (in_run_ || !o_.serve)
    RunWarning(message);
  else
    Warning(kProg, message);
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
      // (A worker's pid stays with its job after "D", when the worker may
      // already run the next job.)
      if (job.pid > 0 && !job.exited) kill(job.pid, SIGTERM);
    }
    return;
  }
  if (type == "job.start") {
    if (fields_.Load(events::Event(line))) {
      if (auto pid = fields_.Int("pid")) job.test_pid = static_cast<int>(*pid);
    }
  } else if (type == "bail") {
    // A test's "Bail out!" stops the run now, not when the test ends.
    writer_.AppendRaw(line);
    if (!stopping_ && fields_.Load(events::Event(line))) {
      job.bailed = true;
      auto reason = fields_.Str("reason").value_or("");
      Bail(fmt::format("{} bailed out{}{}", job.spec.name, reason.empty() ? "" : ": ",
                       reason));
    }
    return;
  } else if (type == "deps") {
    if (fields_.Load(events::Event(line))) {
      std::vector<std::string> files;
      fields_.StrArray("files", &files);
      std::sort(files.begin(), files.end());
      deps_[job.spec.name] = std::move(files);
    }
  } else if (type == "job.end") {
    job.saw_end = true;
    writer_.AppendRaw(line);
    JobEnded(job, line);
    return;
  }
  writer_.AppendRaw(line);
}

// A job's last word: a retry to queue, a failure to count, a bail out.
void Runner::JobEnded(Job& job, std::string_view line) {
  if (!fields_.Load(events::Event(line))) return;
  if (fields_.Bool("retry").value_or(false)) {
    job.retry = true;  // queued when its slot frees (MaybeRelease)
    return;
  }
  bool failed = fields_.Str("verdict").value_or("fail") == "fail";
  bool flaky = !failed && fields_.Bool("flaky").value_or(false);
  // A job stopped with its run (a bail, Ctrl-C) did not fail on its own;
  // the one that bailed out did.
  if (!stopping_ || job.bailed) Rated(job.spec.name, failed, flaky);
  if (flaky && flaky_fails_) ++flaky_failures_;
  if (failed && !stopping_) {
    ++failures_;
    if (auto bail = fields_.Str("bail_reason")) {
      Bail(fmt::format("{} bailed out{}{}", job.spec.name, bail->empty() ? "" : ": ",
                       *bail));
    } else if (bail_after_ > 0 && failures_ >= bail_after_) {
      Bail(fmt::format("{} test{} failed (--bail {})", failures_,
                       failures_ == 1 ? "" : "s", bail_after_));
    }
  }
}

// Stops the current run: queued jobs are cancelled (each reported), running
// ones stopped by their auditors (TERM, grace, KILL).
void Runner::Bail(std::string_view reason) {
  if (bailed_ || !in_run_) return;
  bailed_ = true;
  bail_reason_ = std::string(reason);
  {
    JsonWriter& w = writer_.Begin("run.bail");
    WriteText(w, "reason", reason);
    Key(w, "cancelled");
    w.Int64(static_cast<int64_t>(queue_.size()));
    writer_.End();
  }
  CancelQueue("the run bailed out");
  Stop(false, SIGUSR1);
}

// Every queued job is cancelled (each reported, with the reason).
void Runner::CancelQueue(std::string_view reason) {
  for (const JobSpec& spec : queue_) {
    JsonWriter& w = writer_.Begin("job.cancel", -1, spec.id);
    WriteText(w, "name", spec.name);
    WriteText(w, "reason", reason);
    writer_.End();
  }
  cancelled_ += static_cast<int64_t>(queue_.size());
  queue_.clear();
}

void Runner::OnExit(Job& job, int status) {
  if (job.exited) return;
  job.exited = true;
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
  if (!job.spec.group.empty()) --group_running_[job.spec.group];
  if (job.requeue && stopping_) {
    ++done_;  // the run stopped before its retry: its failure stands
  } else if (job.requeue) {
    // Next in line, in the slot just freed.
    JobSpec again = job.spec;
    ++again.attempt;
    queue_.push_front(std::move(again));
  }
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

void Runner::Rated(const std::string& name, bool failed, bool flaky) {
  if (repeat_total_ == 1) return;
  Rate& r = rates_[name];
  ++r.runs;
  if (failed) ++r.failed;
  if (flaky) ++r.flaky;
}

void Runner::JobDone(Job& job) {
  // Decided once: a stop or bail after this leaves it as counted.
  job.requeue = job.retry && !stopping_;
  if (!job.requeue) ++done_;  // jobs, not attempts
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
  Rated(job.spec.name, true, false);
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
  Worker* w = IdleWorker();
  if (!w) return false;
  auditor::Options o;
  o.run = writer_.run();
  o.job = job.id;
  o.name = job.spec.name;
  o.limits = job.spec.limits;
  o.cwd = job.spec.cwd;
  o.env = job_env_;
  o.env.insert(o.env.end(), job.spec.env.begin(), job.spec.env.end());
  o.attempt = job.spec.attempt;
  o.attempts = job.spec.retries + 1;
  o.argv = job.spec.argv;
  o.stage = job.stage;
  // Too big, or the worker is gone: this job is exec'ed instead.
  if (!SendWaiting(w->sock, auditor::EncodeJob(o), out_fd)) return false;
  w->job = &job;
  return true;
}

// A worker with no job; a new one (asked of the server) when none is idle.
Runner::Worker* Runner::IdleWorker() {
  for (Worker* w : workers_)
    if (!w->job && !w->last) return w;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return nullptr;
  bool sent = SendWaiting(server_fd_, "W", sv[1]);
  close(sv[1]);
  if (!sent) {
    close(sv[0]);
    return nullptr;
  }
  // Its "H" and the job's messages come as it gets to them; the job's
  // request waits in the socket meanwhile.
  auto* w = new Worker;
  w->runner = this;
  w->sock = sv[0];
  fcntl(w->sock, F_SETFL, O_NONBLOCK);
  w->poll.data = w;
  uv_poll_init(loop_, &w->poll, w->sock);
  uv_poll_start(&w->poll, UV_READABLE, OnWorkerReadable);
  workers_.push_back(w);
  return w;
}

void Runner::OnWorkerReadable(uv_poll_t* h, int, int) {
  auto* w = static_cast<Worker*>(h->data);
  w->runner->ReadWorker(*w);
}

// What a worker said. The server holds a copy of the worker's end of the
// socket until it has reaped the worker and said how it ended ("X") on it,
// so everything about a worker comes in order here, and its socket ends
// after its "X" (or when the server is gone).
void Runner::ReadWorker(Worker& w) {
  char buf[64];
  while (!w.dropped) {
    ssize_t n = recv(w.sock, buf, sizeof buf, 0);
    if (n > 0) {
      OnWorkerMessage(w, std::string_view(buf, static_cast<size_t>(n)));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (Job* job = w.job) {  // no "X": the server is gone
      w.job = nullptr;
      OnExit(*job, -1);
    }
    DropWorker(w);
  }
}

void Runner::OnWorkerMessage(Worker& w, std::string_view m) {
  std::string text(m);
  long long value = 0;
  if (text[0] == 'H' && sscanf(text.c_str(), "H %lld", &value) == 1) {
    w.pid = static_cast<pid_t>(value);
  } else if (text[0] == 'G' && w.job) {
    w.job->pid = w.pid;
    if (stopping_ && w.pid > 0) kill(w.pid, stop_signal_ ? stop_signal_ : SIGTERM);
  } else if (text[0] == 'D' && sscanf(text.c_str(), "D %lld", &value) == 1) {
    if (m.ends_with(" last") || !server_up_) w.last = true;
    if (Job* job = w.job) {
      w.job = nullptr;
      OnExit(*job, W_EXITCODE(static_cast<int>(value), 0));
    }
    // With the server gone a worker takes no other job: ours ends here.
    if (!server_up_) DropWorker(w);
  } else if (text[0] == 'X' && sscanf(text.c_str(), "X %lld", &value) == 1) {
    // It was reaped: its pid is no one's to signal any more.
    w.last = true;
    pid_t dead = w.pid;
    w.pid = -1;
    if (Job* job = w.job) {
      w.job = nullptr;
      if (job->pid == dead) job->pid = -1;
      OnExit(*job, static_cast<int>(value));
    }
  } else if (text[0] == 'F' && sscanf(text.c_str(), "F %lld", &value) == 1) {
    w.last = true;
    if (Job* job = w.job) {
      w.job = nullptr;
      job->start_error = strerror(static_cast<int>(value));
      OnExit(*job, 0);
    }
  }
}

void Runner::DropWorker(Worker& w) {
  if (w.dropped) return;
  w.dropped = true;
  std::erase(workers_, &w);
  uv_close(reinterpret_cast<uv_handle_t*>(&w.poll),
           [](uv_handle_t* h) { delete static_cast<Worker*>(h->data); });
  close(w.sock);  // it sees EOF and exits (after its job)
}

// The server says nothing on its own socket (what it says of a worker goes
// on that worker's); its end is the news.
void Runner::OnServerReadable(uv_poll_t* h, int, int) {
  auto* self = static_cast<Runner*>(h->data);
  char buf[256];
  for (;;) {
    ssize_t n = recv(self->server_fd_, buf, sizeof buf, 0);
    if (n > 0) continue;
    if (n < 0 && (errno == EINTR)) continue;
    if (n < 0 && errno == EAGAIN) return;
    self->ServerGone("the auditor fork server closed its socket");
    return;
  }
}

// The server is gone. Its workers still talk to us: a job already given
// to one ends as it says (its worker takes no other); one whose worker
// ends without a "D" is lost. Later jobs get exec'ed auditors.
void Runner::ServerGone(std::string_view why) {
  if (!server_up_) return;
  bool busy = false;
  for (Worker* w : workers_) busy = busy || w->job;
  CloseServer();
  std::vector<Worker*> idle;
  for (Worker* w : workers_) {
    w->last = true;
    if (!w->job) idle.push_back(w);
  }
  for (Worker* w : idle) DropWorker(*w);
  if (busy) HarnessError(why);
}

void Runner::StopServer() {
  while (!workers_.empty()) DropWorker(*workers_.back());
  CloseServer();
}

// Our end of the server's socket: the server sees EOF and exits once its
// workers have.
void Runner::CloseServer() {
  if (!server_up_) return;
  server_up_ = false;
  uv_poll_stop(&server_poll_);
  uv_close(reinterpret_cast<uv_handle_t*>(&server_poll_), nullptr);
  close(server_fd_);
  server_fd_ = -1;
}

void Runner::Enqueue(JobSpec spec) {
  spec.id = next_id_++;
  if (!spec.group.empty()) grouped_ = true;
  queue_.push_back(std::move(spec));
}

// Fills free slots from the queue, in order, skipping jobs whose group is
// at its limit (they keep their place).
void Runner::StartMore() {
  if (!services_ready_ || !stages_ready_) return;  // the jobs wait for them
  while (!stopping_ && !queue_.empty() &&
         static_cast<int>(running_.size()) < slots_) {
    auto it = queue_.begin();
    if (grouped_) {
      for (; it != queue_.end(); ++it) {
        if (it->group.empty()) break;
        // A group weft.toml does not define (named by a job spec) is serial.
        auto max = group_max_.find(it->group);
        int limit = max == group_max_.end() ? 1 : max->second;
        if (group_running_[it->group] < limit) break;
      }
      if (it == queue_.end()) break;  // every queued job waits for its group
    }
    auto job = std::make_unique<Job>();
    job->spec = std::move(*it);
    job->id = job->spec.id;
    queue_.erase(it);
    if (!job->spec.group.empty()) ++group_running_[job->spec.group];
    if (!StartJob(std::move(job))) break;
  }
  if (js_read_ >= 0) {
    if (!stopping_ && !queue_.empty() && static_cast<int>(running_.size()) >= slots_)
      WantToken();
    else if (queue_.empty() || stopping_)
      ReturnTokens(running_.size() > 0 ? running_.size() - 1 : 0);
  }
}

bool Runner::OpenJobserver() {
  const char* flags = getenv("MAKEFLAGS");
  if (!flags) return false;
  std::string_view f(flags);
  std::string_view auth;
  for (std::string_view key : {"--jobserver-auth=", "--jobserver-fds="}) {
    size_t at = f.rfind(key);
    if (at == std::string_view::npos) continue;
    auth = f.substr(at + key.size());
    auth = auth.substr(0, auth.find(' '));
    break;
  }
  if (auth.empty()) return false;
  if (auth.starts_with("fifo:")) {
    std::string path(auth.substr(5));
    js_read_ = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    js_write_ = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  } else {
    int r = -1, w = -1;
    if (sscanf(std::string(auth).c_str(), "%d,%d", &r, &w) != 2 || r < 0 || w < 0)
      return false;
    // Our own open file description of the same pipe: non-blocking for
    // us, without changing it for make and the other jobs sharing it.
    js_read_ = open(fmt::format("/proc/self/fd/{}", r).c_str(),
                    O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    js_write_ = fcntl(w, F_GETFD) >= 0 ? fcntl(w, F_DUPFD_CLOEXEC, 3) : -1;
  }
  if (js_read_ < 0 || js_write_ < 0) {
    Warning(kProg, fmt::format("MAKEFLAGS names a jobserver ({}) that cannot be "
                               "opened; running {} at a time",
                               auth, slots_));
    if (js_read_ >= 0) close(js_read_);
    if (js_write_ >= 0) close(js_write_);
    js_read_ = js_write_ = -1;
    return false;
  }
  uv_poll_init(loop_, &js_poll_, js_read_);
  js_poll_.data = this;
  return true;
}

void Runner::WantToken() {
  if (js_polling_) return;
  js_polling_ = true;
  uv_poll_start(&js_poll_, UV_READABLE, OnToken);
}

void Runner::OnToken(uv_poll_t* h, int, int) {
  auto* self = static_cast<Runner*>(h->data);
  char c;
  ssize_t n = read(self->js_read_, &c, 1);
  if (n == 1) {
    self->tokens_.push_back(c);
    ++self->slots_;
  }
  bool want = !self->stopping_ && !self->queue_.empty() &&
              static_cast<int>(self->running_.size()) >= self->slots_;
  if (!want) {
    uv_poll_stop(h);
    self->js_polling_ = false;
  }
  self->StartMore();
}

// Gives tokens back until "keep" are held.
void Runner::ReturnTokens(size_t keep) {
  while (tokens_.size() > keep) {
    char c = tokens_.back();
    if (write(js_write_, &c, 1) != 1 && errno == EINTR) continue;
    tokens_.pop_back();
    --slots_;
  }
  if (js_polling_ && (queue_.empty() || stopping_)) {
    uv_poll_stop(&js_poll_);
    js_polling_ = false;
  }
}

bool Runner::StartJob(std::unique_ptr<Job> job) {
  if (stages_) job->stage = stages_->SocketFor(job->spec);
  // An exec'ed auditor's command line (when the fork server cannot serve).
  auto exec_args = [&] {
    std::vector<std::string> args = {
        o_.auditor,        "--run",     writer_.run(), "--job",
        std::to_string(job->id), "--name", job->spec.name, "--lifeline-fd",
        "3"};
    const JobSpec& spec = job->spec;
    const JobLimits& l = spec.limits;
    if (l.timeout_s > 0) args.push_back(fmt::format("--timeout={}", l.timeout_s));
    if (l.idle_timeout_s > 0)
      args.push_back(fmt::format("--idle-timeout={}", l.idle_timeout_s));
    args.push_back(fmt::format("--exit-timeout={}", l.exit_timeout_s));
    args.push_back(fmt::format("--kill-grace={}", l.kill_grace_s));
    if (l.keep_tmpdir) args.push_back("--keep");
    args.push_back(l.leaks_fail ? "--leaks=fail" : "--leaks=warn");
    if (!l.stdin_path.empty()) args.push_back("--stdin=" + l.stdin_path);
    if (!spec.cwd.empty()) args.push_back("--cwd=" + spec.cwd);
    args.push_back(fmt::format("--attempt={}", spec.attempt));
    args.push_back(fmt::format("--attempts={}", spec.retries + 1));
    for (const auto& e : job_env_) args.push_back("--env=" + e);
    for (const auto& e : spec.env) args.push_back("--env=" + e);
    if (!job->stage.empty()) args.push_back("--stage=" + job->stage);
    args.push_back("--");
    for (const auto& a : job->spec.argv) args.push_back(a);
    return args;
  };
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
    req.argv = exec_args();
    req.stdout_fd = out[1];
    req.extra_fds = {{lifeline_[0], 3}};
    // Its own session: a terminal's Ctrl-C reaches us, and we stop each
    // job in order; it never reaches auditors and tests behind our back.
    req.new_session = true;
    // A stop sent before it is ready waits for it (it reports the job).
    req.block_stop_signals = true;
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
  if (!job->via_server) {
    if (int wrc = job->watch.Start(loop_, job->pid, [this, j](int status, const struct rusage&) {
          OnExit(*j, status);
        })) {
      HarnessError(fmt::format("cannot watch weft-auditor: {}", uv_strerror(wrc)));
      kill(job->pid, SIGKILL);
    }
  }
  uv_read_start(reinterpret_cast<uv_stream_t*>(&job->pipe), OnAlloc, OnRead);
  running_.push_back(std::move(job));
  return true;
}

void Runner::Stop(bool interrupted, int sig) {
  if (!in_run_) {
    // Between runs (serve mode): nothing to stop; a shutdown ends us now.
    if (shutdown_) Shutdown();
    return;
  }
  if (interrupted) interrupted_ = true;
  if (stopping_ && services_ && sig == SIGTERM) services_->Hurry();
  stopping_ = true;
  // A second stop (a second Ctrl-C) is always SIGTERM: each auditor then
  // skips the grace and KILLs.
  stop_signal_ = stop_signal_ == 0 ? sig : SIGTERM;
  // Each auditor stops its test in order (TERM, grace, KILL) and reports.
  for (auto& job : running_)
    if (!job->exited && job->pid > 0) kill(job->pid, stop_signal_);
  MaybeEnd();
}

void Runner::OnSignal(uv_signal_t* s, int) {
  auto* self = static_cast<Runner*>(s->data);
  // One Ctrl-C can reach us twice: from the terminal (to the whole
  // foreground group) and passed on by weft when it cannot tell it came
  // from a terminal (a `kill -INT -PGID`). Signals this close together are
  // one request; a person's second Ctrl-C comes later.
  uint64_t now = uv_hrtime() / 1000000;
  if (self->last_signal_ms_ != 0 && now - self->last_signal_ms_ < 200) return;
  self->last_signal_ms_ = now;
  // No run after this one; a second signal makes each auditor skip the
  // grace (it KILLs at once).
  self->shutdown_ = true;
  self->pending_runs_.clear();
  self->Stop(true);
}

void Runner::OnCheck(uv_check_t* c) {
  auto* self = static_cast<Runner*>(c->data);
  if (!self->writer_.empty()) self->flush_timer_.Kick();
}

// Before polling: jobs released on the last turn have had their handles'
// close callbacks run (libuv closes after the check phase); free them.
void Runner::OnPrepare(uv_prepare_t* p) {
  auto* self = static_cast<Runner*>(p->data);
  self->graveyard_.clear();
  if (self->services_) self->services_->Sweep();
}

void Runner::MaybeEnd() {
  if (!in_run_ || !running_.empty()) return;
  if (!queue_.empty() && !stopping_) return;
  if (jobs_in_.open && !stopping_) return;  // more jobs may come
  if (services_ && services_->active()) {
    // The services go first (last started, first stopped); their output
    // stays in the log when the run failed.
    if (!services_stopping_) {
      services_stopping_ = true;
      bool failed = failures_ > 0 || flaky_failures_ > 0 || bailed_ || harness_error_;
      services_->Stop(failed, [this] {
        services_stopping_ = false;
        Flush();
        MaybeEnd();
      });
    }
    return;
  }
  EndRun();
}

void Runner::EndRun() {
  in_run_ = false;
  if (grace_armed_) {
    uv_timer_stop(&grace_timer_);
    grace_armed_ = false;
  }
  CloseControl(jobs_in_);
  int64_t cancelled = cancelled_ + static_cast<int64_t>(queue_.size());
  queue_.clear();
  bool failed = failures_ > 0 || flaky_failures_ > 0 || bailed_ || harness_error_ ||
                output_failed_;
  if (failed) ++failed_runs_;
  any_harness_error_ = any_harness_error_ || harness_error_;
  any_interrupted_ = any_interrupted_ || interrupted_;
  // Another repetition?
  bool more = !o_.serve && !shutdown_ && !interrupted_ && !output_failed_ &&
              planned_ > 0 && !(until_fail_ && failed) &&
              (repeat_total_ == 0 || repetition_ < repeat_total_);
  if (repeat_total_ != 1 && !more && !o_.serve) {
    // The repetitions' outcome, in the last run: each test's failure rate.
    JsonWriter& w = writer_.Begin("repeat.end");
    Key(w, "runs");
    w.Int64(repetition_);
    Key(w, "failed_runs");
    w.Int64(failed_runs_);
    if (repeat_total_ > 0) {
      Key(w, "planned_runs");
      w.Int64(repeat_total_);
    }
    Key(w, "until_fail");
    w.Bool(until_fail_);
    Key(w, "interrupted");
    w.Bool(any_interrupted_);
    Key(w, "tests");
    w.Int64(static_cast<int64_t>(rates_.size()));
    // The tests that ever failed (or were flaky), most often first.
    std::vector<std::pair<const std::string*, Rate>> bad;
    for (const auto& [name, r] : rates_)
      if (r.failed > 0 || r.flaky > 0) bad.emplace_back(&name, r);
    std::stable_sort(bad.begin(), bad.end(), [](const auto& a, const auto& b) {
      // a.failed/a.runs > b.failed/b.runs, without division
      return a.second.failed * b.second.runs > b.second.failed * a.second.runs ||
             (a.second.failed * b.second.runs == b.second.failed * a.second.runs &&
              a.second.flaky * b.second.runs > b.second.flaky * a.second.runs);
    });
    Key(w, "failing");
    w.StartArray();
    for (const auto& [name, r] : bad) {
      w.StartObject();
      WriteText(w, "name", *name);
      Key(w, "runs");
      w.Int64(r.runs);
      Key(w, "failed");
      w.Int64(r.failed);
      Key(w, "flaky");
      w.Int64(r.flaky);
      w.EndObject();
    }
    w.EndArray();
    writer_.End();
  }
  JsonWriter& w = writer_.Begin("run.end");
  Key(w, "jobs_done");
  w.Int64(done_);
  Key(w, "cancelled");
  w.Int64(cancelled);
  Key(w, "interrupted");
  w.Bool(interrupted_);
  if (bailed_) {
    WriteText(w, "bailed", bail_reason_);
  }
  Key(w, "harness_error");
  w.Bool(harness_error_ || output_failed_);
  Key(w, "duration_us");
  w.Int64(events::NowMicros() - start_us_);
  {
    // What the runner itself cost (not its auditors and tests): the
    // harness's own overhead, for bench/spawn and for anyone curious.
    // (Since it started: a runner serving many runs reports its total.)
    struct rusage self;
    getrusage(RUSAGE_SELF, &self);
    events::WriteUsage(w, "runner_usage", self);
  }
  writer_.End();
  Flush();
  if (more) {
    ++repetition_;
    std::vector<JobSpec> specs = base_specs_;
    if (order_ == "shuffle") {
      // Each repetition its own order, reproducible by the seed it shows.
      seed_ = (base_seed_ + static_cast<uint64_t>(repetition_) - 1) % 1000000000;
      OrderJobs(order_, seed_, &specs);
    }
    writer_.set_run(NewRunId());
    BeginRun(std::move(specs), false, {});
  } else if (o_.serve && !shutdown_ && !output_failed_) {
    StartPendingRun();
  } else {
    Shutdown();
  }
}

// Nothing more to run: our handles close and the loop ends.
void Runner::Shutdown() {
  if (shut_) return;
  shut_ = true;
  if (js_read_ >= 0) {
    ReturnTokens(0);
    uv_close(reinterpret_cast<uv_handle_t*>(&js_poll_), nullptr);
  }
  StopServer();
  if (stages_) stages_->StopAll();
  CloseControl(jobs_in_);
  CloseControl(control_in_);
  Flush();
  uv_close(reinterpret_cast<uv_handle_t*>(&check_), nullptr);
  flush_timer_.Close();
  uv_close(reinterpret_cast<uv_handle_t*>(&prepare_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&grace_timer_), nullptr);
  // Closing a signal handle puts back the default action: a stop signal
  // that comes now (weft passing on a Ctrl-C late, on a loaded machine)
  // would kill us after the run ended in order. Done is done: they stay
  // blocked (we have no other thread to take them) and die with us.
  sigset_t stops;
  sigemptyset(&stops);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&stops, sig);
  sigprocmask(SIG_BLOCK, &stops, nullptr);
  for (auto& s : signals_) uv_close(reinterpret_cast<uv_handle_t*>(&s), nullptr);
}

bool Runner::PlanRun(Options& o, bool streaming, std::vector<JobSpec>* specs,
                     std::vector<std::string>* warnings, std::string* err) {
  if (!streaming && !PlanJobs(o, config_, specs, warnings, err)) return false;
  // History (.weft/history.sqlite, indexed from the logs): durations for
  // the order, and the latest run's failures.
  History history;
  history.Open(".weft", false, warnings);
  if (history.open()) {
    auto expected = history.ExpectedDurations();
    for (auto& spec : *specs)
      if (auto it = expected.find(spec.name); spec.expected_us < 0 && it != expected.end())
        spec.expected_us = it->second;
  }
  std::set<std::string> failed_before;
  if (o.rerun_failed || o.failed_first.value_or(config_.failed_first.value_or(false))) {
    std::string latest;
    failed_before = history.FailedInLatestRun(&latest);
    if (o.rerun_failed) {
      std::erase_if(*specs, [&](const JobSpec& s) { return !failed_before.count(s.name); });
      if (latest.empty())
        warnings->push_back("--rerun-failed: no run in the history (.weft/runs) to rerun from");
      else if (specs->empty())
        warnings->push_back(fmt::format(
            "--rerun-failed: nothing failed in the latest run ({}) among these tests",
            latest));
    }
  }
  order_ = o.order.value_or(config_.order.value_or("duration"));
  if (o.seed || config_.seed) {
    seed_ = o.seed ? *o.seed : *config_.seed;
  } else {
    seed_ = static_cast<uint64_t>(events::NowMicros()) ^
            (static_cast<uint64_t>(getpid()) << 32);
    seed_ %= 1000000000;  // short enough to type back
  }
  base_seed_ = seed_;
  OrderJobs(order_, seed_, specs);
  if (!failed_before.empty())
    std::stable_partition(specs->begin(), specs->end(), [&](const JobSpec& s) {
      return failed_before.count(s.name) > 0;
    });
  return true;
}

// The stages the queued jobs use are made ready; the jobs wait for them.
void Runner::EnsureStages() {
  if (config_.stages.empty()) return;
  std::vector<const JobSpec*> jobs;
  for (const auto& spec : queue_) jobs.push_back(&spec);
  stages_ready_ = false;
  stages_->Ensure(config_.stages, jobs, [this] {
    stages_ready_ = true;
    StartMore();
    Flush();
    MaybeEnd();
  });
}

void Runner::BeginRun(std::vector<JobSpec> specs, bool streaming,
                      const std::vector<std::string>& warnings) {
  const Options& o = run_opts_;
  in_run_ = true;
  if (!o_.serve) changed_.clear();
  failures_ = flaky_failures_ = cancelled_ = done_ = 0;
  bailed_ = stopping_ = interrupted_ = harness_error_ = false;
  bail_reason_.clear();
  stop_signal_ = 0;
  next_id_ = 1;
  bail_after_ = o.bail.value_or(config_.bail.value_or(0));
  flaky_fails_ = o.flaky_fails.value_or(config_.flaky_fails.value_or(false));
  if (o_.serve && js_read_ < 0) {
    // A run's own -j (auto: a slot per CPU), else the runner's.
    slots_ = !o.jobs     ? base_slots_
             : *o.jobs > 0 ? *o.jobs
                           : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
    job_env_ = {fmt::format("WEFT_JOBS={}", slots_)};
  }
  writer_.Hello(kProg);
  start_us_ = events::NowMicros();
  planned_ = static_cast<int64_t>(specs.size());
  for (auto& spec : specs) Enqueue(std::move(spec));
  std::vector<JobSpec>().swap(specs);  // the queue holds them now

  char host[256] = "";
  gethostname(host, sizeof host - 1);
  char cwd[4096] = "";
  if (!getcwd(cwd, sizeof cwd)) cwd[0] = 0;
  {
    JsonWriter& w = writer_.Begin("run.start", start_us_);
    Key(w, "argv");
    w.StartArray();
    for (const auto& a : o.argv) events::TextValue(w, a);
    w.EndArray();
    WriteText(w, "cwd", cwd);
    WriteText(w, "host", host);
    if (!config_.file.empty()) WriteText(w, "config", config_.file);
    Key(w, "jobs");
    w.Int64(planned_);
    Key(w, "slots");
    w.Int(slots_);
    Key(w, "order");
    String(w, order_);
    if (order_ == "shuffle") {
      Key(w, "seed");
      w.Uint64(seed_);
    }
    if (bail_after_ > 0) {
      Key(w, "bail");
      w.Int(bail_after_);
    }
    if (flaky_fails_) {
      Key(w, "flaky_fails");
      w.Bool(true);
    }
    if (streaming) {
      Key(w, "streaming");
      w.Bool(true);
    }
    if (repeat_total_ != 1) {
      Key(w, "repetition");
      w.Int64(repetition_);
      if (repeat_total_ > 0) {
        Key(w, "repetitions");
        w.Int64(repeat_total_);
      }
    }
    writer_.End();
  }
  if (!changed_.empty()) {
    // What made this run (weft watch), in stream order for every reader.
    JsonWriter& w = writer_.Begin("reload");
    WriteText(w, "source", "watch");
    Key(w, "files");
    w.StartArray();
    for (const auto& f : changed_) events::TextValue(w, f);
    w.EndArray();
    writer_.End();
  }
  // In serve mode the run's warnings are the client's to see.
  if (o_.serve)
    for (const auto& w : warnings) RunWarning(w);
  if (planned_ == 0 && !streaming) {
    std::string none = o.paths.empty()
                           ? std::string("no tests found")
                           : fmt::format("no tests found in {}", fmt::join(o.paths, ", "));
    if (o_.serve)
      RunWarning(none);
    else
      Warning(kProg, none);
  }
  if ((planned_ > 0 || streaming) && o_.fork_server && !server_up_ && server_pid_ < 0 &&
      !StartServer())
    Warning(kProg, "cannot start the auditor fork server; exec'ing each auditor");
  stages_ready_ = true;
  // A stage that preloaded a changed file starts again, fresh.
  if (stages_ && !changed_.empty()) stages_->Restart(changed_);
  if (!config_.stages.empty() && planned_ > 0) {
    if (!stages_) stages_ = std::make_unique<Stages>(loop_, &writer_, SelfDir());
    EnsureStages();
  }
  services_ready_ = true;
  if (!config_.services.empty() && (planned_ > 0 || streaming)) {
    if (!services_)
      services_ = std::make_unique<Services>(loop_, &writer_, o_.auditor, lifeline_[0]);
    services_ready_ = false;
    services_->Start(config_.services, [this](bool ok, std::string why) {
      services_ready_ = true;
      if (!ok) Bail(why);
      StartMore();
      Flush();
      MaybeEnd();
    });
  }
  StartMore();
  Flush();
  MaybeEnd();
}

// Serve mode: {"type":"run","run":ID,"cwd":DIR,"args":[weft-runner's
// run options and paths]}. Runs go one after another, in the order asked.
void Runner::RequestRun(Control& c, std::string_view line) {
  PendingRun p;
  std::vector<std::string> args;
  std::string err;
  if (!fields_.Load(events::Event(line))) {
    ControlWarning(fmt::format("{}:{}: a run request that is not a JSON object; skipped",
                               c.name, c.line));
    return;
  }
  p.run = std::string(fields_.Str("run").value_or(""));
  if (fields_.Raw("args") && !fields_.StrArray("args", &args))
    err = "a run request's args must be an array of strings";
  std::string from(fields_.Str("cwd").value_or(""));
  fields_.StrArray("changed", &p.changed);
  p.coalesce = fields_.Bool("coalesce").value_or(false);
  if (!p.run.empty() && !SafeRunId(p.run)) {
    ControlWarning(fmt::format("{}:{}: run id \"{:.100}\" cannot name a log; skipped",
                           c.name, c.line, p.run));
    return;
  }
  if (p.run.empty()) p.run = NewRunId();
  p.o.argv = {"weft-runner"};
  p.o.argv.insert(p.o.argv.end(), args.begin(), args.end());
  if (!err.empty() || !o_.parse_run || !o_.parse_run(args, &p.o, &err)) {
    // Its client waits for this run: it gets one, of no tests, saying why.
    p.error = fmt::format("{}:{}: run {}: {}", c.name, c.line, p.run,
                          err.empty() ? "run requests are not served" : err);
    p.o = Options{};
  }
  // Paths as the client gave them, from its directory.
  for (auto& path : p.o.paths) path = RebasePath(path, from);
  if (p.o.cli.limits.stdin_path)
    p.o.cli.limits.stdin_path = RebasePath(*p.o.cli.limits.stdin_path, from);
  if (p.coalesce) {
    // Changes saved while a run waits join it (weft watch).
    for (auto it = pending_runs_.begin(); it != pending_runs_.end(); ++it) {
      if (!it->coalesce) continue;
      for (auto& f : it->changed)
        if (std::find(p.changed.begin(), p.changed.end(), f) == p.changed.end())
          p.changed.push_back(std::move(f));
      pending_runs_.erase(it);
      break;
    }
  }
  pending_runs_.push_back(std::move(p));
  if (!in_run_) StartPendingRun();
}

void Runner::StartPendingRun() {
  while (!in_run_ && !pending_runs_.empty() && !shutdown_) {
    PendingRun p = std::move(pending_runs_.front());
    pending_runs_.pop_front();
    run_opts_ = std::move(p.o);
    writer_.set_run(p.run);
    changed_ = std::move(p.changed);
    std::vector<std::string> reload_warnings;
    if (!changed_.empty() && !config_.file.empty()) {
      // A changed weft.toml counts from this run on (when it reads).
      std::string name = std::filesystem::path(config_.file).filename().string();
      if (std::find_if(changed_.begin(), changed_.end(), [&](const std::string& f) {
            return std::filesystem::path(f).filename() == name;
          }) != changed_.end()) {
        Config fresh;
        std::string why;
        if (LoadConfig(config_.file, &fresh, &why)) {
          config_ = std::move(fresh);
          if (stages_) stages_->Reconfigure(config_.stages);
          // Its jobs, unless the runner's command line said.
          if (!o_.jobs && js_read_ < 0)
            base_slots_ = config_.jobs.value_or(0) > 0
                              ? *config_.jobs
                              : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
          group_max_.clear();
          for (const auto& g : config_.groups) group_max_[g.name] = g.max_parallel;
        } else {
          reload_warnings.push_back(why + " (the weft.toml read before stays in force)");
        }
      }
    }
    std::vector<JobSpec> specs;
    std::vector<std::string> warnings;
    std::string err;
    if (!p.error.empty()) {
      err = p.error;
    } else if (!run_opts_.jobs_from.empty()) {
      err = "--jobs-from is not for a run request";
    } else if (run_opts_.repeat || run_opts_.until_fail) {
      err = "--repeat, --forever and --until-fail are not for a run request "
            "(weft test repeats)";
    } else if (PlanRun(run_opts_, false, &specs, &warnings, &err)) {
      warnings.insert(warnings.begin(), reload_warnings.begin(), reload_warnings.end());
      if (!changed_.empty()) {
        // The tests that changed, and those that loaded a changed file
        // (their "deps"); when no test claims every change, every test.
        namespace fs = std::filesystem;
        std::error_code ec;
        std::vector<std::string> abs;
        for (const auto& f : changed_) abs.push_back(fs::absolute(f, ec).lexically_normal().string());
        std::vector<JobSpec> affected;
        size_t claimed = 0;
        std::vector<bool> seen(changed_.size(), false);
        for (const auto& spec : specs) {
          bool hit = false;
          auto deps = deps_.find(spec.name);
          for (size_t i = 0; i < changed_.size(); ++i) {
            bool mine = changed_[i] == spec.name ||
                        std::find(spec.argv.begin(), spec.argv.end(), changed_[i]) != spec.argv.end() ||
                        (deps != deps_.end() &&
                         std::binary_search(deps->second.begin(), deps->second.end(), abs[i]));
            if (mine && !seen[i]) seen[i] = true, ++claimed;
            hit = hit || mine;
          }
          if (hit) affected.push_back(spec);
        }
        if (claimed == changed_.size()) specs = std::move(affected);
      }
      BeginRun(std::move(specs), false, warnings);
      continue;
    }
    // Its plan failed: it still is a run (its client waits for it), of no
    // tests, with the reason.
    warnings.push_back(err);
    order_ = run_opts_.order.value_or(config_.order.value_or("duration"));
    specs.clear();
    BeginRun(std::move(specs), false, warnings);
  }
  if (shutdown_ && !in_run_) Shutdown();
}

// Serve mode: {"type":"shutdown","grace_s":N}: no new runs; the run going
// on keeps its running jobs for the grace (default 10 s), then they are
// stopped; queued jobs are cancelled.
void Runner::ShutdownRequest(std::string_view line) {
  shutdown_ = true;
  pending_runs_.clear();
  if (!in_run_) {
    Shutdown();
    return;
  }
  double grace = 10;
  if (fields_.Load(events::Event(line)))
    grace = fields_.Double("grace_s").value_or(grace);
  CancelQueue("the runner is shutting down");
  if (grace <= 0) {
    Stop(true);
    return;
  }
  grace_armed_ = true;
  uv_timer_start(&grace_timer_, OnGrace, static_cast<uint64_t>(grace * 1000), 0);
  MaybeEnd();
}

void Runner::OnGrace(uv_timer_t* t) {
  auto* self = static_cast<Runner*>(t->data);
  self->grace_armed_ = false;
  self->Stop(true);
}

int Runner::Run() {
  if (o_.parent_pid > 0) {
    // Started by weft: if it dies (even by SIGKILL), stop the run.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != o_.parent_pid) return 130;
  }
  // weft.toml: named, or found here or above (then that is the project's
  // root, where the tests run).
  if (!o_.no_config) {
    std::string file = o_.config.empty() ? FindConfig(".") : o_.config;
    std::string err;
    if (!file.empty() && !LoadConfig(file, &config_, &err)) {
      Error(kProg, err);
      return 2;
    }
  }
  Options o = o_;
  std::string moved_from;
  if (!config_.file.empty() && o_.config.empty() &&
      !EnterProjectRoot(config_.file, &o.paths, &moved_from)) {
    Error(kProg, fmt::format("cannot enter the project root of {}: {}",
                             config_.file, strerror(errno)));
    return 3;
  }
  // Paths given relative to where we were started.
  o.jobs_from = RebasePath(o.jobs_from, moved_from);
  if (o.cli.limits.stdin_path)
    o.cli.limits.stdin_path = RebasePath(*o.cli.limits.stdin_path, moved_from);
  o.control = RebasePath(o.control, moved_from);
  until_fail_ = o.until_fail;
  repeat_total_ = o.repeat.value_or(o.until_fail ? 0 : 1);
  // Only for us: no auditor or test inherits it.
  if (o.ready_fd >= 0) fcntl(o.ready_fd, F_SETFD, FD_CLOEXEC);
  if (o.serve && o.control.empty()) {
    Error(kProg, "--serve needs --control: run requests come from there");
    return 2;
  }

  std::vector<JobSpec> specs;
  std::vector<std::string> warnings;
  std::string err;
  bool streaming = false;
  if (!o.jobs_from.empty()) {
    // A regular file (stdin redirected from one, too) is read whole; a
    // pipe, a terminal or a FIFO is a stream.
    struct stat st;
    bool is_stdin = o.jobs_from == "-";
    int rc = is_stdin ? fstat(STDIN_FILENO, &st) : stat(o.jobs_from.c_str(), &st);
    streaming = rc == 0 && !S_ISREG(st.st_mode) && !o.list;
    if (is_stdin && !streaming) o.jobs_from = "/dev/stdin";
  }
  if (o.list && (o.repeat || o.until_fail)) {
    Error(kProg, "--repeat, --forever and --until-fail run tests; --list runs none");
    return 2;
  }
  if (streaming && repeat_total_ != 1) {
    Error(kProg, "--repeat, --forever and --until-fail need tests to repeat, not "
                 "a stream of job specs");
    return 2;
  }
  if (!o.serve && !PlanRun(o, streaming, &specs, &warnings, &err)) {
    Error(kProg, err);
    return 2;
  }
  if (!o.serve)
    for (const auto& w : warnings) Warning(kProg, w);
  int jobs = o.jobs ? *o.jobs : config_.jobs.value_or(0);
  slots_ = jobs > 0 ? jobs
                    : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  // Under make -jN: make's jobserver decides, unless -j was given here.
  bool jobserver = !o.jobs && getenv("MAKEFLAGS") &&
                   std::string_view(getenv("MAKEFLAGS")).find("--jobserver-") !=
                       std::string_view::npos;
  if (jobserver) slots_ = 1;
  base_slots_ = slots_;
  job_env_ = {fmt::format("WEFT_JOBS={}", jobserver ? 0 : slots_)};
  for (const auto& g : config_.groups) group_max_[g.name] = g.max_parallel;

  if (o.list) {
    // The plan, one job spec per line; nothing runs.
    rapidjson::StringBuffer buf;
    for (const auto& spec : specs) {
      buf.Clear();
      JsonWriter w(buf);
      w.StartObject();
      Key(w, "type");
      String(w, "job");
      WriteJobSpec(w, spec);
      w.EndObject();
      buf.Put('\n');
      if (!events::WriteAll(STDOUT_FILENO, {buf.GetString(), buf.GetSize()})) {
        Error(kProg, fmt::format("cannot write to stdout: {}", strerror(errno)));
        return 3;
      }
    }
    return specs.empty() && !streaming ? 4 : 0;
  }

  loop_ = uv_default_loop();
  uv_disable_stdio_inheritance();
  // Every auditor holds the read end; we hold the write end and never
  // write. When we die, however we die, they all see EOF and stop.
  if (pipe2(lifeline_, O_CLOEXEC) != 0) {
    Error(kProg, fmt::format("pipe: {}", strerror(errno)));
    return 3;
  }
  if (jobserver) OpenJobserver();
  uv_check_init(loop_, &check_);
  check_.data = this;
  uv_check_start(&check_, OnCheck);
  flush_timer_.Init(loop_, [this] { Flush(); });
  uv_prepare_init(loop_, &prepare_);
  prepare_.data = this;
  uv_prepare_start(&prepare_, OnPrepare);
  uv_timer_init(loop_, &grace_timer_);
  grace_timer_.data = this;
  int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
  for (int i = 0; i < 3; ++i) {
    uv_signal_init(loop_, &signals_[i]);
    signals_[i].data = this;
    uv_signal_start(&signals_[i], OnSignal, sigs[i]);
  }
  {
    // weft starts us with them blocked: now they can come.
    sigset_t stops;
    sigemptyset(&stops);
    for (int sig : sigs) sigaddset(&stops, sig);
    sigprocmask(SIG_UNBLOCK, &stops, nullptr);
  }

  if (streaming) {
    jobs_in_.jobs = true;
    jobs_in_.name = o.jobs_from;
    int fd = o.jobs_from == "-" ? dup(STDIN_FILENO)
                                : open(o.jobs_from.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || !OpenControl(jobs_in_, fd)) {
      Error(kProg, fmt::format("{}: {}", o.jobs_from, strerror(errno)));
      return 2;
    }
  }
  if (!o.control.empty()) {
    // /dev/fd/N: that fd, as it was passed to us. A named pipe is opened
    // for reading and writing, so it never reads as ended while no one
    // has it open for writing (a controller may come and go).
    control_in_.name = o.control;
    int fd = InheritedFd(o.control);
    if (fd < 0) {
      struct stat st;
      bool fifo = stat(o.control.c_str(), &st) == 0 && S_ISFIFO(st.st_mode);
      fd = open(o.control.c_str(), (fifo ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    }
    if (fd < 0 || !OpenControl(control_in_, fd)) {
      Error(kProg, fmt::format("--control {}: {}", o.control, strerror(errno)));
      return 2;
    }
  }
  if (o.serve) {
    // Ready: the control pipe is open (requests wait in it) and the
    // auditor fork server is up, so a first run starts at once.
    if (o_.fork_server && !StartServer())
      Warning(kProg, "cannot start the auditor fork server; exec'ing each auditor");
    if (o.ready_fd >= 0) {
      events::WriteAll(o.ready_fd, "ready\n");
      close(o.ready_fd);
    }
  } else {
    run_opts_ = o;
    repetition_ = 1;
    if (repeat_total_ != 1) base_specs_ = specs;
    BeginRun(std::move(specs), streaming, warnings);
  }
  uv_run(loop_, UV_RUN_DEFAULT);
  graveyard_.clear();
  uv_loop_close(loop_);
  close(lifeline_[0]);
  if (js_read_ >= 0) close(js_read_);
  if (js_write_ >= 0) close(js_write_);
  close(lifeline_[1]);

  if (o.serve) return output_failed_ ? 3 : 0;  // each run had its own verdict
  if (output_failed_ || any_harness_error_) return 3;
  if (any_interrupted_) return 130;
  if (planned_ == 0 && !o.serve) return 4;
  return 0;
}

bool Runner::OpenControl(Control& c, int fd) {
  c.runner = this;
  uv_pipe_init(loop_, &c.pipe, 0);
  c.pipe.data = &c;
  if (uv_pipe_open(&c.pipe, fd) != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(&c.pipe), nullptr);
    close(fd);
    errno = EINVAL;
    return false;
  }
  c.open = true;
  uv_read_start(reinterpret_cast<uv_stream_t*>(&c.pipe), OnControlAlloc, OnControlRead);
  return true;
}

void Runner::CloseControl(Control& c) {
  if (!c.open) return;
  c.open = false;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&c.pipe));
  uv_close(reinterpret_cast<uv_handle_t*>(&c.pipe), nullptr);
}

void Runner::OnControlAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* c = static_cast<Control*>(h->data);
  size_t avail;
  buf->base = c->reader.Space(16 * 1024, &avail);
  buf->len = avail;
}

void Runner::OnControlRead(uv_stream_t* h, ssize_t n, const uv_buf_t*) {
  auto* c = static_cast<Control*>(h->data);
  Runner* self = c->runner;
  if (n > 0) c->reader.Commit(static_cast<size_t>(n));
  if (n < 0) c->reader.Finish();
  std::string_view line;
  while (c->reader.Next(&line)) self->ControlLine(*c, line);
  // At its end: no more jobs will come from --jobs-from (the run ends
  // when these are done); --control's end changes nothing, except when
  // serving: no more requests can come, so we end after this run.
  if (n < 0) {
    self->CloseControl(*c);
    if (self->o_.serve && c == &self->control_in_) {
      self->shutdown_ = true;
      self->pending_runs_.clear();
      if (!self->in_run_) self->Shutdown();
    }
  }
  self->StartMore();
  self->MaybeEnd();
}

// One line of the control stream: a job spec, or stop / bail / reload.
void Runner::ControlLine(Control& c, std::string_view line) {
  ++c.line;
  if (line.empty() || line == "\r" || shut_) return;
  std::string_view type = events::TypeOf(line);
  std::string err;
  if (type == "job" && !c.jobs) {
    ControlWarning(fmt::format("{}:{}: job specs come through --jobs-from, not "
                           "--control; skipped",
                           c.name, c.line));
  } else if (type == "job") {
    JobSpec spec;
    if (!ParseJobSpec(line, &spec, &err)) {
      ControlWarning(fmt::format("{}:{}: {}; skipped", c.name, c.line, err));
      return;
    }
    if (stopping_) return;
    ApplyLayer(o_.cli, &spec);
    Enqueue(std::move(spec));
    ++planned_;
    JsonWriter& w = writer_.Begin("run.queue");
    Key(w, "added");
    w.Int(1);
    Key(w, "jobs");
    w.Int64(planned_);
    writer_.End();
  } else if (type == "run" && o_.serve && &c == &control_in_) {
    RequestRun(c, line);
  } else if (type == "shutdown" && o_.serve) {
    ShutdownRequest(line);
  } else if (type == "stop") {
    // Serving, a stop is for one run: the one named, or the one going on
    // (a queued run named is dropped). Otherwise it ends our work.
    if (o_.serve) {
      std::string run;
      if (fields_.Load(events::Event(line))) run = std::string(fields_.Str("run").value_or(""));
      if (!run.empty() && run != writer_.run()) {
        std::erase_if(pending_runs_, [&](const PendingRun& p) { return p.run == run; });
        return;
      }
    } else {
      shutdown_ = true;
    }
    Stop(true);
  } else if (type == "bail") {
    // (The reader's lines have the padding Fields needs.)
    std::string reason = "bail requested";
    if (fields_.Load(events::Event(line)))
      if (auto r = fields_.Str("reason")) reason = std::string(*r);
    Bail(reason);
  } else if (type == "reload") {
    // The stages that loaded one of "files" start again (all of them when
    // it names none) before the jobs that use them next; in the stream
    // it marks the moment for every reader.
    std::vector<std::string> files;
    if (fields_.Load(events::Event(line))) fields_.StrArray("files", &files);
    JsonWriter& w = writer_.Begin("reload");
    WriteText(w, "source", "control");
    if (!files.empty()) {
      Key(w, "files");
      w.StartArray();
      for (const auto& f : files) events::TextValue(w, f);
      w.EndArray();
    }
    writer_.End();
    if (stages_) {
      if (files.empty())
        stages_->StopAll(false);
      else
        stages_->Restart(files);
      // A run going on: its jobs not yet started wait for the new stages.
      if (in_run_ && !stopping_) EnsureStages();
    }
  } else {
    // The controller's mistake, not weft's: said, and skipped.
    ControlWarning(fmt::format("{}:{}: not a job spec or control line "
                           "({}): {:.200}",
                           c.name, c.line,
                           o_.serve ? "run, stop, bail, reload, shutdown"
                                    : "job, stop, bail, reload",
                           line));
  }
}

}  // namespace

int Run(const Options& options) {
  Options o = options;
  if (o.auditor.empty()) o.auditor = SelfDir() + "/weft-auditor";
  Runner runner(o);
  return runner.Run();
}

}  // namespace weft::runner
