// The auditor as a fork server: started once per run, it forks one auditor
// per job instead of the runner exec'ing a new one, so each job skips the
// exec, the loader and libc's start-up (see docs/performance.md).
//
// Protocol, over a SOCK_SEQPACKET socket (one message per datagram):
//   runner -> server  "J\0<run>\0<job>\0<name>\0<timeout>\0<idle>\0<exit>\0<grace>\0<attempt>\0<keep>\0<leaks>\0<stdin>\0<argv0>\0…"
//                     with SCM_RIGHTS carrying the write end of the job's
//                     output pipe (the auditor's stdout).
//   server -> runner  "S <job> <pid>"      the auditor runs as <pid>
//                     "E <job> <status>"   it ended (a waitpid status)
//                     "F <job> <errno>"    it could not be started
// The server exits when the runner closes its end. Each forked auditor
// watches fd 3 (the runner's lifeline) like an exec'ed one.
#pragma once


namespace weft::auditor {

// Serves job requests on "control_fd" until it reaches EOF. Returns the
// exit code for the server process.
int Serve(int control_fd);

}  // namespace weft::auditor
