#include "plan.h"

#include <errno.h>
#include <fmt/format.h>
#include <string.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <weft/common/util.h>
#include <weft/events/event.h>

namespace weft::runner {

using events::JsonWriter;
using events::Key;

namespace {

bool AnyMatch(const std::vector<std::string>& globs, const std::string& name) {
  for (const auto& g : globs)
    if (GlobMatch(g, name)) return true;
  return false;
}

}  // namespace

void ApplyLayer(const Override& layer, JobSpec* job) {
  layer.limits.ApplyTo(&job->limits);
  if (layer.retries) job->retries = *layer.retries;
  for (const auto& kv : layer.env) SetEnvEntry(&job->env, kv);
}

namespace {

// FNV-1a, 64 bits: the same on every machine and every run.
uint64_t Hash(uint64_t seed, std::string_view s) {
  uint64_t h = 14695981039346656037ull;
  for (int i = 0; i < 8; ++i) {
    h ^= (seed >> (8 * i)) & 0xff;
    h *= 1099511628211ull;
  }
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace

void ApplyLayers(const Config& config, const Override& cli, JobSpec* job) {
  ApplyLayer(config.top, job);
  for (const auto& o : config.overrides)
    if (AnyMatch(o.paths, job->name)) ApplyLayer(o, job);
  ApplyLayer(cli, job);
  if (job->group.empty())
    for (const auto& g : config.groups)
      if (AnyMatch(g.paths, job->name)) {
        job->group = g.name;
        break;
      }
}

bool PlanJobs(const Options& o, const Config& config, std::vector<JobSpec>* jobs,
              std::vector<std::string>* warnings, std::string* err) {
  jobs->clear();
  if (!o.jobs_from.empty()) {
    // A regular file is read whole here; stdin and pipes are read as a
    // stream by the runner.
    std::ifstream in(o.jobs_from, std::ios::binary);
    if (!in) {
      *err = fmt::format("{}: {}", o.jobs_from, strerror(errno));
      return false;
    }
    std::string line;
    uint64_t n = 0;
    while (std::getline(in, line)) {
      ++n;
      if (line.empty() || line == "\r") continue;
      JobSpec job;
      std::string why;
      if (!ParseJobSpec(line, &job, &why)) {
        *err = fmt::format("{}:{}: {}", o.jobs_from, n, why);
        return false;
      }
      ApplyLayer(o.cli, &job);
      jobs->push_back(std::move(job));
    }
    return true;
  }
  std::vector<std::string> paths = o.paths;
  if (paths.empty()) paths = config.paths;
  Interpreters interpreters = config.interpreters;
  for (const auto& flag : o.interpreters) {
    size_t eq = flag.find('=');
    std::string ext = flag.substr(flag[0] == '.' ? 1 : 0, eq - (flag[0] == '.' ? 1 : 0));
    std::vector<std::string> words;
    std::string word;
    for (char c : flag.substr(eq + 1)) {
      if (c == ' ') {
        if (!word.empty()) words.push_back(std::move(word));
        word.clear();
      } else {
        word.push_back(c);
      }
    }
    if (!word.empty()) words.push_back(std::move(word));
    interpreters[ext] = std::move(words);
  }
  const auto& include = o.include.empty() ? config.include : o.include;
  const auto& exclude = o.exclude.empty() ? config.exclude : o.exclude;
  std::vector<JobSpec> found;
  if (!Discover(paths, DefaultInterpreters(interpreters), &found, warnings, err))
    return false;
  // A file named on the command line always runs; include and exclude
  // choose among the files found in directories.
  std::set<std::string> named;
  for (const auto& p : o.paths) {
    struct stat st;
    if (stat(p.c_str(), &st) == 0 && !S_ISDIR(st.st_mode)) named.insert(p);
  }
  for (auto& job : found) {
    if (!named.count(job.name)) {
      if (!include.empty() && !AnyMatch(include, job.name)) continue;
      if (AnyMatch(exclude, job.name)) continue;
    }
    ApplyLayers(config, o.cli, &job);
    jobs->push_back(std::move(job));
  }
  return true;
}

void OrderJobs(const std::string& order, uint64_t seed, std::vector<JobSpec>* jobs) {
  if (order == "shuffle") {
    std::vector<std::pair<uint64_t, size_t>> keys;
    for (size_t i = 0; i < jobs->size(); ++i)
      keys.emplace_back(Hash(seed, (*jobs)[i].name), i);
    std::stable_sort(keys.begin(), keys.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<JobSpec> out;
    out.reserve(jobs->size());
    for (auto& [key, i] : keys) out.push_back(std::move((*jobs)[i]));
    *jobs = std::move(out);
  } else if (order == "name") {
    std::stable_sort(jobs->begin(), jobs->end(),
                     [](const JobSpec& a, const JobSpec& b) { return a.name < b.name; });
  } else if (order == "duration") {
    std::stable_sort(jobs->begin(), jobs->end(), [](const JobSpec& a, const JobSpec& b) {
      // Unknown (-1) first, then longest first.
      if ((a.expected_us < 0) != (b.expected_us < 0)) return a.expected_us < 0;
      return a.expected_us > b.expected_us;
    });
  }
}

void WriteJobSpec(JsonWriter& w, const JobSpec& job) {
  events::WriteText(w, "name", job.name);
  Key(w, "argv");
  w.StartArray();
  for (const auto& a : job.argv) events::TextValue(w, a);
  w.EndArray();
  if (!job.cwd.empty()) events::WriteText(w, "cwd", job.cwd);
  if (!job.env.empty()) {
    Key(w, "env");
    w.StartObject();
    for (const auto& kv : job.env) {
      size_t eq = kv.find('=');
      std::string_view k(kv.data(), eq);
      w.Key(k.data(), static_cast<rapidjson::SizeType>(k.size()));
      events::TextValue(w, std::string_view(kv).substr(eq + 1));
    }
    w.EndObject();
  }
  if (!job.group.empty()) events::WriteText(w, "group", job.group);
  const JobLimits& l = job.limits;
  Key(w, "timeout_s");
  w.Double(l.timeout_s);
  Key(w, "idle_timeout_s");
  w.Double(l.idle_timeout_s);
  Key(w, "exit_timeout_s");
  w.Double(l.exit_timeout_s);
  Key(w, "kill_grace_s");
  w.Double(l.kill_grace_s);
  Key(w, "keep");
  w.Bool(l.keep_tmpdir);
  Key(w, "leaks");
  events::String(w, l.leaks_fail ? "fail" : "warn");
  if (!l.stdin_path.empty()) events::WriteText(w, "stdin", l.stdin_path);
  Key(w, "retries");
  w.Int(job.retries);
  Key(w, "expected_us");
  if (job.expected_us >= 0)
    w.Int64(job.expected_us);
  else
    w.Null();
}

bool ParseJobSpec(std::string_view line, JobSpec* job, std::string* err) {
  // simdjson reads past the end: a padded copy.
  std::string padded(line);
  padded.append(events::kPadding, '\0');
  events::Event e(std::string_view(padded.data(), line.size()));
  if (e.type() != "job") {
    *err = "not a job spec (a JSON object with \"type\":\"job\")";
    return false;
  }
  events::Fields f;
  if (!f.Load(e, err)) return false;
  *job = JobSpec();
  if (!f.StrArray("argv", &job->argv) || job->argv.empty() || job->argv[0].empty()) {
    *err = "\"argv\" must be a non-empty array of strings";
    return false;
  }
  job->name = std::string(f.Str("name").value_or(job->argv.back()));
  job->cwd = std::string(f.Str("cwd").value_or(""));
  if (f.Raw("env") && !f.StrMap("env", &job->env)) {
    *err = "\"env\" must be an object of strings";
    return false;
  }
  job->group = std::string(f.Str("group").value_or(""));
  JobLimits& l = job->limits;
  struct {
    const char* key;
    double* to;
  } numbers[] = {{"timeout_s", &l.timeout_s},
                 {"idle_timeout_s", &l.idle_timeout_s},
                 {"exit_timeout_s", &l.exit_timeout_s},
                 {"kill_grace_s", &l.kill_grace_s}};
  for (auto& n : numbers) {
    if (!f.Raw(n.key)) continue;
    auto v = f.Double(n.key);
    if (!v || *v < 0) {
      *err = fmt::format("\"{}\" must be a number, 0 or more", n.key);
      return false;
    }
    *n.to = *v;
  }
  if (l.exit_timeout_s <= 0) {
    *err = "\"exit_timeout_s\" must be above 0";
    return false;
  }
  l.keep_tmpdir = f.Bool("keep").value_or(false);
  auto leaks = f.Str("leaks").value_or("fail");
  if (leaks != "fail" && leaks != "warn") {
    *err = "\"leaks\" must be \"fail\" or \"warn\"";
    return false;
  }
  l.leaks_fail = leaks == "fail";
  l.stdin_path = std::string(f.Str("stdin").value_or(""));
  auto retries = f.Int("retries").value_or(0);
  if (retries < 0 || retries > 1000) {
    *err = "\"retries\" must be from 0 to 1000";
    return false;
  }
  job->retries = static_cast<int>(retries);
  job->expected_us = f.Int("expected_us").value_or(-1);
  return true;
}

}  // namespace weft::runner
