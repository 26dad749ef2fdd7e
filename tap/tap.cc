// weft::tap — see tap.h. The rules follow TAP::Parser (Perl's Test::Harness,
// the reference for "does this TAP pass?"), with TAP 14 subtests on top.
// Where we deliberately differ from TAP::Parser, the comment says so.
//
// Overview
// --------
// Every line is classified once, by hand (no regex, no allocation): blank,
// YAML, "Bail out!", test point, comment, plan, version, pragma, or other.
// Indentation decides the level: TAP 14 indents a subtest by 4 spaces per
// level. The parser keeps one Level per open (sub)test: its plan, its count,
// its failures and parse errors. Only level 0 feeds the Tally; a subtest
// reaches its parent through the parent's own test point, which is checked
// against the subtest's outcome when it closes the level.
#include "tap.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <limits>
#include <utility>

namespace weft::tap {
namespace {

constexpr size_t kIndent = 4;  // TAP 14: a subtest is indented by 4 spaces.
// A subtest deeper than this is not believed: a line indented by megabytes
// would otherwise open millions of levels. Such a line is kept as output and
// reported as a parse error.
constexpr size_t kMaxDepth = 256;
// Problems() names the failing assertions when there are at most this many.
constexpr size_t kMaxNamedFailures = 10;
// Buffers that grew past this (a huge line) are released after the line, so
// one pathological line does not pin its size in memory for the whole run.
constexpr size_t kKeepCapacity = 64 * 1024;

bool IsBlank(char c) { return c == ' ' || c == '\t'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAsciiAlpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
// Perl's \w, ASCII only.
bool IsAsciiWord(char c) { return IsAsciiAlpha(c) || IsDigit(c) || c == '_'; }
// Perl's \w for the "\b" after ok/TODO: a byte >= 0x80 may be part of a
// letter, so it counts as a word character (the conservative choice: "oké"
// is not a test point).
bool IsWordByte(char c) {
  return IsAsciiWord(c) || static_cast<unsigned char>(c) >= 0x80;
}
char Lower(char c) { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; }

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}
// "lower_prefix" must be lower case.
bool StartsWithNoCase(std::string_view s, std::string_view lower_prefix) {
  if (s.size() < lower_prefix.size()) return false;
  for (size_t i = 0; i < lower_prefix.size(); ++i) {
    if (Lower(s[i]) != lower_prefix[i]) return false;
  }
  return true;
}
std::string_view TrimLeft(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && IsBlank(s[i])) ++i;
  return s.substr(i);
}
std::string_view TrimRight(std::string_view s) {
  size_t n = s.size();
  while (n > 0 && IsBlank(s[n - 1])) --n;
  return s.substr(0, n);
}
std::string_view Trim(std::string_view s) { return TrimRight(TrimLeft(s)); }
// Drops a leading ':' and the blanks after it ("# todo: later", "# SKIP:
// no db"). TAP::Parser keeps ": later" as the reason; nobody wants that.
std::string_view DropColon(std::string_view s) {
  if (!s.empty() && s[0] == ':') return TrimLeft(s.substr(1));
  return s;
}

enum class Number { kNone, kOk, kOverflow };

// Consumes the decimal digits at the start of "*s" (all of them, even past
// 64 bits, so the rest of the line is still found).
Number ConsumeNumber(std::string_view* s, uint64_t* value) {
  size_t i = 0;
  uint64_t v = 0;
  bool overflow = false;
  while (i < s->size() && IsDigit((*s)[i])) {
    const uint64_t digit = uint64_t((*s)[i] - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - digit) / 10) {
      overflow = true;
    } else if (!overflow) {
      v = v * 10 + digit;
    }
    ++i;
  }
  s->remove_prefix(i);
  if (i == 0) return Number::kNone;
  *value = v;
  return overflow ? Number::kOverflow : Number::kOk;
}

void AppendNumber(std::string* out, uint64_t v) {
  char buf[24];
  auto res = std::to_chars(buf, buf + sizeof buf, v);
  out->append(buf, res.ptr);
}
void AppendSigned(std::string* out, int64_t v) {
  char buf[24];
  auto res = std::to_chars(buf, buf + sizeof buf, v);
  out->append(buf, res.ptr);
}

// "\#" -> "#", "\\" -> "\"; any other backslash is kept as written.
void AppendUnescaped(std::string* out, std::string_view s) {
  const size_t old_size = out->size();
  out->resize(old_size + s.size());
  char* dst = out->data() + old_size;
  const char* p = s.data();
  const char* const end = p + s.size();
  while (p < end) {
    char c = *p++;
    if (c == '\\' && p < end && (*p == '#' || *p == '\\')) c = *p++;
    *dst++ = c;
  }
  out->resize(size_t(dst - out->data()));
}

