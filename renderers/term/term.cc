#include "term.h"

#include <weft/common/util.h>

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

namespace weft::term {

namespace {

constexpr size_t kTailLines = 10;       // other output shown for a failure
constexpr size_t kAttachLines = 40;     // diagnostics kept per failure
constexpr size_t kFailuresShown = 10;   // failed assertions detailed per job
constexpr int64_t kRedrawUs = 50 * 1000;  // at most 20 redraws a second
constexpr size_t kSlowest = 5;

// Columns a text takes: one per code point (UTF-8 continuation bytes take
// none). Wide characters are rare in status lines; a margin covers them.
size_t Columns(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// The first "cols" columns of s, whole code points only.
std::string_view FirstColumns(std::string_view s, size_t cols) {
  size_t n = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80 && n++ == cols)
      return s.substr(0, i);
  }
  return s;
}

// Terminal safety: a test's bytes must not drive the terminal (escape
// sequences, carriage returns). Control characters become visible.
std::string Visible(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    // C1 controls (U+0080-U+009F, UTF-8 C2 80-9F): a terminal may act on
    // them (U+009B is CSI). Show them as escapes.
    if (c == 0xC2 && i + 1 < s.size() &&
        static_cast<unsigned char>(s[i + 1]) >= 0x80 &&
        static_cast<unsigned char>(s[i + 1]) <= 0x9F) {
      out += fmt::format("\\u{:04x}", static_cast<unsigned char>(s[i + 1]));
      ++i;
      continue;
    }
    if (c == '\t' || c >= 0x20) {
      if (c == 0x7f)
        out += "^?";
      else
        out += static_cast<char>(c);
    } else if (c == '\r') {
      // dropped: CRLF endings are common and carry nothing to show
    } else {
      out += '^';
      out += static_cast<char>(c + '@');
    }
  }
  return out;
}

}  // namespace

std::string FormatDuration(int64_t us) {
  if (us < 0) us = 0;
  if (us < 1000000) return fmt::format("{}ms", (us + 500) / 1000);
  if (us < 60 * 1000000LL) return fmt::format("{:.2f}s", us / 1e6);
  int64_t s = us / 1000000;
  return fmt::format("{}m{:02}s", s / 60, s % 60);
}

std::string Renderer::Paint(std::string_view text, const std::string& sgr) const {
  if (!o_.color) return std::string(text);
  return fmt::format("\x1b[{}m{}\x1b[0m", sgr, text);
}

bool ParseColours(std::string_view spec, Colours* c, std::string* err) {
  while (!spec.empty()) {
    size_t comma = spec.find(',');
    std::string_view item = spec.substr(0, comma);
    spec = comma == std::string_view::npos ? std::string_view() : spec.substr(comma + 1);
    if (item.empty()) continue;
    size_t eq = item.find('=');
    std::string_view role = item.substr(0, eq);
    std::string_view value = eq == std::string_view::npos ? "" : item.substr(eq + 1);
    std::string* slot = role == "pass"      ? &c->pass
                        : role == "fail"    ? &c->fail
                        : role == "active"  ? &c->active
                        : role == "retry"   ? &c->retry
                        : role == "todo"    ? &c->todo
                        : role == "warn"    ? &c->warn
                        : role == "flaky"   ? &c->flaky
                        : role == "timeout" ? &c->timeout
                                            : nullptr;
    if (!slot) {
      *err = fmt::format("unknown colour role \"{}\" (pass, fail, active, retry, "
                         "todo, warn, flaky, timeout)",
                         role);
      return false;
    }
    if (eq == std::string_view::npos || value.empty()) {
      *err = fmt::format("colour role \"{}\" needs a value: {}=N (0-255) or {}=#rrggbb",
                         role, role, role);
      return false;
    }
    std::string sgr = ColourSgr(value);
    if (sgr.empty()) {
      *err = fmt::format("{}: \"{}\" is not a colour (0-255, or #rrggbb)", role, value);
      return false;
    }
    *slot = std::move(sgr);
  }
  return true;
}

