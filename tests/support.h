// Running the real built binaries from cross-process tests.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

namespace weft::testing {

struct Result {
  int code = -1;    // exit status, or -1 when killed by a signal
  int signal = 0;   // the killing signal
  std::string out;  // everything on stdout
  std::string err;  // everything on stderr
};

struct RunOptions {
  std::string cwd;                // default: the current directory
  std::string input;              // written to stdin, then closed
  std::vector<std::string> env;   // extra NAME=VALUE entries
  bool new_group = false;         // own process group (for signalling it)
  double timeout_s = 120;         // a safety net: the test fails after it
};

// A process started in the background, its output collected by Wait().
class Child {
 public:
  Child(const std::vector<std::string>& argv, const RunOptions& o);
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  pid_t pid() const { return pid_; }
  Result Wait();

 private:
  pid_t pid_ = -1;
  int in_ = -1, out_ = -1, err_ = -1;
  std::string input_;
  double timeout_s_;
  bool waited_ = false;
};

Result Run(const std::vector<std::string>& argv, const RunOptions& o = {});

// Paths of what meson built (from WEFT_BIN and WEFT_TEST_HELPER).
std::string Bin(const std::string& name);
std::string Helper();

// A scratch directory, removed at the end.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  // Writes "rel" (creating directories); executable when "exec".
  void Write(const std::string& rel, const std::string& content,
             bool exec = false);
  // Adds "content" at the end of "rel" (a log that grows).
  void Append(const std::string& rel, const std::string& content) const;
  // An executable test script that runs the helper with these arguments.
  void HelperTest(const std::string& rel, const std::string& helper_args);
  std::string Read(const std::string& rel) const;

 private:
  std::string path_;
};

// Whether "text" holds "part", and how many times.
bool Has(const std::string& text, const std::string& part);
size_t Count(const std::string& text, const std::string& part);

// Replaces durations ("12ms", "1.02s", "2m03s") with "<t>" so the lines a
// user sees can be compared exactly.
std::string Normalize(const std::string& text);
std::vector<std::string> Lines(const std::string& text);

// Children of "pid" (from /proc), and whether a pid still runs (a zombie
// counts as gone).
std::vector<pid_t> ChildrenOf(pid_t pid);
bool Alive(pid_t pid);
// Waits until "pred" holds or "timeout_s" passes; returns pred().
bool WaitFor(double timeout_s, const std::function<bool()>& pred);

}  // namespace weft::testing
