#include "weft/events/pump.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

namespace weft::events {
namespace {
volatile sig_atomic_t g_stops = 0;
void OnStop(int) { g_stops = g_stops + 1; }
}  // namespace

void InstallStopCounter() {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = OnStop;  // no SA_RESTART: poll() returns EINTR
  sigemptyset(&sa.sa_mask);
  sigset_t stops;
  sigemptyset(&stops);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    sigaction(sig, &sa, nullptr);
    sigaddset(&stops, sig);
  }
  // weft starts us with them blocked: now they can come.
  sigprocmask(SIG_UNBLOCK, &stops, nullptr);
}

int StopCount() { return g_stops; }

PumpEnd Pump(int fd, LineReader& reader, const PumpHandlers& h,
             std::string* err) {
  int extra_fd = h.extra_fd;
  for (;;) {
    if (g_stops >= 3) return PumpEnd::kInterrupted;
    if (h.stop && *h.stop) return PumpEnd::kStopped;
    int timeout = h.timeout_ms ? h.timeout_ms() : -1;
    if (timeout >= 0 || extra_fd >= 0) {
      if (timeout == 0) {
        h.tick();
        timeout = h.timeout_ms();
      }
      struct pollfd p[2] = {{fd, POLLIN, 0}, {extra_fd, POLLIN, 0}};
      int rc = poll(p, extra_fd >= 0 ? 2 : 1, timeout < 0 ? -1 : timeout);
      if (rc < 0 && errno != EINTR) {
        if (err) *err = strerror(errno);
        return PumpEnd::kReadError;
      }
      if (rc > 0 && extra_fd >= 0 && p[1].revents) {
        if (!h.extra()) extra_fd = -1;
        if (h.batch_end) h.batch_end();
      }
      if (rc <= 0 || !p[0].revents) continue;  // timer due, a signal, a key
    }
    ssize_t n = h.pass ? h.pass->Read(reader) : reader.ReadFrom(fd);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        struct pollfd p = {fd, POLLIN, 0};
        poll(&p, 1, -1);
        continue;
      }
      if (err) *err = strerror(errno);
      return PumpEnd::kReadError;
    }
    if (n == 0) reader.Finish();
    h.HandAll(reader);
    if (h.batch_end) h.batch_end();
    if (n == 0) return PumpEnd::kEof;
  }
}

}  // namespace weft::events
