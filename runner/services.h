// The services a suite needs (weft.toml's [[service]]): started before a
// run in order, each when the one before is ready; stopped after it in
// reverse order. Each runs under `weft-auditor --guard` (its own process
// group, killed when the runner goes away), its output kept for the log.
#pragma once

#include <uv.h>
#include <weft/events/writer.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config.h"

namespace weft::runner {

class Services {
 public:
  // "out": where service.* events go (the runner's stream); "auditor": the
  // weft-auditor to guard them; "lifeline": the read end of the runner's
  // lifeline pipe.
  Services(uv_loop_t* loop, events::EventWriter* out, std::string auditor, int lifeline);
  ~Services();
  Services(const Services&) = delete;
  Services& operator=(const Services&) = delete;

  // Starts "list" in order; "done" once every one is ready (ok), or when
  // one is not (with why): it failed to start, exited, or timed out.
  void Start(const std::vector<Service>& list,
             std::function<void(bool ok, std::string why)> done);
  // Stops those started, last first; with "output", each one's output goes
  // into its service.end (the run failed). "done" once all have ended.
  void Stop(bool output, std::function<void()> done);
  // A second stop: no grace for the one stopping now or after it.
  void Hurry();
  // Any started and not yet ended (or still starting).
  bool active() const;
  // Frees what ended (call before the loop polls: libuv has closed it).
  void Sweep();

  struct Svc;

 private:
  void StartNext();
  void Ready(Svc& s, std::string how);
  void Failed(Svc& s, std::string why);
  void StopNext();
  void Ended(Svc& s);
  void EndEvent(Svc& s, bool output, std::string_view error);
  static void OnCheck(uv_timer_t* t);
  static void OnAlloc(uv_handle_t* h, size_t, uv_buf_t* buf);
  static void OnRead(uv_stream_t* h, ssize_t n, const uv_buf_t*);

  uv_loop_t* loop_;
  events::EventWriter* out_;
  std::string auditor_;
  int lifeline_;
  std::vector<Service> list_;
  std::vector<std::unique_ptr<Svc>> started_;  // in start order
  std::vector<std::unique_ptr<Svc>> retired_;
  uint64_t tick_ = 0;
  std::function<void(bool, std::string)> start_done_;
  std::function<void()> stop_done_;
  bool stopping_ = false, hurry_ = false, output_ = false;
};

}  // namespace weft::runner