// The position of the first '#' in "s" not escaped by a backslash, or npos.
// TAP::Parser's /^([^\\#]*(?:\\.[^\\#]*)*)#/: a backslash escapes whatever
// follows it, so a '#' is escaped exactly when an odd run of backslashes
// precedes it.
size_t FindUnescapedHash(std::string_view s) {
  size_t from = 0;
  while (from < s.size()) {
    const void* found = std::memchr(s.data() + from, '#', s.size() - from);
    if (found == nullptr) return std::string_view::npos;
    const size_t hash = size_t(static_cast<const char*>(found) - s.data());
    size_t run = 0;
    while (run < hash && s[hash - 1 - run] == '\\') ++run;
    if (run % 2 == 0) return hash;
    from = hash + 1;
  }
  return std::string_view::npos;
}

bool HasBackslash(std::string_view s) {
  return !s.empty() && std::memchr(s.data(), '\\', s.size()) != nullptr;
}

// ---- Line shapes. Each Match* looks at a line with its indentation removed.

struct TestLine {
  bool ok = false;
  Number number = Number::kNone;
  uint64_t value = 0;
  std::string_view rest;  // after the number and blanks
};

// Test2's buffered subtests: a test point whose line ends with " {" is
// followed by its subtest, indented, and a "}" at the test point's own
// indentation. (Not in TAP 14; TAP::Parser reads the indented lines and
// the "}" as unknown lines, so the test point counts at once.)
bool OpensBuffered(std::string_view rest) {
  rest = TrimRight(rest);
  return !rest.empty() && rest.back() == '{' && (rest.size() == 1 || IsBlank(rest[rest.size() - 2]));
}
// The test point's rest without its " {".
std::string_view WithoutBrace(std::string_view rest) {
  rest = TrimRight(rest);
  rest.remove_suffix(1);
  return TrimRight(rest);
}

// TAP::Parser: /^(not )?ok\b\s*(\d+)?\s*(.*)\z/
bool MatchTest(std::string_view s, TestLine* t) {
  if (StartsWith(s, "ok")) {
    t->ok = true;
    s.remove_prefix(2);
  } else if (StartsWith(s, "not ok")) {
    t->ok = false;
    s.remove_prefix(6);
  } else {
    return false;
  }
  if (!s.empty() && IsWordByte(s[0])) return false;  // "okay", "ok1"
  s = TrimLeft(s);
  t->value = 0;
  t->number = ConsumeNumber(&s, &t->value);
  t->rest = TrimLeft(s);
  return true;
}

struct PlanLine {
  Number number = Number::kNone;
  uint64_t value = 0;
  bool has_comment = false;
  std::string_view comment;  // after '#', trimmed
  std::string_view todo;     // TAP 12: "1..N todo 2 3", the numbers
};

// "1..N", then optionally "# comment". TAP::Parser's version 13 grammar only
// takes "# SKIP ..." there and its version 12 grammar only takes a comment on
// "1..0"; TAP 14 allows any comment, so we do, at every version.
bool MatchPlan(std::string_view s, PlanLine* p, bool tap12) {
  if (!StartsWith(s, "1..")) return false;
  s.remove_prefix(3);
  p->value = 0;
  p->number = ConsumeNumber(&s, &p->value);
  if (p->number == Number::kNone) return false;
  s = TrimLeft(s);
  p->has_comment = false;
  p->comment = {};
  p->todo = {};
  // TAP::Parser's TAP 12 grammar: "1..N todo 2 3" lists the TODO tests.
  if (tap12 && StartsWithNoCase(s, "todo") && s.size() > 4 && IsBlank(s[4])) {
    std::string_view list = Trim(s.substr(4));
    for (char c : list)
      if (!(c >= '0' && c <= '9') && !IsBlank(c)) return false;
    p->todo = list;
    return true;
  }
  if (s.empty()) return true;
  if (s[0] != '#') return false;  // "1..3 tests": not a plan
  p->has_comment = true;
  p->comment = Trim(s.substr(1));
  return true;
}

// TAP::Parser: /^TAP\s+version\s+(\d+)\s*\z/i
bool MatchVersion(std::string_view s, Number* number, uint64_t* value) {
  if (!StartsWithNoCase(s, "tap")) return false;
  s.remove_prefix(3);
  if (s.empty() || !IsBlank(s[0])) return false;
  s = TrimLeft(s);
  if (!StartsWithNoCase(s, "version")) return false;
  s.remove_prefix(7);
  if (s.empty() || !IsBlank(s[0])) return false;
  s = TrimLeft(s);
  *number = ConsumeNumber(&s, value);
  return *number != Number::kNone && TrimLeft(s).empty();
}

