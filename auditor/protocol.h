// The messages between weft-runner and an auditor fork server (see
// server.h for the exchange). Shared by both sides.
#pragma once

#include <string>
#include <string_view>

#include "auditor.h"

namespace weft::auditor {

// "J\0run\0job\0name\0timeout\0grace\0argv0\0argv1…" (NUL-separated: no
// field of a command line can hold a NUL).
std::string EncodeJob(const Options& o);
// False when the message is malformed.
bool DecodeJob(std::string_view message, Options* o);

}  // namespace weft::auditor
