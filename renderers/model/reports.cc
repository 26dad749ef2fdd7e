#include "reports.h"

#include <fmt/format.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <time.h>
#include <weft/events/writer.h>

namespace weft::render {

namespace {

using events::JsonWriter;
using events::Key;
constexpr auto Str = events::String;

void Strings(JsonWriter& w, const std::vector<std::string>& v) {
  w.StartArray();
  for (const auto& s : v) Str(w, s);
  w.EndArray();
}

// The reasons that are not just "N of M assertions failed": what the
// failing assertions alone do not say.
std::vector<std::string> OtherReasons(const Job& job) {
  std::vector<std::string> other;
  for (const auto& r : job.reasons)
    if (r.find(" assertion") == std::string::npos || r.find(" failed") == std::string::npos)
      other.push_back(r);
  return other;
}

std::string Joined(const std::vector<std::string>& v, std::string_view sep) {
  std::string out;
  for (const auto& s : v) {
    if (!out.empty()) out += sep;
    out += s;
  }
  return out;
}

std::string Iso8601(int64_t us) {
  time_t t = static_cast<time_t>(us / 1000000);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return buf;
}

// A TAP description: "#" and "\" escaped, one line.
std::string TapText(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '#' || c == '\\') out.push_back('\\');
    out.push_back(c == '\n' || c == '\r' ? ' ' : c);
  }
  return out;
}

// A YAML scalar: JSON's double-quoted string is one.
std::string YamlQuote(std::string_view s) {
  rapidjson::StringBuffer buf;
  JsonWriter w(buf);
  Str(w, s);
  return buf.GetString();
}

// GitHub workflow command data and property escapes.
std::string GhData(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '%') out += "%25";
    else if (c == '\r') out += "%0D";
    else if (c == '\n') out += "%0A";
    else out.push_back(c);
  }
  return out;
}
std::string GhProperty(std::string_view s) {
  std::string out;
  for (char c : GhData(s)) {
    if (c == ':') out += "%3A";
    else if (c == ',') out += "%2C";
    else out.push_back(c);
  }
  return out;
}

// "not ok 3 - description", or "not ok - description" for a native
// assertion without a number.
std::string TestPoint(const Assertion& a) {
  std::string s = a.ok ? "ok" : "not ok";
  if (a.number > 0) s += fmt::format(" {}", a.number);
  if (!a.description.empty()) s += " - " + a.description;
  return s;
}

}  // namespace

std::string XmlEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        // XML 1.0 cannot hold other control characters at all.
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
          out += "\xEF\xBF\xBD";  // U+FFFD
        else
          out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

void ReportOut::Write(std::string_view text) {
  if (!error_ && !text.empty() && !events::WriteAll(fd_, text)) error_ = errno ? errno : EIO;
}

bool ReportOut::Flush() {
  Write(buf_);
  buf_.clear();
  return !error_;
}