// One "[+-]name" of a pragma line; advances "*s" past it and any blanks.
bool ConsumePragmaItem(std::string_view* s, bool* enabled,
                       std::string_view* name) {
  if (s->empty() || ((*s)[0] != '+' && (*s)[0] != '-')) return false;
  *enabled = (*s)[0] == '+';
  size_t i = 1;
  while (i < s->size() && IsAsciiWord((*s)[i])) ++i;
  if (i == 1) return false;
  *name = s->substr(1, i - 1);
  *s = TrimLeft(s->substr(i));
  return true;
}

// TAP::Parser: /^pragma\s+([-+]\w+\s*(?:,\s*[-+]\w+\s*)*)$/. Returns the list
// part, or false when the whole line does not have that shape.
bool MatchPragma(std::string_view s, std::string_view* list) {
  if (!StartsWith(s, "pragma")) return false;
  s.remove_prefix(6);
  if (s.empty() || !IsBlank(s[0])) return false;
  s = TrimLeft(s);
  *list = s;
  bool enabled;
  std::string_view name;
  if (!ConsumePragmaItem(&s, &enabled, &name)) return false;
  while (!s.empty()) {
    if (s[0] != ',') return false;
    s = TrimLeft(s.substr(1));
    if (!ConsumePragmaItem(&s, &enabled, &name)) return false;
  }
  return true;
}

// Reads a directive keyword at the start of "s" (after "#" and blanks).
// TAP::Parser wants /(SKIP|TODO)\b/i. We follow it for TODO, since a TODO
// turns a failure into a pass and must not be guessed ("# TODOs left" is
// not one). For SKIP we also take "skipped"/"skipping" (TAP::Parser's own
// plan grammar takes /SKIP\S*/): it only changes how an "ok" is counted,
// and "not ok # SKIP" still fails.
Directive MatchDirective(std::string_view s, std::string_view* after) {
  Directive d;
  size_t i;
  if (StartsWithNoCase(s, "skip")) {
    d = Directive::kSkip;
    i = 4;
    while (i < s.size() && IsAsciiAlpha(s[i])) ++i;
  } else if (StartsWithNoCase(s, "todo")) {
    d = Directive::kTodo;
    i = 4;
  } else {
    return Directive::kNone;
  }
  if (i < s.size() && IsWordByte(s[i])) return Directive::kNone;
  *after = Trim(DropColon(TrimLeft(s.substr(i))));
  return d;
}

}  // namespace

struct Parser::Impl {
  // One open (sub)test. Trivially copyable: the name lives in path_.
  struct Level {
    bool tap_seen = false;  // a plan, test point, pragma or version was seen
    bool named_by_comment = false;
    bool strict = false;
    bool plan_seen = false;
    bool skip_all = false;
    bool plan_trailing = false;  // the plan came after test points
    bool misplaced_reported = false;
    bool after_skip_all_reported = false;
    int64_t planned = 0;
    uint64_t count = 0;   // test points
    uint64_t failed = 0;  // not ok without TODO
    uint64_t parse_errors = 0;
    uint64_t last_number = 0;
    // A buffered subtest (Test2: "ok 1 - name {" … "}"): its test point
    // line (without indentation), reported when the "}" closes it.
    std::string buffered;
  };

  Impl(Sink* s, Tally* t) : sink(s), tally(t) { levels.resize(1); }

  Sink* sink;
  Tally* tally;
  // Pragmas exist from TAP 13 on: before a "TAP version 13/14" line, a
  // "pragma" line is ordinary output (as TAP::Parser reads TAP 12).
  bool pragmas_allowed = false;
  // TAP 12's "1..N todo 2 3": test numbers that are TODO (top level).
  std::vector<uint64_t> plan_todo;
  std::vector<Level> levels;  // [0, depth] are open; the rest is reusable
  size_t depth = 0;
  std::vector<std::string> path;          // names of levels 1..depth
  std::vector<std::string> shallow_path;  // for items above the open depth
  uint64_t line_no = 0;
  bool ended = false;

  // YAML: may open only on the line right after a test point.
  bool after_assert = false;
  bool yaml_active = false;
  size_t yaml_depth = 0;
  size_t yaml_indent = 0;  // spaces before the block's "---"
  std::string yaml_text;   // the block so far, for OnYaml

  std::string scratch;  // unescaped description and reason
  std::string message;  // parse error text
  std::string closing_name;
  std::vector<uint64_t> failed_numbers;  // top-level, first few only

