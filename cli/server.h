// The persistent runner: `weft start`, `weft run`, `weft stop`, and its
// line in `weft status`. All of them work in the project's root (the
// caller has entered it), where .weft/ holds the runner's files:
//   .weft/control      the runner's control pipe (run requests, stop, …)
//   .weft/server.lock  held (flock) by the runner's supervisor while it lives
//   .weft/server.pid   that supervisor's pid
//   .weft/server.log   the chain's stderr
#pragma once

#include <string>
#include <vector>

namespace weft::cli {

// Without a weft.toml to mark the project's root: the nearest directory,
// here or above, whose .weft/ has a runner's files (else stays here).
void EnterServedRoot();

// Starts weft-runner --serve | weft-overlord | weft-logger in the
// background and returns once it serves (or with the reason it cannot).
// "runner_args": weft-runner options for the whole life of the runner.
int ServerStart(const std::vector<std::string>& runner_args, bool zstd);

// A run request for a runner serving on --control (docs/weft-runner.md):
// "run" (empty: the runner names it), the client's directory, weft-runner
// run options and paths, and the changed files that made it (weft watch:
// the tests among them, or that loaded one; such requests coalesce).
std::string RunRequest(const std::string& run, const std::string& cwd,
                       const std::vector<std::string>& args,
                       const std::vector<std::string>& changed = {});

// Submits a run (weft-runner run options and paths, relative to "cwd"),
// shows it live with weft-render-term ("render": its arguments, without
// the log) and returns the run's exit code.
int ServerRun(const std::vector<std::string>& args, const std::string& cwd,
              const std::vector<std::string>& render);

// Stops the runner: no new runs; running jobs get "grace_s" to finish.
int ServerStop(double grace_s);

// One line about this project's runner, or "" when none runs.
std::string ServerStatus();

}  // namespace weft::cli