void JsonReport(const Model& m, ReportOut& out) {
  rapidjson::StringBuffer buf;
  JsonWriter w(buf);
  // What is written so far goes out (the writer keeps its own state).
  auto pass_on = [&] {
    out.Append(std::string_view(buf.GetString(), buf.GetSize()));
    buf.Clear();
  };
  w.StartObject();
  if (m.runs().empty()) {
    Key(w, "run");
    w.Null();
    Key(w, "jobs");
    w.StartArray();
    w.EndArray();
    w.EndObject();
    buf.Put('\n');
    pass_on();
    return;
  }
  const Run& run = m.runs().back();
  Key(w, "run");
  Str(w, run.id);
  Key(w, "verdict");
  Str(w, run.summarised ? run.verdict : (run.ended ? "unknown" : "incomplete"));
  Key(w, "exit");
  if (run.summarised) w.Int64(run.exit); else w.Null();
  Key(w, "wall_us");
  w.Int64(run.wall_us ? run.wall_us : (run.end_ts > run.start_ts ? run.end_ts - run.start_ts : 0));
  Key(w, "host");
  Str(w, run.host);
  Key(w, "cwd");
  Str(w, run.cwd);
  Key(w, "complete");
  w.Bool(run.ended);
  Key(w, "interrupted");
  w.Bool(run.interrupted);
  if (!run.bailed.empty()) {
    Key(w, "bailed");
    Str(w, run.bailed);
  }
  int64_t passed = 0, failed = 0, skipped = 0, flaky = 0, cancelled = 0;
  for (const auto& [id, job] : run.jobs) {
    if (job.cancelled && !job.ended) ++cancelled;
    else if (job.verdict == "pass") ++passed;
    else if (job.verdict == "skip") ++skipped;
    else if (job.ended) ++failed;
    if (job.flaky) ++flaky;
  }
  Key(w, "counts");
  w.StartObject();
  Key(w, "jobs");
  w.Int64(static_cast<int64_t>(run.jobs.size()));
  Key(w, "passed");
  w.Int64(passed);
  Key(w, "failed");
  w.Int64(failed);
  Key(w, "skipped");
  w.Int64(skipped);
  Key(w, "flaky");
  w.Int64(flaky);
  Key(w, "cancelled");
  w.Int64(cancelled);
  w.EndObject();
  Key(w, "jobs");
  w.StartArray();
  for (const auto& [id, job] : run.jobs) {
    w.StartObject();
    Key(w, "job");
    w.Int64(id);
    Key(w, "name");
    Str(w, job.name);
    Key(w, "verdict");
    Str(w, job.cancelled && !job.ended ? "cancelled" : job.ended ? job.verdict : "unfinished");
    Key(w, "reasons");
    Strings(w, job.cancelled && !job.ended ? std::vector<std::string>{job.cancel_reason}
                                           : job.reasons);
    Key(w, "duration_us");
    w.Int64(job.duration_us);
    Key(w, "exit_code");
    if (job.exit_code) w.Int64(*job.exit_code); else w.Null();
    Key(w, "signal");
    if (job.signal.empty()) w.Null(); else Str(w, job.signal);
    Key(w, "attempt");
    w.Int64(job.attempt);
    Key(w, "flaky");
    w.Bool(job.flaky);
    if (!job.failed_attempts.empty()) {
      Key(w, "failed_attempts");
      w.StartArray();
      for (const auto& [n, reasons] : job.failed_attempts) {
        w.StartObject();
        Key(w, "attempt");
        w.Int64(n);
        Key(w, "reasons");
        Strings(w, reasons);
        w.EndObject();
      }
      w.EndArray();
    }
    Key(w, "counts");
    w.StartObject();
    Key(w, "planned");
    if (job.planned) w.Int64(*job.planned); else w.Null();
    Key(w, "run");
    w.Int64(job.run);
    Key(w, "passed");
    w.Int64(job.passed);
    Key(w, "failed");
    w.Int64(job.failed);
    Key(w, "skipped");
    w.Int64(job.skipped);
    Key(w, "todo");
    w.Int64(job.todo);
    w.EndObject();
    Key(w, "failures");
    w.StartArray();
    for (const auto& a : job.asserts) {
      if (a.ok || a.directive() == "todo") continue;
      w.StartObject();
      Key(w, "number");
      w.Int64(a.number);
      Key(w, "description");
      Str(w, a.description);
      Key(w, "depth");
      w.Int64(a.depth);
      if (!a.file().empty()) {
        Key(w, "file");
        Str(w, a.file());
        Key(w, "line");
        w.Int64(a.line());
      }
      Key(w, "diag");
      Strings(w, a.diag());
      w.EndObject();
    }
    w.EndArray();
    w.EndObject();
    if (buf.GetSize() >= ReportOut::kChunk) pass_on();
  }
  w.EndArray();
  w.EndObject();
  buf.Put('\n');
  pass_on();
}

