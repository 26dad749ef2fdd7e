// Native events: JSONL a test writes on the fd named by WEFT_EVENT_FD.
// See docs/events.md, "Native events".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace weft::auditor {

// What the auditor needs from one native event line, read in one pass with
// RapidJSON's SAX reader (which also validates the JSON and its UTF-8).
struct NativeEvent {
  std::string_view type;  // points into the line
  std::string_view rest;  // the line after the type's closing quote
  bool has_ok = false, ok = false;        // assert
  std::string directive;                  // assert: "todo" / "skip"
  std::string reason;                     // bail
  bool has_count = false;                 // plan
  int64_t count = 0;
};

// Checks a line a test wrote: one JSON object, "type" first, a type a test
// may send (plan, assert, diag, note, attachment, timing, bail), none of
// the envelope's keys (run, job, seq, ts, source: the auditor stamps
// those). On failure *err says what is wrong.
bool ParseNative(std::string_view line, NativeEvent* e, std::string* err);

}  // namespace weft::auditor
