#include "weft/events/input.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

namespace weft::events {

namespace {

std::string Describe(const std::string& path) { return path.empty() ? "stdin" : path; }

}  // namespace

PumpEnd ReadInput(const InputOptions& in, LineReader& reader,
                  const PumpHandlers& h, const std::function<bool()>& done,
                  std::string* err) {
  bool is_stdin = in.path.empty() || in.path == "-";
  int fd = is_stdin ? STDIN_FILENO : open(in.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (err) *err = "cannot open " + in.path + ": " + strerror(errno);
    return PumpEnd::kReadError;
  }
  struct stat st;
  bool regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  if (!in.follow || !regular) {
    PumpEnd end = Pump(fd, reader, h, err);
    if (end == PumpEnd::kReadError && err) *err = Describe(in.path) + ": " + *err;
    if (!is_stdin) close(fd);
    return end;
  }

  // Following a growing file: read to its end, then wait for a change.
  int watch = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (watch >= 0 && !is_stdin)
    inotify_add_watch(watch, in.path.c_str(), IN_MODIFY | IN_CLOSE_WRITE);
  PumpEnd end = PumpEnd::kEof;
  for (;;) {
    if (StopCount() >= 3) {
      end = PumpEnd::kInterrupted;
      break;
    }
    ssize_t n = reader.ReadFrom(fd);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      if (err) *err = Describe(in.path) + ": " + strerror(errno);
      end = PumpEnd::kReadError;
      break;
    }
    std::string_view line;
    while (reader.Next(&line)) h.line(line);
    if (h.batch_end) h.batch_end();
    if (n > 0) continue;
    if (done && done()) break;
    // At the end for now: wait for the writer (at most 1 s between looks,
    // in case the file was replaced rather than appended to).
    if (h.tick) h.tick();
    struct pollfd p = {watch, POLLIN, 0};
    int timeout = h.timeout_ms ? h.timeout_ms() : -1;
    if (timeout < 0 || timeout > 1000) timeout = 1000;
    if (watch >= 0 && poll(&p, 1, timeout) > 0) {
      char buf[4096];
      while (read(watch, buf, sizeof buf) > 0) {
      }
    } else if (watch < 0) {
      usleep(static_cast<useconds_t>(timeout) * 1000);
    }
  }
  reader.Finish();
  std::string_view line;
  while (reader.Next(&line)) h.line(line);
  if (h.batch_end) h.batch_end();
  if (watch >= 0) close(watch);
  if (!is_stdin) close(fd);
  return end;
}

}  // namespace weft::events
