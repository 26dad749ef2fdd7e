#include "discover.h"

#include <errno.h>
#include <fmt/format.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>
#include <stdlib.h>
#include <filesystem>

namespace weft::runner {

namespace fs = std::filesystem;

Interpreters DefaultInterpreters(const Interpreters& extra) {
  Interpreters all = {{"t", {"perl"}},   {"pl", {"perl"}}, {"sh", {"sh"}},
                      {"py", {"python3"}}, {"js", {"node"}}, {"bats", {"bats"}}};
  for (const auto& [ext, cmd] : extra) all[ext] = cmd;
  return all;
}

const std::vector<std::string>* InterpreterFor(const Interpreters& interpreters,
                                               const std::string& path) {
  auto dot = path.rfind('.');
  auto slash = path.rfind('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash))
    return nullptr;
  auto it = interpreters.find(path.substr(dot + 1));
  if (it == interpreters.end() || it->second.empty()) return nullptr;
  return &it->second;
}

namespace {

// The interpreter's full path, found in PATH once per run: exec'ing a bare
// name makes every spawn try each PATH entry in turn.
std::string Resolve(const std::string& name) {
  static std::map<std::string, std::string> cache;
  auto it = cache.find(name);
  if (it != cache.end()) return it->second;
  std::string found = name;
  const char* path = getenv("PATH");
  std::string_view dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  while (!dirs.empty()) {
    size_t colon = dirs.find(':');
    std::string_view dir = dirs.substr(0, colon);
    dirs.remove_prefix(colon == std::string_view::npos ? dirs.size() : colon + 1);
    if (dir.empty()) dir = ".";
    std::string candidate = fmt::format("{}/{}", dir, name);
    struct stat st;
    if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        access(candidate.c_str(), X_OK) == 0) {
      found = candidate;
      break;
    }
  }
  cache[name] = found;
  return found;
}

// Perl refuses a script whose #! line has -T (or -t) unless perl was
// started with it too ("-T" is on the #! line, it must also be used on
// the command line): as prove does, the switch is taken from the #! line
// (/^#!.*\bperl.*\s-\w*([Tt]+)/). Empty when there is none.
std::string TaintSwitch(const std::string& path) {
  FILE* f = fopen(path.c_str(), "re");
  if (!f) return "";
  char buf[512];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  std::string_view line(buf, n);
  line = line.substr(0, line.find('\n'));
  if (!line.starts_with("#!")) return "";
  size_t perl = line.find("perl");
  if (perl == std::string_view::npos) return "";
  std::string_view rest = line.substr(perl + 4);
  for (size_t i = 0; i + 1 < rest.size(); ++i) {
    if (rest[i + 1] != '-' || (rest[i] != ' ' && rest[i] != '\t')) continue;
    for (size_t j = i + 2; j < rest.size() && (isalnum(static_cast<unsigned char>(rest[j])) || rest[j] == '_'); ++j) {
      if (rest[j] == 'T') return "-T";
      if (rest[j] == 't') return "-t";
    }
  }
  return "";
}

JobSpec Spec(const Interpreters& interpreters, const std::string& path) {
  JobSpec spec;
  spec.name = path;
  const std::vector<std::string>* interp = InterpreterFor(interpreters, path);
  if (interp) {
    spec.argv.push_back(Resolve((*interp)[0]));
    spec.argv.insert(spec.argv.end(), interp->begin() + 1, interp->end());
    const std::string& program = (*interp)[0];
    if (program == "perl" || program.ends_with("/perl"))
      if (std::string sw = TaintSwitch(path); !sw.empty()) {
        spec.argv.push_back(sw);
        // Taint mode ignores PERL5LIB: its directories go as -I (prove's
        // way too), so the test finds the same modules.
        if (const char* lib = getenv("PERL5LIB")) {
          std::string_view dirs = lib;
          while (!dirs.empty()) {
            size_t colon = dirs.find(':');
            std::string_view dir = dirs.substr(0, colon);
            dirs.remove_prefix(colon == std::string_view::npos ? dirs.size() : colon + 1);
            if (!dir.empty()) spec.argv.push_back(fmt::format("-I{}", dir));
          }
        }
      }
  }
  // A bare relative name would be looked up in PATH by exec: anchor it.
  if (!interp && path.find('/') == std::string::npos)
    spec.argv.push_back("./" + path);
  else
    spec.argv.push_back(path);
  return spec;
}

std::string Join(const std::string& dir, const std::string& name) {
  if (!dir.empty() && dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

void Walk(const Interpreters& interpreters, const std::string& dir,
          std::vector<JobSpec>* jobs,
          std::vector<std::string>* warnings) {
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) {
    warnings->push_back(fmt::format("cannot read {}: {}", dir, ec.message()));
    return;
  }
  std::vector<std::string> names;
  for (const auto& entry : it) {
    std::string name = entry.path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  for (const auto& name : names) {
    std::string path = Join(dir, name);
    struct stat st;
    if (stat(path.c_str(), &st) != 0) {
      struct stat lst;
      if (lstat(path.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode))
        warnings->push_back(fmt::format(
            "skipping {}: it is a symlink to something missing ({})", path,
            strerror(errno)));
      continue;
    }
    if (S_ISDIR(st.st_mode)) {
      Walk(interpreters, path, jobs, warnings);
    } else if (S_ISREG(st.st_mode)) {
      if (InterpreterFor(interpreters, path) || access(path.c_str(), X_OK) == 0)
        jobs->push_back(Spec(interpreters, path));
    }
  }
}

}  // namespace

bool Discover(const std::vector<std::string>& paths,
              const Interpreters& interpreters, std::vector<JobSpec>* jobs,
              std::vector<std::string>* warnings, std::string* err) {
  std::vector<std::string> roots = paths;
  if (roots.empty()) {
    for (const char* d : {"t", "tests"}) {
      struct stat st;
      if (stat(d, &st) == 0 && S_ISDIR(st.st_mode)) {
        roots.push_back(d);
        break;
      }
    }
    if (roots.empty()) {
      warnings->push_back(
          "no t/ or tests/ directory here; name the tests or directories to "
          "run");
      return true;
    }
  }
  for (const auto& root : roots) {
    struct stat st;
    if (stat(root.c_str(), &st) != 0) {
      *err = fmt::format("{}: {}", root, strerror(errno));
      return false;
    }
    if (S_ISDIR(st.st_mode))
      Walk(interpreters, root, jobs, warnings);
    else
      jobs->push_back(Spec(interpreters, root));  // named explicitly: always run
  }
  return true;
}

}  // namespace weft::runner