std::string TapReport(const Model& m, int version) {
  std::string out = fmt::format("TAP version {}\n", version);
  int64_t n = 0;
  for (const Run& run : m.runs()) {
    out += fmt::format("# weft run {}{}\n", run.id, run.host.empty() ? "" : " on " + run.host);
    for (const auto& [id, job] : run.jobs) {
      ++n;
      std::string name = TapText(job.name);
      if (job.cancelled && !job.ended) {
        out += fmt::format("ok {} - {} # SKIP cancelled: {}\n", n, name,
                           TapText(job.cancel_reason));
        continue;
      }
      if (!job.ended) {
        out += fmt::format("not ok {} - {}\n  ---\n  message: \"the job never finished\"\n  ...\n",
                           n, name);
        continue;
      }
      if (job.verdict == "skip") {
        out += fmt::format("# Subtest: {}\n    1..0 # SKIP {}\nok {} - {} # SKIP {}\n", name,
                           TapText(job.skip_reason), n, name, TapText(job.skip_reason));
        continue;
      }
      std::string body;
      int64_t k = 0;
      for (const auto& a : job.asserts) {
        if (a.depth != 0) continue;
        ++k;
        body += fmt::format("    {} {}{}", a.ok ? "ok" : "not ok", k,
                            a.description.empty() ? "" : " - " + TapText(a.description));
        if (!a.directive().empty())
          body += fmt::format(" # {} {}", a.directive() == "todo" ? "TODO" : "SKIP",
                              TapText(a.reason()));
        body += "\n";
        if (!a.ok && a.directive() != "todo" && !a.diag().empty()) {
          body += "      ---\n      diag:\n";
          for (const auto& d : a.diag()) body += "        - " + YamlQuote(d) + "\n";
          body += "      ...\n";
        }
      }
      bool pass = job.verdict == "pass";
      // A job that failed for what no assertion says (a crash, an exit
      // status, a plan not met…): that failure, as the subtest's last
      // assertion, so the subtest agrees with the job's test point.
      bool any_failed = false;
      for (const auto& a : job.asserts)
        if (a.depth == 0 && !a.ok && a.directive() != "todo") any_failed = true;
      if (!pass && !any_failed && k > 0) {
        ++k;
        body += fmt::format("    not ok {} - {}\n", k, TapText(Joined(job.reasons, "; ")));
      }
      if (k > 0) out += fmt::format("# Subtest: {}\n{}    1..{}\n", name, body, k);
      out += fmt::format("{} {} - {}\n", pass ? "ok" : "not ok", n, name);
      std::vector<std::string> yaml;
      if (!pass && !job.reasons.empty()) {
        yaml.push_back("  reasons:");
        for (const auto& r : job.reasons) yaml.push_back("    - " + YamlQuote(r));
      }
      if (!job.failed_attempts.empty()) {
        yaml.push_back(fmt::format("  attempt: {}", job.attempt));
        yaml.push_back("  failed_attempts:");
        for (const auto& [a, reasons] : job.failed_attempts)
          yaml.push_back(fmt::format("    - {{attempt: {}, reasons: [{}]}}", a,
                                     [&] {
                                       std::string s;
                                       for (const auto& r : reasons)
                                         s += (s.empty() ? "" : ", ") + YamlQuote(r);
                                       return s;
                                     }()));
      }
      yaml.push_back(fmt::format("  duration_ms: {}", job.duration_us / 1000));
      out += "  ---\n" + Joined(yaml, "\n") + "\n  ...\n";
      if (job.flaky)
        out += fmt::format("# flaky: {} failed, then passed on attempt {}\n", name, job.attempt);
    }
  }
  out += fmt::format("1..{}\n", n);
  return out;
}

