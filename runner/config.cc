// weft.toml, read with toml++ (header-only here: this is its one
// translation unit).
#include "config.h"

#include <fmt/format.h>
#include <fnmatch.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <toml++/toml.h>

namespace weft::runner {

namespace {

// Levenshtein distance, for "did you mean".
size_t Distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1,
                         diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  // "where" names the table for messages ("" at the top level).
  bool Error(const toml::source_region& at, std::string_view key,
             std::string_view message) {
    if (err_.empty())
      err_ = fmt::format("{}:{}: {}: {}", file_, at.begin.line, key, message);
    return false;
  }
  const std::string& err() const { return err_; }

  // "label" names the key in the message when it is not the key itself
  // (a key of a nested table).
  bool Unknown(const toml::key& key, std::initializer_list<std::string_view> known,
               std::string_view label = {}) {
    std::string_view best;
    size_t best_d = 3;
    for (auto k : known)
      if (size_t d = Distance(key.str(), k); d < best_d) best = k, best_d = d;
    return Error(key.source(), label.empty() ? key.str() : label,
                 best.empty() ? std::string("unknown key")
                              : fmt::format("unknown key (did you mean \"{}\"?)", best));
  }

  bool Number(const toml::key& k, const toml::node& v, bool positive,
              std::optional<double>* out) {
    auto d = v.value<double>();
    if (!(v.is_integer() || v.is_floating_point()) || !d)
      return Error(v.source(), k.str(), "must be a number of seconds");
    if (*d < 0 || (positive && *d == 0) || !std::isfinite(*d))
      return Error(v.source(), k.str(),
                   positive ? "must be above 0" : "must be 0 or more");
    *out = *d;
    return true;
  }
  bool Int(const toml::key& k, const toml::node& v, int64_t min, int64_t max,
           std::optional<int>* out) {
    auto i = v.value<int64_t>();
    if (!v.is_integer() || !i)
      return Error(v.source(), k.str(), "must be an integer");
    if (*i < min || *i > max)
      return Error(v.source(), k.str(),
                   fmt::format("must be from {} to {}", min, max));
    *out = static_cast<int>(*i);
    return true;
  }
  bool Bool(const toml::key& k, const toml::node& v, std::optional<bool>* out) {
    if (!v.is_boolean()) return Error(v.source(), k.str(), "must be true or false");
    *out = *v.value<bool>();
    return true;
  }
  bool Str(const toml::key& k, const toml::node& v, std::string* out) {
    if (!v.is_string()) return Error(v.source(), k.str(), "must be a string");
    *out = *v.value<std::string>();
    return true;
  }
  bool OneOf(const toml::key& k, const toml::node& v,
             std::initializer_list<std::string_view> allowed,
             std::optional<std::string>* out) {
    std::string s;
    if (!Str(k, v, &s)) return false;
    if (std::find(allowed.begin(), allowed.end(), s) == allowed.end())
      return Error(v.source(), k.str(),
                   fmt::format("must be one of \"{}\"", fmt::join(allowed, "\", \"")));
    *out = s;
    return true;
  }
  // [render.colors]: role = 0-255 (a 256-colour index) or "#rrggbb".
  bool Colours(const toml::node& v, std::string* out) {
    const toml::table* t = v.as_table();
    if (!t) return Error(v.source(), "render.colors", "must be a table of ROLE = colour");
    std::vector<std::string> items;
    for (auto&& [role, value] : *t) {
      std::string_view r = role.str();
      std::string name = fmt::format("render.colors.{}", r);
      if (r != "pass" && r != "fail" && r != "active" && r != "retry" && r != "todo" &&
          r != "warn" && r != "flaky" && r != "timeout") {
        return Unknown(role, {"pass", "fail", "active", "retry", "todo", "warn",
                              "flaky", "timeout"}, name);
      }
      auto bad = [&] {
        return Error(value.source(), name,
                     "must be a 256-colour number (0-255) or \"#rrggbb\"");
      };
      if (auto i = value.value<int64_t>(); value.is_integer()) {
        if (*i < 0 || *i > 255) return bad();
        items.push_back(fmt::format("{}={}", r, *i));
      } else if (auto str = value.value<std::string>(); value.is_string()) {
        if (str->size() != 7 || (*str)[0] != '#' ||
            str->find_first_not_of("0123456789abcdefABCDEF", 1) != std::string::npos)
          return bad();
        items.push_back(fmt::format("{}={}", r, *str));
      } else {
        return bad();
      }
    }
    *out = fmt::format("{}", fmt::join(items, ","));
    return true;
  }
  // A string or an array of strings.
  bool Strings(const toml::key& k, const toml::node& v,
               std::vector<std::string>* out, bool allow_empty = true) {
    out->clear();
    if (v.is_string()) {
      out->push_back(*v.value<std::string>());
    } else if (const toml::array* a = v.as_array()) {
      for (const toml::node& item : *a) {
        if (!item.is_string())
          return Error(item.source(), k.str(), "must be a list of strings");
        out->push_back(*item.value<std::string>());
      }
    } else {
      return Error(v.source(), k.str(), "must be a string or a list of strings");
    }
    if (!allow_empty && out->empty())
      return Error(v.source(), k.str(), "must not be empty");
    return true;
  }
  // [env]-style tables: every value a string, number or boolean.
  bool Env(const toml::key& k, const toml::node& v, std::vector<std::string>* out) {
    const toml::table* t = v.as_table();
    if (!t) return Error(v.source(), k.str(), "must be a table of NAME = \"value\"");
    for (auto&& [name, value] : *t) {
      std::string text;
      if (value.is_string())
        text = *value.value<std::string>();
      else if (value.is_integer())
        text = std::to_string(*value.value<int64_t>());
      else if (value.is_floating_point())
        text = fmt::format("{}", *value.value<double>());
      else if (value.is_boolean())
        text = *value.value<bool>() ? "1" : "0";
      else
        return Error(value.source(), fmt::format("{}.{}", k.str(), name.str()),
                     "must be a string, a number or a boolean");
      if (name.str().empty() || name.str().find('=') != std::string_view::npos)
        return Error(name.source(), fmt::format("{}.{}", k.str(), name.str()),
                     "is not a variable name");
      out->push_back(fmt::format("{}={}", name.str(), text));
    }
    return true;
  }

