// The auditor as a fork server: started once per run, it audits each job in
// a worker process of its own, forked once and reused job after job (one
// worker per job running at once), instead of the runner exec'ing a new
// auditor per job: each job skips the exec, the loader, libc's start-up,
// and the fork and exit of a process (see docs/performance.md).
//
// Protocol, over a SOCK_SEQPACKET socket (one message per datagram):
//   runner -> server  "J\0<run>\0<job>\0<name>\0<timeout>\0<idle>\0<exit>\0<grace>\0<attempt>\0<keep>\0<leaks>\0<stdin>\0<argv0>\0…"
//                     with SCM_RIGHTS carrying the write end of the job's
//                     output pipe (the auditor's stdout).
//   server -> runner  "S <job> <pid>"      the job's auditor runs as <pid>
//                                          (its worker: signal it to stop
//                                          the job, as an exec'ed auditor)
//                     "E <job> <status>"   it ended (a waitpid status: the
//                                          auditor's exit code, or how its
//                                          worker died)
//                     "F <job> <errno>"    it could not be started
// Between the server and a worker (a socketpair each): the runner's
// message behind "<TMPDIR>\0", with the pipe; back "G" when the job starts
// and "D <exit code>" at its end. A stop signal pending in a worker when a
// job comes was sent for the job before (the runner signals a job until it
// hears of its end, and the next job comes after that), so the worker
// drops pending ones first, then says "G"; only then does the server send
// "S", so every signal the runner sends for the job comes after the drop.
// A worker whose job left something open (its event loop could not close)
// exits instead of taking another. The server exits when the runner closes
// its end; the workers at their socket's EOF. Each job's auditor watches
// fd 3 (the runner's lifeline) like an exec'ed one.
#pragma once


namespace weft::auditor {

// Serves job requests on "control_fd" until it reaches EOF. Returns the
// exit code for the server process.
int Serve(int control_fd);

}  // namespace weft::auditor