void JunitReport(const Model& m, bool per_assertion, ReportOut& report) {
  struct Suite {
    std::string body;
    int64_t tests = 0, failures = 0, errors = 0, skipped = 0;
  };
  int64_t all_tests = 0, all_failures = 0, all_errors = 0, all_skipped = 0;
  int64_t all_time = 0;
  // The totals head the report: every suite is counted first ("write"
  // false: no text made), then made and written out one by one, so that
  // a run of 600,000 assertions is never one string in memory. Both
  // passes take the same branches.
  bool write = false;
  auto testcase = [](std::string_view name, std::string_view classname, int64_t us,
                     std::string_view inner) {
    std::string s = fmt::format("    <testcase name=\"{}\" classname=\"{}\" time=\"{}\"",
                                XmlEscape(name), XmlEscape(classname), FormatSeconds(us));
    if (inner.empty()) return s + "/>\n";
    return s + ">\n" + std::string(inner) + "    </testcase>\n";
  };
  auto failure = [](std::string_view tag, std::string_view message, std::string_view type,
                    std::string_view text) {
    return fmt::format("      <{} message=\"{}\" type=\"{}\">{}</{}>\n", tag,
                       XmlEscape(message), type, XmlEscape(text), tag);
  };
  auto output_of = [](const Job& job, bool err) {
    std::string s;
    for (const auto& line : job.output)
      if (line.is_stderr == err) s += line.text + "\n";
    if (!err && job.output_dropped)
      s += fmt::format("[{} more lines of output are in the log]\n", job.output_dropped);
    return s;
  };
  auto job_failure_text = [](const Job& job) {
    std::string text = Joined(job.reasons, "\n");
    for (const auto& a : job.asserts)
      if (!a.ok && a.directive() != "todo" && a.depth == 0) {
        text += "\n" + TestPoint(a);
        for (const auto& d : a.diag()) text += "\n    " + d;
      }
    return text;
  };
  // Earlier failed attempts: flaky (the last passed) or rerun failures.
  auto reruns = [&](const Job& job) {
    std::string s;
    for (const auto& [a, reasons] : job.failed_attempts)
      s += failure(job.verdict == "fail" ? "rerunFailure" : "flakyFailure",
                   fmt::format("attempt {}: {}", a, Joined(reasons, "; ")), "weft.attempt",
                   Joined(reasons, "\n"));
    return s;
  };

  auto suites = [&] {
  for (const Run& run : m.runs()) {
    if (!per_assertion) {
      Suite suite;
      int64_t time = 0;
      for (const auto& [id, job] : run.jobs) {
        ++suite.tests;
        std::string inner;
        if (job.cancelled && !job.ended) {
          ++suite.skipped;
          if (write)
            inner = fmt::format("      <skipped message=\"cancelled: {}\"/>\n",
                                XmlEscape(job.cancel_reason));
        } else if (!job.ended) {
          ++suite.errors;
          if (write) inner = failure("error", "the job never finished", "weft.job", "");
        } else if (job.verdict == "skip") {
          ++suite.skipped;
          if (write)
            inner = fmt::format("      <skipped message=\"{}\"/>\n", XmlEscape(job.skip_reason));
        } else if (job.verdict == "fail") {
          ++suite.failures;
          if (write)
            inner = failure("failure", Joined(job.reasons, "; "), "weft.job", job_failure_text(job));
        }
        time += job.duration_us;
        if (!write) continue;
        inner += reruns(job);
        std::string out = output_of(job, false), err = output_of(job, true);
        if (!out.empty()) inner += "      <system-out>" + XmlEscape(out) + "</system-out>\n";
        if (!err.empty()) inner += "      <system-err>" + XmlEscape(err) + "</system-err>\n";
        suite.body += testcase(job.name, "weft", job.duration_us, inner);
      }
      int64_t wall = run.wall_us ? run.wall_us : time;
      if (!write) {
        all_tests += suite.tests, all_failures += suite.failures, all_errors += suite.errors,
            all_skipped += suite.skipped, all_time += wall;
        continue;
      }
      report.Append(fmt::format(
          "  <testsuite name=\"weft run {}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" "
          "skipped=\"{}\" time=\"{}\" timestamp=\"{}\" hostname=\"{}\">\n{}  </testsuite>\n",
          XmlEscape(run.id), suite.tests, suite.failures, suite.errors, suite.skipped,
          FormatSeconds(wall), Iso8601(run.start_ts), XmlEscape(run.host), suite.body));
      continue;
    }
    for (const auto& [id, job] : run.jobs) {
      Suite suite;
      if (job.cancelled && !job.ended) {
        suite.tests = suite.skipped = 1;
        if (write)
          suite.body = testcase(job.name, job.name, 0,
                                fmt::format("      <skipped message=\"cancelled: {}\"/>\n",
                                            XmlEscape(job.cancel_reason)));
      } else {
        for (const auto& a : job.asserts) {
          if (a.depth != 0) continue;
          ++suite.tests;
          if (!write) {
            if (a.directive() == "skip")
              ++suite.skipped;
            else if (!a.ok && a.directive() != "todo")
              ++suite.failures;
            continue;
          }
          std::string name =
              a.number > 0 ? fmt::format("{}{}", a.number,
                                         a.description.empty() ? "" : " - " + a.description)
                           : (a.description.empty() ? "(no description)" : a.description);
          std::string inner;
          if (a.directive() == "skip") {
            ++suite.skipped;
            inner = fmt::format("      <skipped message=\"{}\"/>\n", XmlEscape(a.reason()));
          } else if (!a.ok && a.directive() != "todo") {
            ++suite.failures;
            std::string text = Joined(a.diag(), "\n");
            if (!a.file().empty()) text = fmt::format("at {} line {}\n{}", a.file(), a.line(), text);
            inner = failure("failure", a.description.empty() ? "not ok" : a.description,
                            "weft.assertion", text);
          }
          suite.body += testcase(name, job.name, a.elapsed_us, inner);
        }
        // The job itself, when the assertions do not tell its story: none
        // ran, it failed for other reasons (exit status, plan, timeout…),
        // it was skipped whole, or it needed more than one attempt.
        std::vector<std::string> other = OtherReasons(job);
        // (A retried job that failed in the end says so here too, beside
        // its earlier attempts.)
        bool fail = job.verdict == "fail" &&
                    (!other.empty() || job.failed == 0 || !job.failed_attempts.empty());
        if (!job.ended || fail || suite.tests == 0 || !job.failed_attempts.empty() ||
            job.verdict == "skip") {
          ++suite.tests;
          std::string inner;
          if (!job.ended) {
            ++suite.errors;
            if (write) inner = failure("error", "the job never finished", "weft.job", "");
          } else if (job.verdict == "skip") {
            ++suite.skipped;
            if (write)
              inner =
                  fmt::format("      <skipped message=\"{}\"/>\n", XmlEscape(job.skip_reason));
          } else if (fail) {
            ++suite.failures;
            auto shown = other.empty() ? job.reasons : other;
            if (write)
              inner = failure("failure", Joined(shown, "; "), "weft.job", Joined(shown, "\n"));
          }
          if (write) {
            inner += reruns(job);
            suite.body += testcase(fmt::format("{} (the test file)", job.name), job.name,
                                   job.duration_us, inner);
          }
        }
      }
      if (!write) {
        all_tests += suite.tests, all_failures += suite.failures, all_errors += suite.errors,
            all_skipped += suite.skipped, all_time += job.duration_us;
        continue;
      }
      std::string out = output_of(job, false), err = output_of(job, true);
      std::string tail;
      if (!out.empty()) tail += "    <system-out>" + XmlEscape(out) + "</system-out>\n";
      if (!err.empty()) tail += "    <system-err>" + XmlEscape(err) + "</system-err>\n";
      report.Append(fmt::format(
          "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" "
          "time=\"{}\" timestamp=\"{}\" hostname=\"{}\">\n"
          "    <properties>\n"
          "      <property name=\"weft.run\" value=\"{}\"/>\n"
          "      <property name=\"weft.job\" value=\"{}\"/>\n"
          "    </properties>\n{}{}  </testsuite>\n",
          XmlEscape(job.name), suite.tests, suite.failures, suite.errors, suite.skipped,
          FormatSeconds(job.duration_us), Iso8601(job.start_ts ? job.start_ts : run.start_ts),
          XmlEscape(run.host), XmlEscape(run.id), job.id, suite.body, tail));
    }
  }
  };
  suites();  // counted
  int64_t wall = 0;
  for (const Run& run : m.runs()) wall += run.wall_us;
  report.Append(fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<testsuites name=\"weft\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" "
      "time=\"{}\">\n",
      all_tests, all_failures, all_errors, all_skipped, FormatSeconds(wall ? wall : all_time)));
  write = true;
  suites();  // written
  report.Append("</testsuites>\n");
}