std::string ColourSgr(std::string_view value) {
  auto hex = [](char ch) -> int {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
  };
  if (value.size() == 7 && value[0] == '#') {
    int rgb[3];
    for (int i = 0; i < 3; ++i) {
      int hi = hex(value[1 + 2 * i]), lo = hex(value[2 + 2 * i]);
      if (hi < 0 || lo < 0) return "";
      rgb[i] = hi * 16 + lo;
    }
    return fmt::format("38;2;{};{};{}", rgb[0], rgb[1], rgb[2]);
  }
  int n = -1;
  auto [q, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (ec != std::errc() || q != value.data() + value.size() || n < 0 || n > 255)
    return "";
  return fmt::format("38;5;{}", n);
}

Renderer::JobView& Renderer::View(int64_t job) { return jobs_[job]; }

void Renderer::Print(std::string_view text) {
  if (status_shown_) {
    out_ += "\r\x1b[K";
    status_shown_ = false;
  }
  out_ += text;
}

int64_t Renderer::StreamNow(int64_t now_us) const {
  if (last_ts_at_ == 0) return now_us;
  return last_ts_ + std::max<int64_t>(0, now_us - last_ts_at_);
}

void Renderer::Stamp(int64_t ts) {
  if (ts <= 0) return;
  last_ts_ = ts;
  last_ts_at_ = events::NowMicros();
}

void Renderer::StatusLine(int64_t now_us, bool force) {
  // (Between two runs of one stream, weft watch's, nothing is going on.)
  if (!o_.live || finished_ || (ended_ && saw_summary_)) return;
  if (!force && now_us - last_draw_us_ < kRedrawUs) return;
  last_draw_us_ = now_us;
  int64_t stream_now = StreamNow(now_us);
  // The counts, then the clock, then the running jobs (longest running
  // first) and the keys, as far as the terminal is wide: a status line
  // that wrapped could not be redrawn in place.
  std::string plain = fmt::format("[P:{}|F:{}|A:{}|R:{}|T:{}] {}", P_, F_, A_, R_, T_,
                                  run_start_us_ ? FormatDuration(stream_now - run_start_us_)
                                                : "");
  std::string line = fmt::format(
      "[{}|{}|{}|{}|{}] {}", Paint(fmt::format("P:{}", P_), o_.colours.pass),
      Paint(fmt::format("F:{}", F_), o_.colours.fail),
      Paint(fmt::format("A:{}", A_), o_.colours.active),
      Paint(fmt::format("R:{}", R_), o_.colours.retry),
      Paint(fmt::format("T:{}", T_), o_.colours.todo),
      run_start_us_ ? FormatDuration(stream_now - run_start_us_) : "");
  // One column spare: writing the last one makes some terminals wrap.
  size_t room = o_.width > 0 ? static_cast<size_t>(o_.width) - 1 : SIZE_MAX;
  size_t used = Columns(plain);
  if (used > room) {
    // Too narrow even for the counts: the counts, cut (no colour, so no
    // escape is cut in half).
    line = std::string(FirstColumns(plain, room));
    used = room;
  } else {
    std::vector<std::pair<int64_t, const JobView*>> running;
    for (const auto& [id, v] : jobs_)
      if (v.start_ts > 0) running.emplace_back(v.start_ts, &v);
    std::sort(running.begin(), running.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    bool all = true;
    for (size_t i = 0; i < running.size(); ++i) {
      std::string item = fmt::format("{}{} {}", i ? ", " : "  ", running[i].second->name,
                                     FormatDuration(stream_now - running[i].first));
      size_t more = running.size() - i - 1;
      // Leave room to say how many more there are.
      size_t tail = more ? fmt::formatted_size(", +{}", more) : 0;
      if (used + Columns(item) + tail > room) {
        std::string rest = fmt::format("{}+{}", i ? ", " : "  ", running.size() - i);
        if (used + rest.size() <= room) {
          line += rest;
          used += rest.size();
        }
        all = false;
        break;
      }
      line += item;
      used += Columns(item);
    }
    constexpr std::string_view kHint = "  (keys: v f q ?)";
    if (o_.keys && all && used + kHint.size() <= room) line += kHint;
  }
  out_ += "\r\x1b[K";
  out_ += line;
  status_shown_ = true;
}

void Renderer::Tick(int64_t now_us) { StatusLine(now_us, false); }

void Renderer::Attach(JobView& v, std::string line) {
  // Blank lines (Test::More starts its diagnostics with one) carry nothing.
  if (line.find_first_not_of(" ") == std::string::npos) return;
  if (v.attached < kAttachLines) {
    v.detail.push_back(std::move(line));
  } else if (v.attached == kAttachLines) {
    v.detail.push_back("      …");
  }
  ++v.attached;
}

void Renderer::Line(std::string_view line) {
  if (!fatal_.empty()) return;
  std::string_view type = events::TypeOf(line);
  if (type.empty()) {
    if (!line.empty()) ++not_events_;
    return;
  }
  events::Event e(line);

  if (type == "hello") {
    std::string err;
    if (!Load(e, &err) || !events::CheckHello(f_, &err)) {
      fatal_ = err.empty() ? "unreadable hello event" : err;
      exit_code_ = 2;
    }
  } else if (type == "run.end") {
    ended_ = true;
  } else if (type == "run.start") {
    ended_ = false;
    if (!Load(e)) return;
    run_start_us_ = f_.Int("ts").value_or(0);
    Stamp(run_start_us_);
    T_ = f_.Int("jobs").value_or(0);
    shuffle_seed_ = f_.Str("order").value_or("") == "shuffle"
                        ? f_.Int("seed").value_or(-1)
                        : -1;
    P_ = F_ = A_ = R_ = 0;
    // A stream of several runs (--repeat, a persistent runner): each is
    // shown on its own.
    jobs_.clear();
    failed_.clear();
    durations_.clear();
    flaky_.clear();
    retry_pending_.clear();
    if (auto rep = f_.Int("repetition"); rep && *rep > 0) {
      auto of = f_.Int("repetitions");
      Print(Paint(fmt::format("── run {}{} ──\n", *rep, of ? fmt::format(" of {}", *of) : ""),
                  "1"));
    }
    StatusLine(events::NowMicros(), true);
  } else if (type == "job.start") {
    if (!Load(e)) return;
    if (f_.Int("attempt").value_or(1) > 1) retry_pending_.erase(f_.Int("job").value_or(-1));
    JobView& v = View(f_.Int("job").value_or(-1));
    v.name = Visible(f_.Str("name").value_or("?"));
    v.start_ts = f_.Int("ts").value_or(0);
    Stamp(v.start_ts);
  } else if (type == "assert") {
    // Most assertions pass, and a passing one shows nothing without -v:
    // for the auditor's own canonical TAP events ("source":"tap", no
    // nested objects, no optional whitespace) that is known from the text
    // alone. Anything else is decoded.
    if (!o_.verbose && events::PassingTapAssert(line)) {
      if (auto job = events::JobIdOf(line)) {
        if (auto it = jobs_.find(*job); it != jobs_.end()) it->second.attach = false;
        return;
      }
    }
    if (!Load(e)) return;
    int64_t job = f_.Int("job").value_or(-1);
    bool ok = f_.Bool("ok").value_or(false);
    auto directive = f_.Str("directive").value_or("");
    bool failed = !ok && directive != "todo";
    if (!failed && !o_.verbose) {
      if (auto it = jobs_.find(job); it != jobs_.end()) it->second.attach = false;
      return;
    }
    JobView& v = View(job);
    int64_t number = f_.Int("number").value_or(0);
    std::string desc(f_.Str("description").value_or(""));
    std::string reason(f_.Str("reason").value_or(""));
    int64_t depth = f_.Int("depth").value_or(0);
    // Native asserts (from the event fd) carry no number.
    std::string text = fmt::format("{}{}{}{}{}", std::string(4 * depth, ' '),
                                   ok ? "ok" : "not ok",
                                   number > 0 ? fmt::format(" {}", number) : "",
                                   desc.empty() ? "" : " - " + Visible(desc),
                                   directive.empty()
                                       ? ""
                                       : fmt::format(" # {} {}", directive, Visible(reason)));
    if (o_.verbose)
      Print(fmt::format("{}: {}\n", v.name,
                        failed ? Paint(text, o_.colours.fail) : text));
    if (failed) {
      v.attach = true;
      v.attached = 0;
      if (v.failed_shown < kFailuresShown) {
        ++v.failed_shown;
        v.detail.push_back("  " + text);
      } else {
        ++v.failed_hidden;
        v.attach = false;
      }
    } else {
      v.attach = false;
    }
  } else if (type == "timeout") {
    if (!Load(e)) return;
    JobView& v = View(f_.Int("job").value_or(-1));
    std::string kind(f_.Str("kind").value_or("?"));
    std::vector<std::vector<std::string>> rows;
    f_.StrTable("last_lines", {"stream", "text"}, &rows);
    v.detail.push_back(fmt::format("  {} timeout; its last {} lines of output:",
                                   kind, rows.size()));
    for (const auto& row : rows)
      v.detail.push_back(fmt::format("    {}: {}", row[0], Visible(row[1])));
    if (o_.verbose) Print(fmt::format("{}: {} timeout\n", v.name, kind));
  } else if (type == "subtest") {
    if (!o_.verbose || !Load(e)) return;
    JobView& v = View(f_.Int("job").value_or(-1));
    int64_t depth = f_.Int("depth").value_or(0);
    Print(fmt::format("{}: {}# Subtest: {}\n", v.name,
                      std::string(4 * depth, ' '),
                      Visible(f_.Str("name").value_or(""))));
  } else if (type == "comment" || type == "output" || type == "parse_error" ||
             type == "bail" || type == "diag" || type == "note") {
    // Most output and comments follow no failure and are not shown: found
    // out from the text alone, and output kept raw for the tail (decoded
    // only if its job fails).
    if (!o_.verbose && (type == "output" || type == "comment")) {
      if (auto job = events::JobIdOf(line)) {
        if (auto it = jobs_.find(*job); it != jobs_.end() && !it->second.attach) {
          if (type == "output") Tail(it->second, line);
          return;
        }
      }
    }
    if (!Load(e)) return;
    JobView& v = View(f_.Int("job").value_or(-1));
    std::string text;
    bool is_stderr = false;
    if (type == "comment") {
      text = "# " + Visible(f_.Str("text").value_or(""));
    } else if (type == "diag" || type == "note") {
      // Native events: a diagnostic joins the failure before it; a note
      // is for people and shows with -v.
      text = std::string(type) + ": " + Visible(f_.Str("message").value_or(""));
      if (type == "note") {
        if (o_.verbose) Print(fmt::format("{}: {}\n", v.name, text));
        return;
      }
    } else if (type == "output") {
      is_stderr = f_.Str("stream").value_or("") == "stderr";
      text = Visible(f_.Str("text").value_or(""));
    } else if (type == "parse_error") {
      text = fmt::format("{} at line {}: {}",
                         f_.Str("source").value_or("") == "fd"
                             ? "bad event on the event fd"
                             : "TAP parse error",
                         f_.Int("line").value_or(0),
                         Visible(f_.Str("message").value_or("")));
      v.detail.push_back("  " + text);
      if (o_.verbose) Print(fmt::format("{}: {}\n", v.name, text));
      return;
    } else {
      auto reason = f_.Str("reason").value_or("");
      text = reason.empty() ? "Bail out!" : "Bail out!  " + Visible(reason);
      v.detail.push_back("  " + text);
      Print(fmt::format("{} {}: {}\n", Paint("BAIL", o_.colours.fail), v.name, text));
      return;
    }
    if (o_.verbose)
      Print(fmt::format("{}{}: {}\n", v.name, is_stderr ? " (stderr)" : "", text));
    if (v.attach) {
      Attach(v, "      " + text);
    } else if (type == "output") {
      Tail(v, line);
    }
  } else if (type == "job.end") {
    if (!Load(e)) return;
    int64_t job = f_.Int("job").value_or(-1);
    JobView& v = View(job);
    if (auto name = f_.Str("name")) v.name = Visible(*name);
    std::string verdict(f_.Str("verdict").value_or("fail"));
    int64_t duration = f_.Int("duration_us").value_or(0);
    if (!f_.Bool("retry").value_or(false)) durations_.emplace_back(duration, v.name);
    int64_t attempt = f_.Int("attempt").value_or(1);
    int64_t attempts = f_.Int("attempts").value_or(1);
    bool timed_out = f_.Bool("timed_out").value_or(false);
    if (verdict == "fail" && f_.Bool("retry").value_or(false)) {
      // Not final: it runs again. Shown with what failed, so a flaky
      // failure is never hidden by the pass that follows it.
      std::vector<std::string> reasons;
      f_.StrArray("reasons", &reasons);
      Print(fmt::format("{} {} ({}, attempt {} of {})\n", Paint("RETRY", o_.colours.warn),
                        v.name, FormatDuration(duration), attempt, attempts));
      for (const auto& r : reasons) Print("  " + Visible(r) + "\n");
      PrintFailure(v, false);
      retry_pending_[job] = {v.name, std::move(reasons), duration, timed_out};
    } else if (verdict == "fail") {
      std::vector<std::string> reasons;
      f_.StrArray("reasons", &reasons);
      // A job a timeout ended is told apart from one that failed by
      // itself: a hang is another kind of problem than a wrong answer.
      Print(fmt::format("{} {} ({}{})\n",
                        timed_out ? Paint("TIMEOUT", o_.colours.timeout)
                                  : Paint("FAIL", o_.colours.fail),
                        v.name,
                        FormatDuration(duration),
                        attempt > 1 ? fmt::format(", attempt {} of {}", attempt, attempts)
                                    : std::string()));
      for (const auto& r : reasons) Print("  " + Visible(r) + "\n");
      PrintFailure(v);
      failed_.push_back({v.name, std::move(reasons), timed_out});
    } else if (f_.Bool("flaky").value_or(false)) {
      Print(fmt::format("{} {} ({}): passed on attempt {} of {}\n",
                        Paint("FLAKY", o_.colours.flaky), v.name, FormatDuration(duration),
                        attempt, attempts));
      flaky_.push_back(v.name);
    } else if (f_.Bool("leaked").value_or(false)) {
      // --leaks=warn: it passed, but left processes running (now killed).
      Print(fmt::format("{} {} ({}): left processes running; they were killed\n",
                        Paint("WARN", o_.colours.warn), v.name, FormatDuration(duration)));
    } else if (o_.verbose) {
      Print(fmt::format("{} {} ({})\n",
                        verdict == "skip" ? Paint("SKIP", o_.colours.warn)
                                          : Paint("PASS", o_.colours.pass),
                        v.name, FormatDuration(duration)));
    }
    jobs_.erase(job);
  } else if (type == "run.bail") {
    if (!Load(e)) return;
    Print(fmt::format("{} {}; stopping the run\n", Paint("BAIL", o_.colours.fail),
                      Visible(f_.Str("reason").value_or("the run bailed out"))));
  } else if (type == "counts") {
    if (!Load(e)) return;
    Stamp(f_.Int("ts").value_or(0));
    P_ = f_.Int("P").value_or(P_);
    F_ = f_.Int("F").value_or(F_);
    A_ = f_.Int("A").value_or(A_);
    R_ = f_.Int("R").value_or(R_);
    T_ = f_.Int("T").value_or(T_);
    StatusLine(events::NowMicros(), false);
  } else if (type == "error") {
    if (!Load(e)) return;
    Print(fmt::format("{} {}: {}\n", Paint("HARNESS ERROR", o_.colours.fail),
                      f_.Str("source").value_or("weft"),
                      Visible(f_.Str("message").value_or(""))));
  } else if (type == "service.ready") {
    if (!o_.verbose || !Load(e)) return;
    Print(fmt::format("{} {} ready: {} ({})\n", Paint("SERVICE", o_.colours.active),
                      Visible(f_.Str("name").value_or("?")), Visible(f_.Str("how").value_or("")),
                      FormatDuration(f_.Int("after_us").value_or(0))));
  } else if (type == "service.end") {
    // A service that failed, or its output when the run failed.
    if (!Load(e)) return;
    std::vector<std::string> output;
    bool has_output = f_.StrArray("output", &output);
    auto error = f_.Str("error");
    if (!error && !has_output) return;
    std::string name = Visible(f_.Str("name").value_or("?"));
    std::string s;
    if (error)
      s = fmt::format("{} {}: {}\n", Paint("SERVICE", o_.colours.fail), name, Visible(*error));
    constexpr size_t kShown = 20;
    if (!output.empty()) {
      s += fmt::format("  output of service {}{}:\n", name,
                       output.size() > kShown ? fmt::format(" (last {} of {} lines kept in the log)",
                                                            kShown, output.size())
                                              : "");
      for (size_t i = output.size() > kShown ? output.size() - kShown : 0; i < output.size(); ++i)
        s += "    " + Visible(output[i]) + "\n";
    }
    if (!s.empty()) Print(s);
  } else if (type == "stage.ready" || type == "stage.end") {
    // A stage that failed is news; the rest only with -v.
    if (!Load(e)) return;
    std::string name = Visible(f_.Str("name").value_or("?"));
    if (auto error = f_.Str("error")) {
      Print(fmt::format("{} {}: {}; its tests run without it\n", Paint("STAGE", o_.colours.warn),
                        name, Visible(*error)));
    } else if (!o_.verbose) {
      return;
    } else if (type == "stage.ready") {
      Print(fmt::format("{} {} ready: {} files loaded in {}ms\n", Paint("STAGE", o_.colours.active),
                        name, f_.Int("files").value_or(0), f_.Int("load_ms").value_or(0)));
    } else {
      Print(fmt::format("{} {} stopped: {}\n", Paint("STAGE", o_.colours.active), name,
                        Visible(f_.Str("reason").value_or(""))));
    }
  } else if (type == "reload") {
    // A reload (weft watch: the files whose change made this run).
    if (!Load(e)) return;
    std::vector<std::string> files;
    f_.StrArray("files", &files);
    std::string list;
    for (size_t i = 0; i < files.size() && i < 5; ++i)
      list += (i ? ", " : "") + Visible(files[i]);
    if (files.size() > 5) list += fmt::format(" and {} more", files.size() - 5);
    Print(Paint(list.empty() ? std::string("── reload ──\n")
                             : fmt::format("── changed: {} ──\n", list),
                "1"));
  } else if (type == "repeat.end") {
    // Shown after the last run's summary, which follows it.
    if (!Load(e)) return;
    int64_t runs = f_.Int("runs").value_or(0);
    int64_t failed_runs = f_.Int("failed_runs").value_or(0);
    std::vector<std::vector<std::string>> rows;
    f_.StrTable("failing", {"name", "runs", "failed", "flaky"}, &rows);
    std::string s = "\n";
    if (!rows.empty()) s += "Failure rates over the runs:\n";
    for (const auto& row : rows) {
      int64_t n = std::strtoll(row[1].c_str(), nullptr, 10);
      int64_t fails = std::strtoll(row[2].c_str(), nullptr, 10);
      int64_t flaky = std::strtoll(row[3].c_str(), nullptr, 10);
      std::string rate =
          n > 0 ? fmt::format("{:5.1f}%", 100.0 * static_cast<double>(fails) / static_cast<double>(n))
                : std::string("    ?");
      s += fmt::format("  {}  {} of {} failed{}  {}\n", Paint(rate, o_.colours.fail), fails, n,
                       flaky ? fmt::format(", {} flaky", flaky) : "", Visible(row[0]));
    }
    std::string result = failed_runs ? Paint("FAIL", o_.colours.fail)
                         : f_.Bool("interrupted").value_or(false)
                             ? Paint("INTERRUPTED", o_.colours.warn)
                             : Paint("PASS", o_.colours.pass);
    s += fmt::format("Repeated: {} run{}, {} failed{}; {} test{} failed (or flaky) at least once.  Result: {}\n", runs,
                     runs == 1 ? "" : "s", failed_runs,
                     f_.Bool("interrupted").value_or(false) ? " (interrupted)" : "",
                     rows.size(), rows.size() == 1 ? "" : "s", result);
    repeat_text_ = std::move(s);
  } else if (type == "summary") {
    if (!Load(e)) return;
    int code = static_cast<int>(f_.Int("exit").value_or(3));
    exit_code_ = saw_summary_ || summaries_ ? WorstExit(exit_code_, code) : code;
    saw_summary_ = true;
    ++summaries_;
    std::string verdict(f_.Str("verdict").value_or("?"));
    int64_t jp = f_.Int("jobs", "passed").value_or(0);
    int64_t jf = f_.Int("jobs", "failed").value_or(0);
    int64_t js = f_.Int("jobs", "skipped").value_or(0);
    int64_t jc = f_.Int("jobs", "cancelled").value_or(0);
    int64_t ju = f_.Int("jobs", "unfinished").value_or(0);
    int64_t at = f_.Int("assertions", "total").value_or(0);
    int64_t ap = f_.Int("assertions", "passed").value_or(0);
    int64_t af = f_.Int("assertions", "failed").value_or(0);
    int64_t as = f_.Int("assertions", "skipped").value_or(0);
    int64_t ad = f_.Int("assertions", "todo").value_or(0);
    int64_t wall = f_.Int("wall_us").value_or(0);

    // A retry the run ended before: that failure stands.
    for (auto& [job, p] : retry_pending_) {
      failed_.push_back({p.name, std::move(p.reasons), p.timed_out});
      durations_.emplace_back(p.duration_us, p.name);
    }
    retry_pending_.clear();
    std::string s = "\n";
    if (!flaky_.empty()) {
      s += fmt::format("Flaky tests (failed, then passed on a retry{}):\n",
                       f_.Bool("flaky_fails").value_or(false)
                           ? "; --flaky-fails counts them as failed"
                           : "");
      for (const auto& name : flaky_) s += fmt::format("  {}\n", Paint(name, o_.colours.flaky));
    }
    if (!failed_.empty()) {
      s += "Failed tests:\n";
      s += FailedList();
    }
    int64_t jk = f_.Int("jobs", "flaky").value_or(0);
    // A flaky test is among the passed, or with --flaky-fails the failed.
    bool flaky_failed = f_.Bool("flaky_fails").value_or(false);
    int64_t jt = f_.Int("jobs", "timed_out").value_or(0);
    std::vector<std::string> passed_notes, failed_notes;
    if (jk) (flaky_failed ? failed_notes : passed_notes).push_back(fmt::format("{} flaky", jk));
    if (jt) failed_notes.push_back(fmt::format("{} timed out", jt));
    auto notes = [](const std::vector<std::string>& n) {
      return n.empty() ? std::string() : fmt::format(" ({})", fmt::join(n, ", "));
    };
    std::string files = fmt::format("Files: {} passed{}, {} failed{}", jp,
                                    notes(passed_notes), jf, notes(failed_notes));
    if (js) files += fmt::format(", {} skipped", js);
    if (jc) files += fmt::format(", {} cancelled", jc);
    if (ju) files += fmt::format(", {} unfinished", ju);
    s += files + fmt::format(" ({} in all).\n", jp + jf + js + jc + ju);
    // The summary counts a skipped assertion as passed (it is "ok" in TAP);
    // shown side by side, the parts add up to the whole.
    s += fmt::format(
        "Assertions: {} passed, {} failed, {} skipped, {} todo ({} in all).\n",
        ap - as, af, as, ad, at);
    std::sort(durations_.begin(), durations_.end(),
              [](const auto& a, const auto& b) { return a.first > b.first; });
    if (!durations_.empty()) {
      std::string slow;
      for (size_t i = 0; i < std::min(kSlowest, durations_.size()); ++i)
        slow += fmt::format("{}{} {}", i ? ", " : "", durations_[i].second,
                            FormatDuration(durations_[i].first));
      s += "Slowest: " + slow + ".\n";
    }
    std::string result;
    if (verdict == "pass")
      result = Paint("PASS", o_.colours.pass);
    else if (verdict == "no tests")
      result = Paint("NO TESTS", o_.colours.warn) + " (nothing ran)";
    else if (verdict == "interrupted")
      result = Paint("INTERRUPTED", o_.colours.warn);
    else if (verdict == "harness error")
      result = Paint("HARNESS ERROR", o_.colours.fail) + " (weft itself failed; see above)";
    else
      result = Paint("FAIL", o_.colours.fail);
    if (shuffle_seed_ >= 0)
      s += fmt::format("Shuffled: --seed {} runs them in this order again.\n",
                       shuffle_seed_);
    s += fmt::format("Wall time {}.  Result: {}\n", FormatDuration(wall), result);
    Print(s);
    if (!repeat_text_.empty()) {
      Print(repeat_text_);
      repeat_text_.clear();
    }
  }
}

// Keeps an output event's line (with the padding Fields needs) among the
// job's last lines.
void Renderer::Tail(JobView& v, std::string_view line) {
  std::string raw;
  if (v.tail.size() >= kTailLines) {
    raw = std::move(v.tail.front());  // its memory, reused
    v.tail.pop_front();
  }
  raw.assign(line);
  raw.append(events::kPadding, '\0');
  v.tail.push_back(std::move(raw));
}

void Renderer::PrintFailure(const JobView& v, bool rerun) {
  std::string s;
  for (const auto& d : v.detail) s += d + "\n";
  if (v.failed_hidden)
    s += fmt::format("  … and {} more failed assertions\n", v.failed_hidden);
  if (!v.tail.empty()) {
    s += fmt::format("  last {} lines of other output:\n", v.tail.size());
    for (const auto& raw : v.tail) {
      if (!tail_f_.Load(events::Event(std::string_view(raw.data(), raw.size() - events::kPadding))))
        continue;
      s += fmt::format("    {}: {}\n",
                       tail_f_.Str("stream").value_or("") == "stderr" ? "stderr" : "stdout",
                       Visible(tail_f_.Str("text").value_or("")));
    }
  }
  if (rerun) s += fmt::format("  rerun: weft test {}\n", v.name);
  Print(s);
}

// The failed jobs, one line each with their reasons (the summary's list,
// and f's).
std::string Renderer::FailedList() const {
  std::string s;
  for (const auto& f : failed_) {
    std::string why;
    for (const auto& r : f.reasons) why += (why.empty() ? "" : "; ") + Visible(r);
    s += fmt::format("  {}  {}\n",
                     Paint(f.name, f.timed_out ? o_.colours.timeout : o_.colours.fail), why);
  }
  return s;
}

KeyAction Renderer::Key(char c, int64_t now_us) {
  KeyAction action = KeyAction::kNone;
  switch (c) {
    case 'v':
      o_.verbose = !o_.verbose;
      Print(o_.verbose ? "Verbose: every job, assertion and line of output from now on "
                         "(v again for less).\n"
                       : "Verbose off: failures only (v again for more).\n");
      break;
    case 'f': {
      // The failures so far, as the summary will list them; a failed
      // attempt that will be retried is not a failure yet.
      std::string s;
      if (failed_.empty()) {
        s = "No failures so far.\n";
      } else {
        s = fmt::format("Failures so far ({}):\n", failed_.size());
        s += FailedList();
      }
      if (!retry_pending_.empty())
        s += fmt::format("  (and {} failed attempt(s) waiting for a retry)\n",
                         retry_pending_.size());
      Print(s);
      break;
    }
    case 'q':
      if (ended_ && o_.control) {
        // Between runs (weft watch): q ends it all.
        Print("Stopping (q).\n");
        action = KeyAction::kStopRun;
        break;
      }
      if (ended_) break;
      if (o_.control) {
        ++stops_asked_;
        Print(stops_asked_ == 1
                  ? "Stopping the run (q): no more tests start; running ones get "
                    "SIGTERM. q again kills them at once.\n"
                  : "Killing the running tests (q again).\n");
        action = KeyAction::kStopRun;
      } else if (o_.follow) {
        Print("Not following any more (q).\n");
        action = KeyAction::kStopFollowing;
      } else {
        Print("q: this view has no control channel to the runner (weft-render-term "
              "--control); Ctrl-C stops the run.\n");
      }
      break;
    case '?':
    case 'h':
      Print(fmt::format("Keys: v verbose on/off, f failures so far{}, ? these keys.\n",
                        o_.control  ? ", q stop the run (twice: kill its tests)"
                        : o_.follow ? ", q stop following"
                                    : ""));
      break;
    default:
      return action;
  }
  StatusLine(now_us, true);
  return action;
}

void Renderer::Finish() {
  if (status_shown_) {
    out_ += "\r\x1b[K";
    status_shown_ = false;
  }
  finished_ = true;
  if (!fatal_.empty()) return;
  if (not_events_ > 0)
    Print(fmt::format("{} line(s) of the stream were not weft events and were "
                      "skipped.\n",
                      not_events_));
  if (!repeat_text_.empty()) Print(repeat_text_);
  if (!saw_summary_) {
    Print(Paint("The stream ended without a summary: a process of the chain "
                "failed (is weft-overlord in it?).\n",
                o_.colours.fail));
    exit_code_ = 3;
  }
}

}  // namespace weft::term