  Context Ctx(size_t at) {
    Context c;
    c.line_no = line_no;
    c.depth = static_cast<int>(at);
    if (at == depth) {
      c.path = &path;
    } else {
      // Rare: a comment or output line at a shallower indentation than the
      // open subtest. Copying a few names is cheap and keeps path/depth
      // consistent.
      shallow_path.assign(path.begin(), path.begin() + std::ptrdiff_t(at));
      c.path = &shallow_path;
    }
    return c;
  }

  void ParseError(std::string_view text, size_t at) {
    if (at == 0) {
      ++tally->parse_errors;
    } else {
      ++levels[at].parse_errors;
    }
    sink->OnParseError(text, Ctx(at));
  }

  void Other(std::string_view line, size_t at, bool strict_applies) {
    sink->OnOther(line, Ctx(at));
    // TAP::Parser: under "pragma +strict", an unknown line is an error.
    if (strict_applies && levels[at].strict) {
      ParseError("non-TAP line under pragma +strict", at);
    }
  }

  void OpenLevel(std::string_view name, bool by_comment) {
    sink->OnSubtestStart(name, Ctx(depth));
    ++depth;
    if (levels.size() <= depth) levels.resize(depth + 1);
    levels[depth] = Level{};
    levels[depth].named_by_comment = by_comment;
    path.emplace_back(name);
  }

  // Pops the deepest level, leaving its name in closing_name.
  Level PopLevel() {
    Level child = levels[depth];
    closing_name = std::move(path.back());
    path.pop_back();
    --depth;
    return child;
  }

  // A subtest that ends without its parent's test point (the parent moved
  // on, or the stream ended) is an error of the parent.
  // After a bail out, nothing more is expected of the stream: the bail out
  // explains the subtests it left open, as it does an unmet plan.
  void AbandonDeeperThan(size_t keep) {
    while (depth > keep) {
      Level child = PopLevel();
      if (!child.buffered.empty()) {
        // A buffered subtest that never saw its "}": said, and its test
        // point (which came first) still counts.
        if (!tally->bailed) {
          message.assign("subtest ");
          if (!closing_name.empty())
            message.append("'").append(closing_name).append("' ");
          message.append("ended without its closing '}'");
          ParseError(message, depth);
        }
        ReportBuffered(child.buffered, depth);
        continue;
      }
      if (tally->bailed) continue;
      message.assign("subtest ");
      if (!closing_name.empty())
        message.append("'").append(closing_name).append("' ");
      message.append("ended without a test point");
      ParseError(message, depth);
    }
  }

  // Makes "at" the open depth for a TAP line found there: opens subtests
  // down to it (an indented TAP line without "# Subtest:" opens one), or
  // abandons the ones below it.
  void MoveTo(size_t at) {
    while (depth < at) OpenLevel({}, false);
    AbandonDeeperThan(at);
  }

  // The held test point of a buffered subtest, at "at".
  void ReportBuffered(const std::string& held, size_t at, const Level* child = nullptr) {
    TestLine t;
    if (!MatchTest(held, &t)) return;
    t.rest = WithoutBrace(t.rest);
    bool ok;
    std::string_view description;
    Test(t, at, &ok, &description);
    if (child) CheckSubtest(*child, description, ok, at);
  }
  void OpenBuffered(const TestLine& t, std::string_view content, size_t at);

  void Line(std::string_view line);
  void End();
  void Bail(std::string_view reason, size_t at);
  void Comment(std::string_view line, std::string_view content, size_t at);
  void SubtestComment(std::string_view line, std::string_view content,
                      size_t at);
  // Reports a test point; "*ok" and "*description" receive what the sink
  // was given (the description stays valid until the next test point).
  void Test(const TestLine& t, size_t at, bool* ok,
            std::string_view* description);
  void CheckSubtest(const Level& child, std::string_view description,
                    bool line_ok, size_t at);
  void Plan(const PlanLine& p, size_t at);
  void Version(Number number, uint64_t value, size_t at);
  void Pragma(std::string_view list, size_t at);
  void ReleaseHugeBuffers();
};

