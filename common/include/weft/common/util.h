// Small process-level helpers shared by the weft executables.
#pragma once

#include <string>
#include <vector>
#include <string_view>

namespace weft {

// "SIGSEGV" for 11; "signal 77" for numbers without a name.
std::string SignalName(int sig);

// A new run id: UTC time then random hex, sortable by start time:
// "20261123T124531Z-3f9a1c".
std::string NewRunId();
// A run id that can name a log file (.weft/runs/<id>.jsonl): letters,
// digits, '-', '_', '.', not first; at most 200 bytes.
bool SafeRunId(std::string_view run);

// Of two runs' exit codes (DESIGN.md), the one that says most: a harness
// failure, then an interruption, then a failure, then a pass, then "no
// test ran". The exit code of a stream of several runs.
int WorstExit(int a, int b);

// A pidfd for "pid" (pidfd_open(2)), or -1 with errno: it polls readable
// when that process has ended, child of ours or not.
int PidfdOpen(int pid);

// The directory holding the running executable (for finding siblings).
std::string SelfDir();
// For a path "/dev/fd/N" (N > 2): N, marked close-on-exec (a descriptor we
// were started with, taken as it is); otherwise -1.
int InheritedFd(const std::string& path);
// A file written whole or not at all: written under a temporary name
// beside it (PATH.XXXXXX), then fsync'ed and renamed over PATH by
// Commit(). Destroyed uncommitted, the temporary file goes.
class AtomicFile {
 public:
  AtomicFile() = default;
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  // Creates the temporary file; false (errno set) when it cannot.
  bool Open(const std::string& path);
  int fd() const { return fd_; }
  const std::string& tmp_path() const { return tmp_; }
  // fsync, close, rename; false (errno set) on any failure, and then the
  // temporary file is removed.
  bool Commit();

 private:
  std::string path_, tmp_;
  int fd_ = -1;
};

// Makes stdin and stdout 1 MiB pipes, when they are pipes (the stream
// filters: overlord, logger, renderers).
void WidenStreamPipes();
// Makes the pipe "fd" is an end of 1 MiB, if it is smaller (best effort).
void WidenPipe(int fd);

// Prints "prog: error: message" (or warning) to stderr.
void Error(std::string_view prog, std::string_view message);
void Warning(std::string_view prog, std::string_view message);

// Start-up of every weft process: opens /dev/null on any of fds 0-2 that
// is closed, marks every inherited fd past them close-on-exec, and ignores
// SIGPIPE, so a closed downstream pipe is an EPIPE error to handle, not a
// silent death.
void InitStreamProcess();

// Sets "KEY=VALUE" in an environment list: any entry for KEY goes, the new
// one is appended (so it is the one found).
void SetEnvEntry(std::vector<std::string>* env, std::string_view kv);

}  // namespace weft