std::string GithubReport(const Model& m) {
  std::string out;
  for (const Run& run : m.runs()) {
    for (const auto& [id, job] : run.jobs) {
      if (!job.ended) {
        if (job.started)
          out += fmt::format("::error title={}::{}\n", GhProperty(job.name + " did not finish"),
                             GhData("the log ends before this test did"));
        continue;
      }
      if (job.flaky)
        out += fmt::format("::warning title={}::{}\n", GhProperty(job.name + " is flaky"),
                           GhData(fmt::format("failed, then passed on attempt {}", job.attempt)));
      if (job.verdict != "fail") continue;
      // Each failing assertion that says where it is, at its line; the
      // rest, with the job's other reasons, on the job.
      std::vector<std::string> unlocated;
      for (const auto& a : job.asserts) {
        if (a.ok || a.directive() == "todo") continue;
        std::string message = TestPoint(a);
        for (const auto& d : a.diag()) message += "\n" + d;
        if (a.file().empty()) {
          if (a.depth == 0) unlocated.push_back(TestPoint(a));
          continue;
        }
        out += fmt::format("::error file={},line={},title={}::{}\n", GhProperty(a.file()), a.line(),
                           GhProperty(job.name), GhData(message));
      }
      std::vector<std::string> other = OtherReasons(job);
      bool located_all = unlocated.empty() && job.failed > 0;
      if (!located_all || !other.empty()) {
        std::vector<std::string> lines = located_all ? other : job.reasons;
        for (const auto& u : unlocated) lines.push_back(u);
        out += fmt::format("::error title={}::{}\n", GhProperty(job.name + " failed"),
                           GhData(Joined(lines, "\n")));
      }
    }
  }
  return out;
}

}  // namespace weft::render