void Parser::Impl::Line(std::string_view line) {
  ++line_no;
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  size_t spaces = 0;
  while (spaces < line.size() && line[spaces] == ' ') ++spaces;
  const std::string_view content = line.substr(spaces);
  const bool blank = TrimRight(content).empty();

  if (yaml_active) {
    // The block is every line indented more than its test point; blank
    // lines belong to it (YAML literals may hold them). "..." ends it. A
    // less indented line ends it too, and is then parsed normally: a block
    // that never terminates must not swallow the rest of the stream.
    if (blank || spaces > yaml_depth * kIndent) {
      Other(line, yaml_depth, false);
      if (Trim(content) == "...") {
        yaml_active = false;
        sink->OnYaml(yaml_text, Ctx(yaml_depth));
        yaml_text.clear();
        if (yaml_text.capacity() > kKeepCapacity) std::string().swap(yaml_text);
        return;
      }
      std::string_view kept = TrimRight(line);
      if (!kept.empty() && kept.back() == '\r') kept.remove_suffix(1);
      kept.remove_prefix(std::min(kept.size(), std::min(spaces, yaml_indent)));
      yaml_text.append(kept).push_back('\n');
      return;
    }
    yaml_text.clear();
    yaml_active = false;
    ParseError("YAML block not terminated by '...'", yaml_depth);
  }
  if (blank) return;  // ignored, and not output

  const bool yaml_may_start = after_assert;
  after_assert = false;
  if (yaml_may_start && spaces > depth * kIndent &&
      StartsWith(content, "---")) {
    yaml_active = true;
    yaml_depth = depth;
    yaml_indent = spaces;
    yaml_text.clear();
    Other(line, depth, false);
    return;
  }

  const size_t level = spaces / kIndent;
  const size_t here = std::min(level, depth);  // for lines that open nothing

  // TAP::Parser: /^\s*Bail out!/ — at any indentation.
  if (std::string_view b = TrimLeft(content); StartsWith(b, "Bail out!")) {
    Bail(Trim(b.substr(9)), here);
    ReleaseHugeBuffers();
    return;
  }
  if (spaces % kIndent != 0) {
    Other(line, here, true);
    return;
  }
  if (content[0] == '#') {
    Comment(line, content, level);
    ReleaseHugeBuffers();
    return;
  }
  if (content[0] == '}' && TrimRight(content).size() == 1 && level < depth &&
      !levels[level + 1].buffered.empty()) {
    // The end of a buffered subtest: now its test point counts.
    AbandonDeeperThan(level + 1);
    const Level child = PopLevel();
    ReportBuffered(child.buffered, level, &child);
    ReleaseHugeBuffers();
    return;
  }

  TestLine test;
  PlanLine plan;
  Number version = Number::kNone;
  uint64_t version_value = 0;
  std::string_view pragmas;
  const bool is_test = MatchTest(content, &test);
  const bool is_plan = !is_test && MatchPlan(content, &plan, !pragmas_allowed);
  const bool is_version =
      !is_test && !is_plan && MatchVersion(content, &version, &version_value);
  const bool is_pragma = !is_test && !is_plan && !is_version &&
                         pragmas_allowed && MatchPragma(content, &pragmas);
  if (!is_test && !is_plan && !is_version && !is_pragma) {
    Other(line, here, true);
    return;
  }
  if (level > kMaxDepth) {
    Other(line, here, false);
    message.assign("subtests nested deeper than ");
    AppendNumber(&message, kMaxDepth);
    message.append(" levels");
    ParseError(message, here);
    return;
  }

  if (is_test && OpensBuffered(test.rest)) {
    MoveTo(level);
    OpenBuffered(test, content, level);
  } else if (is_test) {
    bool ok;
    std::string_view description;
    if (level < depth) {
      // The parent's own test point closes the subtest below it.
      AbandonDeeperThan(level + 1);
      const Level child = PopLevel();
      Test(test, level, &ok, &description);
      CheckSubtest(child, description, ok, level);
    } else {
      MoveTo(level);
      Test(test, level, &ok, &description);
    }
  } else {
    MoveTo(level);
    if (is_plan) Plan(plan, level);
    if (is_version) Version(version, version_value, level);
    if (is_pragma) Pragma(pragmas, level);
  }
  ReleaseHugeBuffers();
}

void Parser::Impl::OpenBuffered(const TestLine& t, std::string_view content, size_t at) {
  // Named as the test point's description: without "- ", a directive
  // and the " {".
  std::string_view name = WithoutBrace(t.rest);
  if (!name.empty() && name[0] == '-' && (name.size() == 1 || IsBlank(name[1])))
    name = TrimLeft(name.substr(1));
  if (const size_t hash = FindUnescapedHash(name); hash != name.npos)
    name = TrimRight(name.substr(0, hash));
  scratch.clear();
  AppendUnescaped(&scratch, name);
  OpenLevel(scratch, false);
  levels[depth].buffered.assign(TrimRight(content));
}

void Parser::Impl::ReleaseHugeBuffers() {
  if (scratch.capacity() > kKeepCapacity) std::string().swap(scratch);
  if (message.capacity() > kKeepCapacity) std::string().swap(message);
  if (closing_name.capacity() > kKeepCapacity) std::string().swap(closing_name);
}

void Parser::Impl::Bail(std::string_view reason, size_t at) {
  // TAP 14: a bail out in a subtest stops the whole run, so it counts at the
  // top level wherever it appears. The first reason is kept.
  if (!tally->bailed) {
    tally->bailed = true;
    tally->bail_reason.assign(reason);
  }
  sink->OnBail(reason, Ctx(at));
}

