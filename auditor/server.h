// The auditor as a fork server: started once per run, it audits each job in
// a worker process of its own, forked once and reused job after job (one
// worker per job running at once), instead of the runner exec'ing a new
// auditor per job: each job skips the exec, the loader, libc's start-up,
// and the fork and exit of a process (see docs/performance.md).
//
// The server only forks and reaps workers; the runner talks to each worker
// directly, so a job's start and end cross one process boundary each way,
// not two. All sockets are SOCK_SEQPACKET (one message per datagram).
//   runner -> server  "W" with SCM_RIGHTS carrying one end of a socketpair
//                     the runner made: fork a worker on it
//   server -> runner, on the worker's socket (the server keeps a copy of
//                     the worker's end until then):
//                     "X <status>"         the worker ended (its waitpid
//                                          status, for the job it had)
//                     "F <errno>"          the worker could not be forked
//   worker -> runner  "H <pid>"            first: the worker is up
//   runner -> worker  "J\0<run>\0<job>\0<name>\0<timeout>\0<idle>\0<exit>\0<grace>\0<attempt>\0<keep>\0<leaks>\0<stdin>\0<argv0>\0…"
//                     with SCM_RIGHTS carrying the write end of the job's
//                     output pipe (the auditor's stdout)
//   worker -> runner  "G"                  the job starts (signal <pid> to
//                                          stop it, as an exec'ed auditor)
//                     "D <code>"           it ended: the auditor's exit code
//                     "D <code> last"      …and the worker takes no other
//                                          (something of the job is still
//                                          open); it exits
// A stop signal pending in a worker when a job comes was sent for the job
// before (the runner signals a job until it hears of its end, and the next
// job comes after that), so the worker drops pending ones first, then says
// "G"; the runner signals a job only after its "G", so every signal it
// sends for the job comes after the drop. Everything about a worker comes
// in order on its socket: what it said, then "X" (how it died: the job it
// had fails with that), then the socket's end. If the server dies, the
// workers' jobs still end by their "D" (or are lost at their socket's end
// without one), and each worker takes no other job. Workers exit at
// their socket's EOF; the server, once the runner closed its socket, when
// its workers have. Each job's auditor watches fd 3 (the runner's
// lifeline) like an exec'ed one; each worker keeps one TMPDIR for job after
// job while they pass.
#pragma once


namespace weft::auditor {

// Serves job requests on "control_fd" until it reaches EOF. Returns the
// exit code for the server process.
int Serve(int control_fd);

}  // namespace weft::auditor
