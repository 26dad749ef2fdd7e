// weft-auditor --guard: keeps a service (a daemon a suite needs, started
// by weft-runner) on a leash: its own process group, stopped in order on
// SIGTERM, and killed, group and all, when the runner goes away.
#pragma once

#include "auditor.h"

namespace weft::auditor {

// Runs o.argv (in o.cwd, with o.env) in a new process group with our
// stdout and stderr, and waits. On SIGTERM/SIGINT/SIGHUP, or EOF on
// o.lifeline_fd: TERM to the group, KILL after o.limits.kill_grace_s (a
// second signal: at once). When it ends, whatever is left of its group is
// killed. Ends as it ended: with its exit code, or killed by the signal
// that killed it (raised on ourselves); 127 when it could not be started.
int Guard(const Options& o);

}  // namespace weft::auditor