void Parser::Impl::Comment(std::string_view line, std::string_view content,
                           size_t at) {
  if (StartsWith(content, "# Subtest:")) {
    SubtestComment(line, content, at);
    return;
  }
  if (at > depth) {
    // An indented comment with no subtest open at that depth: not TAP at
    // any level that exists (and a plain comment opens no subtest).
    Other(line, depth, true);
    return;
  }
  std::string_view text = content.substr(1);
  if (!text.empty() && text[0] == ' ') text.remove_prefix(1);
  sink->OnComment(text, Ctx(at));
}

void Parser::Impl::SubtestComment(std::string_view line,
                                  std::string_view content, size_t at) {
  const std::string_view name = Trim(content.substr(10));
  if (at > kMaxDepth) {
    Other(line, depth, true);
    return;
  }
  if (at > depth) {
    // Older Test::More style: the comment sits at the child's indentation.
    while (depth + 1 < at) OpenLevel({}, false);
    OpenLevel(name, true);
    return;
  }
  // TAP 14 style: at the parent's indentation. Some producers print both
  // forms; a repeat of the announcement of a subtest that has not started
  // yet is just a comment.
  if (at == depth && at > 0 && levels[at].named_by_comment &&
      !levels[at].tap_seen && path.back() == name) {
    std::string_view text = content.substr(1);
    if (!text.empty() && text[0] == ' ') text.remove_prefix(1);
    sink->OnComment(text, Ctx(at));
    return;
  }
  AbandonDeeperThan(at);
  if (at + 1 > kMaxDepth) {
    Other(line, depth, true);
    return;
  }
  OpenLevel(name, true);
}

void Parser::Impl::Test(const TestLine& t, size_t at, bool* ok_out,
                        std::string_view* description_out) {
  Level& lv = levels[at];
  lv.tap_seen = true;
  ++lv.count;

  Assertion a;
  a.ok = t.ok;
  // A number beyond 64 bits: the line is still a test point (TAP::Parser
  // also keeps it, as 1e+26). We cannot know which test it meant, so it
  // takes the next number, counts as a failed assertion (ok and directive
  // dropped) and is a parse error.
  const bool overflow = t.number == Number::kOverflow;
  if (t.number == Number::kOk) {
    a.numbered = true;
    a.number = t.value;
  } else {
    a.number = lv.count;
  }

  // Description: an optional "- ", then text up to the first unescaped '#'
  // when a directive follows it (TAP::Parser:
  // /^([^\\#]*(?:\\.[^\\#]*)*)#\s*(SKIP|TODO)\b\s*(.*)$/i). An unescaped
  // '#' not followed by a directive stays in the description, and so does
  // everything after it, as TAP::Parser does.
  std::string_view rest = t.rest;
  if (!rest.empty() && rest[0] == '-' &&
      (rest.size() == 1 || IsBlank(rest[1]))) {
    rest = TrimLeft(rest.substr(1));
  }
  std::string_view description = TrimRight(rest);
  std::string_view reason;
  if (const size_t hash = FindUnescapedHash(rest); hash != rest.npos) {
    std::string_view after;
    const Directive d = MatchDirective(TrimLeft(rest.substr(hash + 1)), &after);
    if (d != Directive::kNone) {
      a.directive = d;
      description = TrimRight(rest.substr(0, hash));
      reason = after;
    }
  }
  const bool unescape_description = HasBackslash(description);
  const bool unescape_reason = HasBackslash(reason);
  if (unescape_description || unescape_reason) {
    scratch.clear();
    if (unescape_description) AppendUnescaped(&scratch, description);
    const size_t description_size = scratch.size();
    if (unescape_reason) AppendUnescaped(&scratch, reason);
    if (unescape_description)
      description = std::string_view(scratch).substr(0, description_size);
    if (unescape_reason)
      reason = std::string_view(scratch).substr(description_size);
  }
  a.description = description;
  a.reason = reason;
  if (a.directive == Directive::kNone && at == 0 && !plan_todo.empty() &&
      std::find(plan_todo.begin(), plan_todo.end(), a.number) != plan_todo.end())
    a.directive = Directive::kTodo;
  if (overflow) {
    a.ok = false;
    a.directive = Directive::kNone;
    a.reason = {};
  }

  const bool todo = a.directive == Directive::kTodo;
  const bool counts_failed = !a.ok && !todo;
  if (counts_failed) ++lv.failed;
  if (at == 0) {
    ++tally->run;
    if (a.ok) {
      ++tally->passed;
      if (todo) ++tally->todo_passed;
      if (a.directive == Directive::kSkip) ++tally->skipped;
    } else if (todo) {
      ++tally->todo;
    } else {
      ++tally->failed;
      if (failed_numbers.size() < kMaxNamedFailures)
        failed_numbers.push_back(a.number);
    }
  }
  sink->OnAssert(a, Ctx(at));
  after_assert = true;
  *ok_out = a.ok;
  *description_out = a.description;

  // Errors come after the assertion they are about.
  if (overflow) {
    ParseError("test number out of range", at);
  } else if (a.numbered) {
    // TAP::Parser: "Tests out of sequence. Found (N) but expected (M)",
    // where M is the count of test points so far; it says so for "ok 0"
    // too, as tests are numbered from 1.
    message.clear();
    if (a.number == 0) {
      message.assign("test number 0: tests are numbered from 1");
    } else if (a.number != lv.count) {
      message.assign(lv.last_number == a.number ? "duplicate test number "
                                                : "test number ");
      AppendNumber(&message, a.number);
      message.append(" out of sequence (expected ");
      AppendNumber(&message, lv.count);
      message.append(")");
    }
    if (!message.empty()) ParseError(message, at);
    lv.last_number = a.number;
  }
  if (lv.plan_seen && lv.plan_trailing && !lv.misplaced_reported) {
    // A plan that had test points before it and after it.
    lv.misplaced_reported = true;
    message.assign("plan 1..");
    AppendSigned(&message, lv.planned);
    message.append(" must be at the beginning or end of the TAP output");
    ParseError(message, at);
  } else if (lv.plan_seen && lv.skip_all && !lv.plan_trailing &&
             !lv.after_skip_all_reported) {
    lv.after_skip_all_reported = true;
    ParseError("test point after a skip-all plan (1..0)", at);
  }
}

