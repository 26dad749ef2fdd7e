// Stages (weft.toml's [[stage]], docs/stages.md): long-lived processes in
// the tests' language that preload modules and fork a child per test. The
// runner starts those a run needs, hands each matching job's auditor the
// stage's socket, restarts a stage when a file it preloaded changes, and
// stops them when it ends. A stage lives across runs (repeat, serve, watch).
#pragma once

#include <uv.h>
#include <weft/events/writer.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config.h"
#include "discover.h"

namespace weft::runner {

class Stages {
 public:
  // "out": where stage.* events go; "script_dir": where weft-stage.pl and
  // weft-stage.py are.
  Stages(uv_loop_t* loop, events::EventWriter* out, std::string script_dir);
  ~Stages();
  Stages(const Stages&) = delete;
  Stages& operator=(const Stages&) = delete;

  // The stages of "config" that some of "jobs" use are started (if they
  // are not running); "done" once each is ready or has failed (its jobs
  // then run without it). Replaces a "done" still pending.
  void Ensure(const std::vector<Stage>& config, const std::vector<const JobSpec*>& jobs,
              std::function<void()> done);
  // The socket of the ready stage this job uses, or "" (none, not ready,
  // or a job a stage cannot run: perl's -T).
  std::string SocketFor(const JobSpec& job) const;
  // Stages that preloaded one of these files (paths from the project's
  // root, or absolute) are stopped, to start again fresh when next needed.
  // Returns how many.
  size_t Restart(const std::vector<std::string>& changed);
  // Every stage stops: we are ending (they are waited for, briefly), or
  // for a reload that names no files (they start again when needed).
  void StopAll(bool ending = true);
  // weft.toml was read again: a stage whose definition changed (or that
  // it no longer has) stops, to start again as it now says when needed.
  void Reconfigure(const std::vector<Stage>& config);

  struct Proc;

 private:
  const Stage* StageOf(const JobSpec& job) const;
  void Launch(const Stage& spec);
  void OnLine(Proc& p, std::string_view line);
  void Settled();
  // "drain": a reload replaces it: its running tests finish first
  // (SIGUSR2); otherwise it ends now (stdin closed, SIGTERM).
  void Stop(Proc& p, std::string_view why, bool drain = false);
  void Fork(Proc& base, Proc& p);
  static void OnAlloc(uv_handle_t* h, size_t, uv_buf_t* buf);
  static void OnRead(uv_stream_t* h, ssize_t n, const uv_buf_t*);

  uv_loop_t* loop_;
  events::EventWriter* out_;
  std::string script_dir_;
  std::string dir_;  // the sockets' directory (made when first needed)
  std::vector<Stage> config_;
  std::vector<std::unique_ptr<Proc>> procs_;    // by name, the current ones
  std::vector<std::unique_ptr<Proc>> retired_;  // stopped (freed at the end)
  std::function<void()> done_;
  int serial_ = 0;  // each stage process its own socket
};

}  // namespace weft::runner
