// What a job may do and how it is stopped: the options every layer that
// runs tests shares (weft test, weft-runner, weft-auditor, weft.toml).
#pragma once

#include <optional>
#include <string>

namespace weft {

struct JobLimits {
  double timeout_s = 0;       // wall time; 0: none
  double idle_timeout_s = 0;  // no output on any stream this long; 0: none
  double exit_timeout_s = 2;  // output held open this long after exit
  double kill_grace_s = 5;    // TERM, then KILL after this long
  bool keep_tmpdir = false;   // keep the test's TMPDIR after a pass
  bool leaks_fail = true;     // processes left running fail the job
  std::string stdin_path;     // the test's stdin; empty: /dev/null
};

// The same settings, each given or not: a layer (weft.toml's top level, one
// of its overrides, the command line) over the ones below it.
struct LimitFlags {
  std::optional<double> timeout_s, idle_timeout_s, exit_timeout_s, kill_grace_s;
  std::optional<bool> keep_tmpdir, leaks_fail;
  std::optional<std::string> stdin_path;

  void ApplyTo(JobLimits* l) const {
    if (timeout_s) l->timeout_s = *timeout_s;
    if (idle_timeout_s) l->idle_timeout_s = *idle_timeout_s;
    if (exit_timeout_s) l->exit_timeout_s = *exit_timeout_s;
    if (kill_grace_s) l->kill_grace_s = *kill_grace_s;
    if (keep_tmpdir) l->keep_tmpdir = *keep_tmpdir;
    if (leaks_fail) l->leaks_fail = *leaks_fail;
    if (stdin_path) l->stdin_path = *stdin_path;
  }
};

}  // namespace weft