// The parent's test point has closed "child": the two must agree. A child
// with a bad plan, or whose outcome contradicts the parent's "ok"/"not ok",
// is a parse error of the parent (TAP::Parser would not even see the child;
// TAP 14 leaves the judgement to the harness).
void Parser::Impl::CheckSubtest(const Level& child,
                                std::string_view description, bool line_ok,
                                size_t at) {
  // The subtest's name: its "# Subtest:" name, else the parent line's
  // description.
  const std::string_view name =
      closing_name.empty() ? description : std::string_view(closing_name);
  message.assign("subtest ");
  if (!name.empty()) message.append("'").append(name).append("' ");
  if (!child.plan_seen) {
    message.append("has no plan");
  } else if (uint64_t(child.planned) != child.count) {
    message.append("planned ");
    AppendSigned(&message, child.planned);
    message.append(" but ran ");
    AppendNumber(&message, child.count);
  } else {
    const bool child_ok = child.failed == 0 && child.parse_errors == 0;
    if (child_ok == line_ok) return;
    if (child_ok) {
      message.append("passed but its test point says not ok");
    } else {
      message.append("failed (");
      if (child.failed > 0) {
        AppendNumber(&message, child.failed);
        message.append(" of ");
        AppendNumber(&message, child.count);
        message.append(child.count == 1 ? " assertion failed"
                                        : " assertions failed");
        if (child.parse_errors > 0) message.append(", ");
      }
      if (child.parse_errors > 0) {
        AppendNumber(&message, child.parse_errors);
        message.append(child.parse_errors == 1 ? " TAP parse error"
                                               : " TAP parse errors");
      }
      message.append(") but its test point says ok");
    }
  }
  ParseError(message, at);
}

void Parser::Impl::Plan(const PlanLine& p, size_t at) {
  Level& lv = levels[at];
  lv.tap_seen = true;
  if (p.number == Number::kOverflow ||
      p.value > uint64_t(std::numeric_limits<int64_t>::max())) {
    ParseError("plan count out of range", at);
    return;
  }
  if (lv.plan_seen) {
    // TAP::Parser: "More than one plan found in TAP output". The first plan
    // stays in force.
    message.assign("more than one plan (1..");
    AppendNumber(&message, p.value);
    message.append(" after 1..");
    AppendSigned(&message, lv.planned);
    message.append(")");
    ParseError(message, at);
    return;
  }
  lv.plan_seen = true;
  lv.planned = int64_t(p.value);
  if (at == 0 && !p.todo.empty()) {
    std::string_view list = p.todo;
    while (!(list = TrimLeft(list)).empty()) {
      uint64_t n = 0;
      if (ConsumeNumber(&list, &n) != Number::kOk) break;
      plan_todo.push_back(n);
    }
  }
  lv.skip_all = p.value == 0;
  lv.plan_trailing = lv.count > 0;

  ::weft::tap::Plan plan;
  plan.count = lv.planned;
  plan.skip_all = lv.skip_all;
  plan.reason = p.comment;
  if (plan.skip_all && StartsWithNoCase(plan.reason, "skip")) {
    // "1..0 # SKIP reason", "1..0 # Skipped: reason" (TAP::Parser's
    // /#\s*SKIP\S*\s+(.*)/i). Without the keyword, the comment is the reason.
    size_t i = 4;
    while (i < plan.reason.size() && IsAsciiAlpha(plan.reason[i])) ++i;
    if (i == plan.reason.size() || !IsWordByte(plan.reason[i])) {
      plan.reason = Trim(DropColon(TrimLeft(plan.reason.substr(i))));
    }
  }
  if (at == 0) {
    tally->plan_seen = true;
    tally->planned = plan.count;
    tally->skip_all = plan.skip_all;
    if (plan.skip_all) tally->skip_reason.assign(plan.reason);
  }
  sink->OnPlan(plan, Ctx(at));
}

