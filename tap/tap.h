// weft::tap — a streaming TAP (12, 13, 14) parser with no I/O.
//
// Feed it one line at a time (without the trailing '\n'; a trailing '\r' is
// tolerated and stripped); it calls a Sink for every item it recognises and
// keeps the tallies the auditor needs for the job's verdict. It never
// throws, never allocates per line in the common case, and never stops
// parsing: whatever it cannot understand becomes OnOther (kept as output) or
// OnParseError.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace weft::tap {

enum class Directive { kNone, kSkip, kTodo };

// Where in the stream an item was found. "path" holds the names of the
// enclosing subtests, outermost first (empty at top level); "depth" is its
// size. Views are valid only during the Sink call.
struct Context {
  uint64_t line_no = 0;  // 1-based line number in the TAP stream
  int depth = 0;
  const std::vector<std::string>* path = nullptr;
};

struct Plan {
  int64_t count = 0;
  bool skip_all = false;        // "1..0" (with or without "# SKIP reason")
  std::string_view reason;      // the skip reason, or the plan's comment
};

struct Assertion {
  uint64_t number = 0;          // explicit number, or the implied next one
  bool numbered = false;        // false when the line carried no number
  bool ok = false;
  std::string_view description; // unescaped ("\#" -> "#", "\\" -> "\")
  Directive directive = Directive::kNone;
  std::string_view reason;      // directive's reason (may be empty)
};

class Sink {
 public:
  virtual ~Sink() = default;
  virtual void OnVersion(int /*version*/, const Context&) {}
  virtual void OnPlan(const Plan&, const Context&) {}
  virtual void OnAssert(const Assertion&, const Context&) {}
  virtual void OnBail(std::string_view /*reason*/, const Context&) {}
  // "# text": text is what follows "#" and one optional space.
  virtual void OnComment(std::string_view /*text*/, const Context&) {}
  // A subtest begins: "# Subtest: name" or, without that comment, the first
  // indented TAP line. name may be empty until the parent line names it.
  // The Context is the parent's (where the subtest appears); the items of
  // the subtest then arrive with depth + 1 and the name appended to path.
  virtual void OnSubtestStart(std::string_view /*name*/, const Context&) {}
  // A line that is not TAP: kept byte for byte as output.
  virtual void OnOther(std::string_view /*line*/, const Context&) {}
  virtual void OnParseError(std::string_view /*message*/, const Context&) {}
  // "pragma +strict, -foo": called once per pragma, in order. Only "strict"
  // changes how the parser reads the rest of that (sub)test's TAP.
  // A YAML diagnostic block after a test point ended with "...": its lines
  // between "---" and "...", with the "---" line's indentation removed,
  // joined by '\n'. (Its lines were also reported through OnOther, so the
  // bytes are kept as output.) Not called for an unterminated block.
  virtual void OnYaml(std::string_view /*text*/, const Context&) {}
  virtual void OnPragma(std::string_view /*name*/, bool /*enabled*/,
                        const Context&) {}
};

// Tallies of the top-level stream (subtests count only through their
// parent's line).
struct Tally {
  bool plan_seen = false;
  int64_t planned = 0;
  bool skip_all = false;
  std::string skip_reason;
  uint64_t run = 0;          // assertions seen
  uint64_t passed = 0;       // ok, including TODO-that-passed and SKIP
  uint64_t failed = 0;       // not ok without TODO
  uint64_t skipped = 0;      // ok # SKIP
  uint64_t todo = 0;         // not ok # TODO
  uint64_t todo_passed = 0;  // ok # TODO (unexpectedly passing)
  uint64_t parse_errors = 0;
  bool bailed = false;
  std::string bail_reason;
};

class Parser {
 public:
  explicit Parser(Sink* sink);  // "*sink" must outlive this Parser.
  ~Parser();
  Parser(const Parser&) = delete;
  Parser& operator=(const Parser&) = delete;

  void Line(std::string_view line);
  // End of stream: closes an unterminated YAML block and any subtest still
  // open (both are parse errors). A missing plan or a plan/count mismatch is
  // not counted in Tally::parse_errors; it shows in Problems(). Calling End()
  // again does nothing.
  void End();

  const Tally& tally() const { return tally_; }
  // Inside a YAML block (its "---" seen, its "..." not yet).
  bool yaml_open() const;
  // Human-readable reasons the stream itself fails (no plan, plan mismatch,
  // failed assertions, bail out, parse errors). Empty when the TAP passes.
  std::vector<std::string> Problems() const;

 private:
  // Implementation-defined: see tap.cc.
  struct Impl;
  Sink* sink_;
  Tally tally_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace weft::tap
