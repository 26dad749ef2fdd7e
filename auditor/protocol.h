// The messages between weft-runner and an auditor fork server (see
// server.h for the exchange). Shared by both sides.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "auditor.h"

namespace weft::auditor {

// "J\0run\0job\0name\0timeout\0idle\0exit\0grace\0attempt\0keep\0leaks\0stdin\0cwd\0attempts\0stage\0nenv\0env…\0argv0\0argv1…" (NUL-separated: no
// field of a command line can hold a NUL).
std::string EncodeJob(const Options& o);
// False when the message is malformed.
bool DecodeJob(std::string_view message, Options* o);

// One datagram with one fd attached (SCM_RIGHTS). Returns what sendmsg /
// recvmsg return (-1 with errno); *fd is -1 when none came.
ssize_t SendWithFd(int sock, std::string_view message, int fd);
ssize_t RecvWithFd(int sock, char* buf, size_t size, int* fd);

}  // namespace weft::auditor