  bool Top(const toml::table& t, Config* c);
  // A key of a layer (the top level or an [[override]]): true if it is one
  // (*ok then says whether its value was good).
  bool LayerKey(const toml::key& key, const toml::node& value, Override* o, bool* ok);
  bool GroupTable(const toml::key& k, const toml::node& v, Config* c);
  bool OverrideTable(const toml::key& k, const toml::node& v, Config* c);
  bool ServiceTable(const toml::key& k, const toml::node& v, Config* c);
  bool StageTable(const toml::key& k, const toml::node& v, Config* c);

 private:
  std::string file_;
  std::string err_;
};

bool Reader::LayerKey(const toml::key& key, const toml::node& value,
                      Override* o, bool* ok) {
  std::string_view n = key.str();
  LimitFlags& l = o->limits;
  if (n == "timeout") {
    *ok = Number(key, value, false, &l.timeout_s);
  } else if (n == "idle_timeout") {
    *ok = Number(key, value, false, &l.idle_timeout_s);
  } else if (n == "exit_timeout") {
    *ok = Number(key, value, true, &l.exit_timeout_s);
  } else if (n == "kill_grace") {
    *ok = Number(key, value, false, &l.kill_grace_s);
  } else if (n == "keep") {
    *ok = Bool(key, value, &l.keep_tmpdir);
  } else if (n == "leaks") {
    std::optional<std::string> s;
    *ok = OneOf(key, value, {"fail", "warn"}, &s);
    if (*ok) l.leaks_fail = *s == "fail";
  } else if (n == "stdin") {
    std::string s;
    *ok = Str(key, value, &s);
    l.stdin_path = s;
  } else if (n == "retries") {
    *ok = Int(key, value, 0, 1000, &o->retries);
  } else if (n == "env") {
    *ok = Env(key, value, &o->env);
  } else {
    return false;
  }
  return true;
}

bool Reader::GroupTable(const toml::key& k, const toml::node& v, Config* c) {
  const toml::array* a = v.as_array();
  if (!a || !a->is_array_of_tables())
    return Error(v.source(), k.str(), "must be written as [[group]] tables");
  for (const toml::node& item : *a) {
    Group g;
    bool has_paths = false;
    for (auto&& [key, value] : *item.as_table()) {
      std::string_view n = key.str();
      if (n == "name") {
        if (!Str(key, value, &g.name)) return false;
      } else if (n == "paths") {
        if (!Strings(key, value, &g.paths, false)) return false;
        has_paths = true;
      } else if (n == "max_parallel") {
        std::optional<int> m;
        if (!Int(key, value, 1, 100000, &m)) return false;
        g.max_parallel = *m;
      } else {
        return Unknown(key, {"name", "paths", "max_parallel"});
      }
    }
    if (g.name.empty()) return Error(item.source(), "group", "needs a name");
    if (!has_paths) return Error(item.source(), "group", "needs paths");
    for (const auto& other : c->groups)
      if (other.name == g.name)
        return Error(item.source(), "group",
                     fmt::format("\"{}\" is defined twice", g.name));
    c->groups.push_back(std::move(g));
  }
  return true;
}

bool Reader::OverrideTable(const toml::key& k, const toml::node& v, Config* c) {
  const toml::array* a = v.as_array();
  if (!a || !a->is_array_of_tables())
    return Error(v.source(), k.str(), "must be written as [[override]] tables");
  for (const toml::node& item : *a) {
    Override o;
    bool has_paths = false;
    for (auto&& [key, value] : *item.as_table()) {
      std::string_view n = key.str();
      bool ok = true;
      if (n == "paths") {
        ok = Strings(key, value, &o.paths, false);
        has_paths = true;
      } else if (!LayerKey(key, value, &o, &ok)) {
        return Unknown(key, {"paths", "timeout", "idle_timeout", "exit_timeout",
                             "kill_grace", "keep", "leaks", "stdin", "retries",
                             "env"});
      }
      if (!ok) return false;
    }
    if (!has_paths) return Error(item.source(), "override", "needs paths");
    c->overrides.push_back(std::move(o));
  }
  return true;
}

bool Reader::ServiceTable(const toml::key& k, const toml::node& v, Config* c) {
  const toml::array* a = v.as_array();
  if (!a || !a->is_array_of_tables())
    return Error(v.source(), k.str(), "must be written as [[service]] tables");
  for (const toml::node& item : *a) {
    Service svc;
    int readies = 0;
    for (auto&& [key, value] : *item.as_table()) {
      std::string_view n = key.str();
      bool ok = true;
      if (n == "name") {
        ok = Str(key, value, &svc.name);
      } else if (n == "command") {
        if (value.is_string()) {
          svc.command = {"/bin/sh", "-c", *value.value<std::string>()};
        } else {
          ok = Strings(key, value, &svc.command, false);
        }
      } else if (n == "ready_port") {
        std::optional<int> port;
        ok = Int(key, value, 1, 65535, &port);
        if (ok) svc.ready_port = *port;
        ++readies;
      } else if (n == "ready_file") {
        ok = Str(key, value, &svc.ready_file);
        ++readies;
      } else if (n == "ready_line") {
        ok = Str(key, value, &svc.ready_line);
        if (ok && svc.ready_line.empty()) ok = Error(value.source(), n, "must not be empty");
        ++readies;
      } else if (n == "ready_timeout") {
        std::optional<double> d;
        ok = Number(key, value, true, &d);
        if (ok) svc.ready_timeout_s = *d;
      } else if (n == "stop_grace") {
        std::optional<double> d;
        ok = Number(key, value, false, &d);
        if (ok) svc.stop_grace_s = *d;
      } else if (n == "env") {
        ok = Env(key, value, &svc.env);
      } else {
        return Unknown(key, {"name", "command", "ready_port", "ready_file", "ready_line",
                             "ready_timeout", "stop_grace", "env"});
      }
      if (!ok) return false;
    }
    if (svc.name.empty()) return Error(item.source(), "service", "needs a name");
    if (svc.command.empty()) return Error(item.source(), "service", "needs a command");
    if (readies > 1)
      return Error(item.source(), "service",
                   "takes one of ready_port, ready_file and ready_line");
    for (const auto& other : c->services)
      if (other.name == svc.name)
        return Error(item.source(), "service",
                     fmt::format("\"{}\" is defined twice", svc.name));
    c->services.push_back(std::move(svc));
  }
  return true;
}

bool Reader::StageTable(const toml::key& k, const toml::node& v, Config* c) {
  const toml::array* a = v.as_array();
  if (!a || !a->is_array_of_tables())
    return Error(v.source(), k.str(), "must be written as [[stage]] tables");
  for (const toml::node& item : *a) {
    Stage st;
    bool has_paths = false;
    for (auto&& [key, value] : *item.as_table()) {
      std::string_view n = key.str();
      bool ok = true;
      if (n == "name") {
        ok = Str(key, value, &st.name);
        if (ok && (st.name.empty() || st.name.find_first_not_of(
                                          "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") !=
                                          std::string::npos))
          ok = Error(value.source(), n, "must be letters, digits, - and _");
      } else if (n == "lang") {
        ok = Str(key, value, &st.lang);
        if (ok && st.lang.empty()) ok = Error(value.source(), n, "must not be empty");
      } else if (n == "preload") {
        ok = Strings(key, value, &st.preload);
      } else if (n == "inc") {
        ok = Strings(key, value, &st.inc);
      } else if (n == "paths") {
        ok = Strings(key, value, &st.paths, false);
        has_paths = true;
      } else if (n == "command") {
        ok = Strings(key, value, &st.command, false);
      } else if (n == "from") {
        ok = Str(key, value, &st.from);
        if (ok) {
          auto base = std::find_if(c->stages.begin(), c->stages.end(),
                                   [&](const Stage& b) { return b.name == st.from; });
          if (base == c->stages.end())
            ok = Error(value.source(), n, fmt::format("names no stage defined before this one "
                                                      "(\"{}\")", st.from));
          else if (!base->from.empty())
            ok = Error(value.source(), n, fmt::format("\"{}\" is itself built on \"{}\": one "
                                                      "level only", st.from, base->from));
        }
      } else {
        return Unknown(key, {"name", "lang", "command", "preload", "inc", "paths", "from"});
      }
      if (!ok) return false;
    }
    if (st.name.empty()) return Error(item.source(), "stage", "needs a name");
    if (!has_paths) return Error(item.source(), "stage", "needs paths");
    if (st.command.empty() && st.lang != "perl" && st.lang != "python")
      return Error(item.source(), "stage",
                   fmt::format("\"{}\": weft ships stages for perl and python; for {} give "
                               "its command", st.name, st.lang));
    if (!st.from.empty() && !st.command.empty())
      return Error(item.source(), "stage", "is built on another stage or has a command, not both");
    if (!st.from.empty()) {
      for (const auto& b : c->stages)
        if (b.name == st.from && b.lang != st.lang)
          return Error(item.source(), "stage",
                       fmt::format("\"{}\" is {}, \"{}\" is {}: a stage is built on one of "
                                   "its own language", st.name, st.lang, b.name, b.lang));
    }
    for (const auto& other : c->stages)
      if (other.name == st.name)
        return Error(item.source(), "stage", fmt::format("\"{}\" is defined twice", st.name));
    c->stages.push_back(std::move(st));
  }
  return true;
}

bool Reader::Top(const toml::table& t, Config* c) {
  for (auto&& [key, value] : t) {
    std::string_view n = key.str();
    bool ok = true;
    if (n == "paths") {
      ok = Strings(key, value, &c->paths);
    } else if (n == "include") {
      ok = Strings(key, value, &c->include);
    } else if (n == "exclude") {
      ok = Strings(key, value, &c->exclude);
    } else if (n == "jobs") {
      if (value.is_string() && *value.value<std::string>() == "auto")
        c->jobs = 0;
      else if (value.is_integer())
        ok = Int(key, value, 1, 100000, &c->jobs);
      else
        ok = Error(value.source(), n, "must be a number of jobs or \"auto\"");
    } else if (LayerKey(key, value, &c->top, &ok)) {
    } else if (n == "bail") {
      ok = Int(key, value, 0, 1000000, &c->bail);
    } else if (n == "flaky_fails") {
      ok = Bool(key, value, &c->flaky_fails);
    } else if (n == "failed_first") {
      ok = Bool(key, value, &c->failed_first);
    } else if (n == "order") {
      ok = OneOf(key, value, {"duration", "name", "shuffle"}, &c->order);
    } else if (n == "seed") {
      auto i = value.value<int64_t>();
      if (!value.is_integer() || !i || *i < 0)
        ok = Error(value.source(), n, "must be an integer, 0 or more");
      else
        c->seed = static_cast<uint64_t>(*i);
    } else if (n == "interpreters") {
      const toml::table* it = value.as_table();
      if (!it) {
        ok = Error(value.source(), n, "must be a table of \"ext\" = \"command\"");
      } else {
        for (auto&& [ext, cmd] : *it) {
          std::string e(ext.str());
          if (!e.empty() && e[0] == '.') e.erase(0, 1);
          if (e.empty() || e.find('/') != std::string::npos)
            return Error(ext.source(), fmt::format("interpreters.{}", ext.str()),
                         "is not a file extension");
          std::vector<std::string> argv;
          toml::key full(fmt::format("interpreters.{}", ext.str()), ext.source());
          if (!Strings(full, cmd, &argv)) return false;
          c->interpreters[e] = std::move(argv);
        }
      }
    } else if (n == "group") {
      ok = GroupTable(key, value, c);
    } else if (n == "override") {
      ok = OverrideTable(key, value, c);
    } else if (n == "service") {
      ok = ServiceTable(key, value, c);
    } else if (n == "stage") {
      ok = StageTable(key, value, c);
    } else if (n == "render") {
      const toml::table* rt = value.as_table();
      if (!rt) return Error(value.source(), n, "must be a table");
      for (auto&& [rk, rv] : *rt) {
        std::string_view rn = rk.str();
        bool rok;
        if (rn == "color")
          rok = OneOf(rk, rv, {"auto", "always", "never"}, &c->color);
        else if (rn == "verbose")
          rok = Bool(rk, rv, &c->verbose);
        else if (rn == "colors")
          rok = Colours(rv, &c->colors);
        else
          return Unknown(rk, {"color", "verbose", "colors"});
        if (!rok) return false;
      }
    } else {
      return Unknown(key, {"paths", "include", "exclude", "jobs", "timeout",
                           "idle_timeout", "exit_timeout", "kill_grace", "keep",
                           "leaks", "stdin", "retries", "bail", "flaky_fails",
                           "failed_first", "order", "seed", "env",
                           "interpreters", "group", "override", "service",
                           "stage", "render"});
    }
    if (!ok) return false;
  }
  return true;
}

}  // namespace