namespace weft::render {

namespace {

const char* kHtmlStyle = R"css(
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
code,pre{font:12px/1.35 ui-monospace,monospace}
pre{background:#f6f6f6;padding:.6em;overflow:auto;max-height:30em;white-space:pre-wrap}
.pass{color:#1a7f37}.fail{color:#cf222e}.skip,.cancelled{color:#9a6700}.flaky{color:#bc4c00}
.verdict{font-weight:bold}.err{color:#953800}
table{border-collapse:collapse}th,td{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:left}
th{cursor:pointer;user-select:none}th:after{content:" \2195";color:#aaa}
td.num{text-align:right;font-variant-numeric:tabular-nums}
details{margin:.5em 0}summary{cursor:pointer}
svg text{font:11px sans-serif}
)css";

// Sorts the table by a column when its header is clicked, or at load by
// "?sort=COLUMN" / "?sort=COLUMN-desc" (each th has data-key).
const char* kHtmlScript = R"js(
(function(){
var t=document.getElementById('jobs-table');if(!t)return;
var heads=t.tHead.rows[0].cells;
function sortBy(i,desc){
  var rows=Array.prototype.slice.call(t.tBodies[0].rows);
  var num=heads[i].getAttribute('data-type')==='num';
  rows.sort(function(a,b){
    var x=a.cells[i].getAttribute('data-value'),y=b.cells[i].getAttribute('data-value');
    var c=num?(parseFloat(x)-parseFloat(y)):x.localeCompare(y);
    return desc?-c:c;});
  rows.forEach(function(r){t.tBodies[0].appendChild(r);});
  t.setAttribute('data-sorted',heads[i].getAttribute('data-key')+(desc?'-desc':''));
}
Array.prototype.forEach.call(heads,function(h,i){
  h.addEventListener('click',function(){
    var key=h.getAttribute('data-key');
    sortBy(i,t.getAttribute('data-sorted')===key);});});
var m=/[?&]sort=([a-z]+)(-desc)?/.exec(location.search);
if(m)Array.prototype.forEach.call(heads,function(h,i){
  if(h.getAttribute('data-key')===m[1])sortBy(i,!!m[2]);});
})();
)js";

std::string VerdictOf(const Job& job) {
  if (job.cancelled && !job.ended) return "cancelled";
  if (!job.ended) return "unfinished";
  return job.verdict;
}

}  // namespace

std::string HtmlReport(const Model& m) {
  std::string html = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  const Run* run = m.runs().empty() ? nullptr : &m.runs().back();
  std::string verdict = run ? (run->summarised ? run->verdict : run->ended ? "unknown" : "incomplete")
                            : "empty";
  std::string upper = verdict;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  html += fmt::format("<title>weft run {}: {}</title>\n<style>{}</style>\n</head>\n<body>\n",
                      XmlEscape(run ? run->id : ""), XmlEscape(upper), kHtmlStyle);
  if (!run) {
    html += "<h1>weft</h1>\n<p>The stream held no run.</p>\n</body>\n</html>\n";
    return html;
  }
  std::string cls = verdict == "pass" ? "pass" : verdict == "fail" ? "fail" : "skip";
  int64_t passed = 0, failed = 0, skipped = 0, flaky = 0, cancelled = 0;
  for (const auto& [id, job] : run->jobs) {
    std::string v = VerdictOf(job);
    if (v == "pass") ++passed;
    else if (v == "skip") ++skipped;
    else if (v == "cancelled") ++cancelled;
    else ++failed;
    if (job.flaky) ++flaky;
  }
  int64_t wall = run->wall_us ? run->wall_us
                              : (run->end_ts > run->start_ts ? run->end_ts - run->start_ts : 0);
  html += fmt::format(
      "<h1>weft run <code>{}</code> <span class=\"verdict {}\">{}</span></h1>\n"
      "<p id=\"summary\">{} passed, {} failed, {} skipped{}{} &middot; {} jobs on {} "
      "in <code>{}</code> &middot; started {} UTC &middot; wall time {}s{}</p>\n",
      XmlEscape(run->id), cls, XmlEscape(upper), passed, failed, skipped,
      flaky ? fmt::format(", <span class=\"flaky\">{} flaky</span>", flaky) : "",
      cancelled ? fmt::format(", {} cancelled", cancelled) : "", run->jobs.size(),
      XmlEscape(run->host), XmlEscape(run->cwd), Iso8601(run->start_ts), FormatSeconds(wall),
      run->bailed.empty() ? "" : " &middot; <span class=\"fail\">bailed out: " + XmlEscape(run->bailed) + "</span>");

  // Failures, each with what it said.
  std::string failures;
  for (const auto& [id, job] : run->jobs) {
    std::string v = VerdictOf(job);
    if (v != "fail" && v != "unfinished") continue;
    failures += fmt::format("<details open id=\"job-{}\"><summary><b class=\"fail\">{}</b> &mdash; {}</summary>\n",
                            id, XmlEscape(job.name),
                            XmlEscape(v == "unfinished" ? "the log ends before this test did"
                                                        : Joined(job.reasons, "; ")));
    for (const auto& a : job.asserts) {
      if (a.ok || a.directive() == "todo") continue;
      std::string text = TestPoint(a);
      if (!a.file().empty()) text += fmt::format("  (at {} line {})", a.file(), a.line());
      for (const auto& d : a.diag()) text += "\n    " + d;
      failures += "<pre class=\"assertion\">" + XmlEscape(text) + "</pre>\n";
    }
    if (!job.output.empty()) {
      std::string out;
      for (const auto& line : job.output)
        out += line.is_stderr ? "<span class=\"err\">" + XmlEscape(line.text) + "</span>\n"
                              : XmlEscape(line.text) + "\n";
      if (job.output_dropped)
        out += XmlEscape(fmt::format("[{} more lines of output are in the log]\n", job.output_dropped));
      failures += "<p>Output (stderr in brown):</p>\n<pre class=\"output\">" + out + "</pre>\n";
    }
    failures += "</details>\n";
  }
  if (!failures.empty()) html += "<h2>Failures</h2>\n" + failures;

  // Every job, sortable.
  html += "<h2>Jobs</h2>\n<table id=\"jobs-table\">\n<thead><tr>"
          "<th data-key=\"job\" data-type=\"num\">#</th>"
          "<th data-key=\"name\">Test</th>"
          "<th data-key=\"verdict\">Verdict</th>"
          "<th data-key=\"duration\" data-type=\"num\">Duration (s)</th>"
          "<th data-key=\"assertions\" data-type=\"num\">Assertions</th>"
          "<th data-key=\"attempts\" data-type=\"num\">Attempt</th>"
          "</tr></thead>\n<tbody>\n";
  for (const auto& [id, job] : run->jobs) {
    std::string v = VerdictOf(job);
    std::string shown = job.flaky ? "flaky" : v;
    html += fmt::format(
        "<tr><td class=\"num\" data-value=\"{}\">{}</td><td data-value=\"{}\">{}</td>"
        "<td class=\"{}\" data-value=\"{}\">{}</td><td class=\"num\" data-value=\"{}\">{}</td>"
        "<td class=\"num\" data-value=\"{}\">{}</td><td class=\"num\" data-value=\"{}\">{}</td></tr>\n",
        id, id, XmlEscape(job.name),
        v == "fail" || v == "unfinished" ? fmt::format("<a href=\"#job-{}\">{}</a>", id, XmlEscape(job.name))
                                         : XmlEscape(job.name),
        shown == "pass" ? "pass" : shown == "skip" || shown == "cancelled" ? "skip" : shown == "flaky" ? "flaky" : "fail",
        shown, shown, job.duration_us, FormatSeconds(job.duration_us), job.run, job.run,
        job.attempt, job.attempt);
  }
  html += "</tbody>\n</table>\n";

  // The timeline: each job a bar, in the first slot free when it started.
  std::vector<const Job*> started;
  for (const auto& [id, job] : run->jobs)
    if (job.started && job.start_ts > 0) started.push_back(&job);
  std::sort(started.begin(), started.end(),
            [](const Job* a, const Job* b) { return a->start_ts < b->start_ts; });
  std::vector<int64_t> slot_end;
  std::string bars;
  // A log cut short has no wall time: its jobs' own ends bound it.
  int64_t t0 = run->start_ts ? run->start_ts : (started.empty() ? 0 : started[0]->start_ts);
  int64_t last = t0;
  for (const Job* job : started)
    last = std::max(last, job->start_ts + std::max<int64_t>(job->duration_us, 1));
  if (wall <= 0) wall = last - t0;
  int64_t span = std::max<int64_t>(std::max(wall, last - t0), 1);
  for (const Job* job : started) {
    int64_t end = job->ended ? job->start_ts + std::max<int64_t>(job->duration_us, 1) : t0 + span;
    size_t slot = 0;
    while (slot < slot_end.size() && slot_end[slot] > job->start_ts) ++slot;
    if (slot == slot_end.size()) slot_end.push_back(0);
    slot_end[slot] = end;
    double x = 1000.0 * static_cast<double>(job->start_ts - t0) / static_cast<double>(span);
    double w = std::max(1.0, 1000.0 * static_cast<double>(end - job->start_ts) / static_cast<double>(span));
    std::string v = job->flaky ? "flaky" : VerdictOf(*job);
    const char* fill = v == "pass" ? "#2da44e" : v == "skip" ? "#d4a72c" : v == "flaky" ? "#e16f24" : "#cf222e";
    bars += fmt::format(
        "<rect x=\"{:.1f}\" y=\"{}\" width=\"{:.1f}\" height=\"16\" fill=\"{}\"><title>{} ({}s, {})</title></rect>\n",
        x, 20 * slot + 2, w, fill, XmlEscape(job->name), FormatSeconds(job->duration_us), v);
  }
  if (!bars.empty())
    html += fmt::format(
        "<h2>Timeline</h2>\n<p>{} slot{} over {}s; hover a bar for its test.</p>\n"
        "<svg id=\"timeline\" viewBox=\"0 0 1000 {}\" width=\"100%\" preserveAspectRatio=\"none\" "
        "style=\"height:{}px;background:#fafafa\">\n{}</svg>\n",
        slot_end.size(), slot_end.size() == 1 ? "" : "s", FormatSeconds(wall),
        20 * slot_end.size() + 4, 20 * slot_end.size() + 4, bars);
  html += fmt::format("<script>{}</script>\n</body>\n</html>\n", kHtmlScript);
  return html;
}

}  // namespace weft::render
