#include "weft/common/util.h"

#include <fmt/format.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/close_range.h>
#include <stdio.h>
#include <sys/stat.h>
#include <signal.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>

namespace weft {

std::string SignalName(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  if (abbrev) return fmt::format("SIG{}", abbrev);
  return fmt::format("signal {}", sig);
}

int PidfdOpen(int pid) {
  // (glibc 2.36 declares pidfd_open without extern "C": the syscall.)
  return static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
}

int WorstExit(int a, int b) {
  auto rank = [](int code) {
    switch (code) {
      case 4: return 0;
      case 0: return 1;
      case 1: return 2;
      case 130: return 3;
      case 2: return 4;
      default: return 5;  // 3, and anything unknown
    }
  };
  return rank(a) >= rank(b) ? a : b;
}

bool SafeRunId(std::string_view run) {
  if (run.empty() || run.size() > 200 || run[0] == '.') return false;
  for (char c : run)
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
          c == '.'))
      return false;
  return true;
}

std::string NewRunId() {
  time_t now = time(nullptr);
  struct tm tm;
  gmtime_r(&now, &tm);
  char when[32];
  strftime(when, sizeof when, "%Y%m%dT%H%M%SZ", &tm);
  unsigned char rnd[3] = {0, 0, 0};
  if (getrandom(rnd, sizeof rnd, 0) != sizeof rnd) {
    unsigned v = static_cast<unsigned>(getpid()) ^ static_cast<unsigned>(now);
    rnd[0] = v & 255;
    rnd[1] = (v >> 8) & 255;
    rnd[2] = (v >> 16) & 255;
  }
  return fmt::format("{}-{:02x}{:02x}{:02x}", when, rnd[0], rnd[1], rnd[2]);
}

std::string SelfDir() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string path(buf, static_cast<size_t>(n));
  auto slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

void Error(std::string_view prog, std::string_view message) {
  std::string line = fmt::format("{}: error: {}\n", prog, message);
  (void)!write(2, line.data(), line.size());
}

void Warning(std::string_view prog, std::string_view message) {
  std::string line = fmt::format("{}: warning: {}\n", prog, message);
  (void)!write(2, line.data(), line.size());
}

int InheritedFd(const std::string& path) {
  int n = -1;
  char rest;
  if (sscanf(path.c_str(), "/dev/fd/%d%c", &n, &rest) != 1 || n <= 2) return -1;
  return fcntl(n, F_SETFD, FD_CLOEXEC) == 0 ? n : -1;
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) {
    close(fd_);
    unlink(tmp_.c_str());
  }
}

bool AtomicFile::Open(const std::string& path) {
  path_ = path;
  tmp_ = path + ".XXXXXX";
  fd_ = mkostemp(tmp_.data(), O_CLOEXEC);
  if (fd_ < 0) return false;
  // mkostemp makes it 0600; a report or log gets 0644 minus the umask,
  // as a file made with open(…, 0644).
  mode_t mask = umask(0);
  umask(mask);
  fchmod(fd_, 0644 & ~mask);
  return true;
}

bool AtomicFile::Commit() {
  if (fd_ < 0) return false;
  bool ok = fsync(fd_) == 0;
  int e = errno;
  if (close(fd_) != 0 && ok) {
    ok = false;
    e = errno;
  }
  fd_ = -1;
  if (ok && rename(tmp_.c_str(), path_.c_str()) != 0) {
    ok = false;
    e = errno;
  }
  if (!ok) {
    unlink(tmp_.c_str());
    errno = e;
  }
  return ok;
}

void WidenStreamPipes() {
  // Between the stream filters, 1 MiB pipes instead of 64 KiB: each wakes
  // for more lines at a time (best effort: the system may cap it). A chain
  // composed by hand in a shell gets it too. Only the filters do this, one
  // pipe each way: an auditor per test doing it would eat into the
  // per-user pipe budget (fs.pipe-user-pages-soft).
  for (int fd : {STDIN_FILENO, STDOUT_FILENO}) {
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode)) WidenPipe(fd);
  }
}

void WidenPipe(int fd) {
  if (fcntl(fd, F_GETPIPE_SZ) < (1 << 20)) fcntl(fd, F_SETPIPE_SZ, 1 << 20);
}

void InitStreamProcess() {
  // fds 0-2 must be open: a closed stdout would make the next file opened
  // (a log) fd 1, and every line would land in it twice.
  for (int fd = 0; fd < 3; ++fd) {
    if (fcntl(fd, F_GETFD) < 0) {
      int null_fd = open("/dev/null", O_RDWR);
      if (null_fd >= 0 && null_fd != fd) {
        dup2(null_fd, fd);
        close(null_fd);
      }
    }
  }
  // Whatever we inherited beyond stdio is not for the processes we start.
  close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);

  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, nullptr, _IOLBF, BUFSIZ);
}

void SetEnvEntry(std::vector<std::string>* env, std::string_view kv) {
  std::string_view key = kv.substr(0, kv.find('='));
  std::erase_if(*env, [&](const std::string& e) {
    return e.size() > key.size() && e[key.size()] == '=' && e.starts_with(key);
  });
  env->emplace_back(kv);
}

}  // namespace weft