std::string FindConfig(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path here = fs::absolute(dir, ec).lexically_normal();
  if (here.has_relative_path() && here.filename().empty()) here = here.parent_path();
  for (fs::path p = here;; p = p.parent_path()) {
    fs::path candidate = p / "weft.toml";
    struct stat st;
    if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode))
      return p == here && dir == "." ? std::string("weft.toml") : candidate.string();
    if (!p.has_relative_path()) return {};
  }
}

std::string RebasePath(const std::string& path, const std::string& from) {
  namespace fs = std::filesystem;
  if (from.empty() || path.empty() || path == "-" || path[0] == '/') return path;
  std::error_code ec;
  fs::path here = fs::current_path(ec);
  fs::path abs = (fs::path(from) / path).lexically_normal();
  fs::path rel = abs.lexically_relative(here);
  // Outside the current directory: absolute.
  return rel.empty() || *rel.begin() == ".." ? abs.string() : rel.string();
}

bool EnterProjectRoot(const std::string& file, std::vector<std::string>* paths,
                      std::string* moved_from) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (moved_from) moved_from->clear();
  fs::path here = fs::current_path(ec);
  fs::path root = fs::absolute(file, ec).parent_path();
  if (ec || root == here) return true;
  if (chdir(root.c_str()) != 0) return false;
  for (auto& p : *paths) p = RebasePath(p, here.string());
  if (moved_from) *moved_from = here.string();
  return true;
}

bool LoadConfig(const std::string& file, Config* config, std::string* err) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    *err = fmt::format("{}: cannot read it: {}", file, strerror(errno));
    return false;
  }
  std::stringstream text;
  text << in.rdbuf();
  toml::table table;
  try {
    table = toml::parse(text.str(), file);
  } catch (const toml::parse_error& e) {
    *err = fmt::format("{}:{}: {}", file, e.source().begin.line, e.description());
    return false;
  }
  Config c;
  c.file = file;
  Reader r(file);
  if (!r.Top(table, &c)) {
    *err = r.err();
    return false;
  }
  *config = std::move(c);
  return true;
}

bool GlobMatch(const std::string& glob, const std::string& name) {
  if (fnmatch(glob.c_str(), name.c_str(), 0) == 0) return true;
  std::string_view g = glob;
  while (g.size() > 1 && g.back() == '/') g.remove_suffix(1);
  return name.size() > g.size() && name.compare(0, g.size(), g) == 0 &&
         name[g.size()] == '/';
}

}  // namespace weft::runner