void Parser::Impl::Version(Number number, uint64_t value, size_t at) {
  Level& lv = levels[at];
  // TAP::Parser accepts the version line while it has seen no plan and no
  // test point (comments and other output before it are fine), despite its
  // message "must be the first line of output". We do the same, per level.
  const bool first = !lv.tap_seen;
  lv.tap_seen = true;
  if (!first) {
    ParseError("TAP version must be the first line of the TAP output", at);
    return;
  }
  if (number == Number::kOk && value >= 13 && value <= 14) {
    pragmas_allowed = true;
    sink->OnVersion(int(value), Ctx(at));
    return;
  }
  message.assign(number == Number::kOk && value < 13
                     ? "explicit TAP version must be at least 13, got "
                     : "unknown TAP version ");
  if (number == Number::kOk) {
    AppendNumber(&message, value);
  } else {
    message.append("(out of range)");
  }
  ParseError(message, at);
}

void Parser::Impl::Pragma(std::string_view list, size_t at) {
  Level& lv = levels[at];
  lv.tap_seen = true;
  bool enabled;
  std::string_view name;
  // MatchPragma validated the shape.
  while (ConsumePragmaItem(&list, &enabled, &name)) {
    if (name == "strict") lv.strict = enabled;
    sink->OnPragma(name, enabled, Ctx(at));
    if (list.empty() || list[0] != ',') break;
    list = TrimLeft(list.substr(1));
  }
}

void Parser::Impl::End() {
  if (ended) return;
  ended = true;
  if (yaml_active) {
    yaml_active = false;
    ParseError("YAML block not terminated by '...'", yaml_depth);
  }
  AbandonDeeperThan(0);
}

Parser::Parser(Sink* sink)
    : sink_(sink), impl_(std::make_unique<Impl>(sink_, &tally_)) {}

Parser::~Parser() = default;

bool Parser::yaml_open() const { return impl_->yaml_active; }

void Parser::Line(std::string_view line) { impl_->Line(line); }

void Parser::End() { impl_->End(); }

std::vector<std::string> Parser::Problems() const {
  std::vector<std::string> problems;
  std::string s;
  if (tally_.bailed) {
    s.assign("bailed out");
    if (!tally_.bail_reason.empty()) s.append(": ").append(tally_.bail_reason);
    problems.push_back(s);
  }
  if (tally_.failed > 0) {
    s.clear();
    AppendNumber(&s, tally_.failed);
    s.append(" of ");
    AppendNumber(&s, tally_.run);
    s.append(tally_.run == 1 ? " assertion failed" : " assertions failed");
    if (tally_.failed <= kMaxNamedFailures) {
      s.append(" (");
      for (size_t i = 0; i < impl_->failed_numbers.size(); ++i) {
        s.append(i > 0 ? ", #" : "#");
        AppendNumber(&s, impl_->failed_numbers[i]);
      }
      s.append(")");
    }
    problems.push_back(s);
  }
  // After a bail out the plan was not going to be met: the bail out is the
  // reason, and "no plan" would only be noise.
  if (!tally_.bailed) {
    if (!tally_.plan_seen) {
      problems.push_back("no plan");
    } else if (uint64_t(tally_.planned) != tally_.run) {
      s.assign("planned ");
      AppendSigned(&s, tally_.planned);
      s.append(" but ran ");
      AppendNumber(&s, tally_.run);
      problems.push_back(s);
    }
  }
  if (tally_.parse_errors > 0) {
    s.clear();
    AppendNumber(&s, tally_.parse_errors);
    s.append(tally_.parse_errors == 1 ? " TAP parse error"
                                      : " TAP parse errors");
    problems.push_back(s);
  }
  return problems;
}

}  // namespace weft::tap
