#include "support.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace weft::testing {

namespace {

// Every process the tests start gets TMPDIR under one directory of ours,
// removed when the test program ends: the auditor keeps a failed test's
// TMPDIR, and the tests fail tests on purpose.
struct ScratchTmp {
  std::string dir;
  ScratchTmp() {
    char tmpl[] = "/tmp/weft-tests-XXXXXX";
    if (mkdtemp(tmpl)) {
      dir = tmpl;
      setenv("TMPDIR", dir.c_str(), 1);
    }
  }
  ~ScratchTmp() {
    std::error_code ec;
    if (!dir.empty()) std::filesystem::remove_all(dir, ec);
  }
};
ScratchTmp g_scratch_tmp;

double Now() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

Child::Child(const std::vector<std::string>& argv, const RunOptions& o)
    : input_(o.input), timeout_s_(o.timeout_s) {
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC))
    throw std::runtime_error("pipe failed");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  if (!o.cwd.empty()) posix_spawn_file_actions_addchdir_np(&fa, o.cwd.c_str());
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  short flags = POSIX_SPAWN_SETSIGMASK;
  if (o.new_group) {
    posix_spawnattr_setpgroup(&attr, 0);
    flags |= POSIX_SPAWN_SETPGROUP;
  }
  posix_spawnattr_setflags(&attr, flags);
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string kv(*e);
    // Tests see plain output unless they ask otherwise.
    if (kv.rfind("NO_COLOR=", 0) == 0) continue;
    // A variable the test sets replaces the inherited one.
    bool overridden = false;
    for (const auto& e : o.env) {
      auto eq = e.find('=');
      if (eq != std::string::npos && kv.compare(0, eq + 1, e, 0, eq + 1) == 0)
        overridden = true;
    }
    if (overridden) continue;
    env.push_back(kv);
  }
  for (const auto& e : o.env) env.push_back(e);
  std::vector<char*> envp, args;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int rc = posix_spawn(&pid_, args[0], &fa, &attr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(in[0]);
  close(out[1]);
  close(err[1]);
  in_ = in[1];
  out_ = out[0];
  err_ = err[0];
  if (rc != 0) {
    pid_ = -1;
    throw std::runtime_error(std::string("cannot start ") + argv[0] + ": " +
                             strerror(rc));
  }
  fcntl(in_, F_SETFL, O_NONBLOCK);
  if (input_.empty()) {
    close(in_);
    in_ = -1;
  }
}

Child::~Child() {
  if (!waited_ && pid_ > 0) {
    kill(pid_, SIGKILL);
    Wait();
  }
  for (int fd : {in_, out_, err_})
    if (fd >= 0) close(fd);
}

Result Child::Wait() {
  Result r;
  waited_ = true;
  size_t written = 0;
  double deadline = Now() + timeout_s_;
  bool killed = false;
  while (out_ >= 0 || err_ >= 0 || in_ >= 0) {
    struct pollfd p[3];
    int n = 0;
    int* fds[3] = {&out_, &err_, &in_};
    for (int* fd : fds) {
      if (*fd < 0) continue;
      p[n].fd = *fd;
      p[n].events = fd == &in_ ? POLLOUT : POLLIN;
      p[n].revents = 0;
      ++n;
    }
    int left = static_cast<int>((deadline - Now()) * 1000);
    if (left <= 0) {
      if (!killed) {
        kill(pid_, SIGKILL);
        killed = true;
        r.err += "\n[test support: timed out, killed]\n";
        deadline = Now() + 5;
        continue;
      }
      break;
    }
    if (poll(p, n, left) < 0 && errno != EINTR) break;
    for (int i = 0; i < n; ++i) {
      if (!p[i].revents) continue;
      int* fd = p[i].fd == out_ ? &out_ : p[i].fd == err_ ? &err_ : &in_;
      if (fd == &in_) {
        ssize_t w = write(in_, input_.data() + written, input_.size() - written);
        if (w > 0) written += static_cast<size_t>(w);
        if (w < 0 || written == input_.size()) {
          close(in_);
          in_ = -1;
        }
        continue;
      }
      char buf[65536];
      ssize_t got = read(*fd, buf, sizeof buf);
      if (got > 0) {
        (fd == &out_ ? r.out : r.err).append(buf, static_cast<size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        close(*fd);
        *fd = -1;
      }
    }
  }
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) r.code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  return r;
}

Result Run(const std::vector<std::string>& argv, const RunOptions& o) {
  Child c(argv, o);
  return c.Wait();
}

std::string Bin(const std::string& name) {
  const char* dir = getenv("WEFT_BIN");
  return std::string(dir ? dir : "build/bin") + "/" + name;
}

std::string Helper() {
  const char* h = getenv("WEFT_TEST_HELPER");
  return h ? h : "build/tests/helper/weft-test-helper";
}

TempDir::TempDir() {
  char tmpl[] = "/tmp/weft-test-XXXXXX";
  if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void TempDir::Write(const std::string& rel, const std::string& content,
                    bool exec) {
  std::string full = path_ + "/" + rel;
  std::filesystem::create_directories(
      std::filesystem::path(full).parent_path());
  std::ofstream(full, std::ios::binary) << content;
  chmod(full.c_str(), exec ? 0755 : 0644);
}

void TempDir::Append(const std::string& rel, const std::string& content) const {
  std::ofstream(path_ + "/" + rel, std::ios::app | std::ios::binary) << content;
}

void TempDir::HelperTest(const std::string& rel, const std::string& args) {
  Write(rel, "#!/bin/sh\nexec '" + Helper() + "' " + args + "\n", true);
}

std::string TempDir::Read(const std::string& rel) const {
  std::ifstream in(path_ + "/" + rel, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Normalize(const std::string& text) {
  static const std::regex kDuration(R"(\b\d+(\.\d+)?(ms|s)\b|\b\d+m\d\ds\b)");
  return std::regex_replace(text, kDuration, "<t>");
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string line;
  while (std::getline(ss, line)) out.push_back(line);
  return out;
}

std::vector<pid_t> ChildrenOf(pid_t pid) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator(
           "/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream in(task.path() / "children");
    pid_t child;
    while (in >> child) out.push_back(child);
  }
  return out;
}

bool Alive(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  if (!in) return false;
  std::string line;
  std::getline(in, line);
  auto close = line.rfind(')');
  if (close == std::string::npos || close + 2 >= line.size()) return false;
  char state = line[close + 2];
  return state != 'Z' && state != 'X';
}

bool WaitFor(double timeout_s, const std::function<bool()>& pred) {
  double deadline = Now() + timeout_s;
  while (Now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

bool Has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

size_t Count(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

}  // namespace weft::testing
