// weft.toml: a project's defaults for its runs (docs/weft.toml.md).
#pragma once

#include <weft/common/limits.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace weft::runner {

// Jobs whose names match "paths" (globs) run at most max_parallel at once.
struct Group {
  std::string name;
  std::vector<std::string> paths;
  int max_parallel = 1;
};

// A service a suite needs (a database, a server): started before each run,
// in weft.toml's order, each once the one before is ready; stopped after
// the run in reverse order.
struct Service {
  std::string name;
  std::vector<std::string> command;  // argv; a string in weft.toml: sh -c
  // Ready when: its port accepts a connection (on 127.0.0.1), a file
  // exists, or a line of its output contains this text; none: at once.
  int ready_port = 0;
  std::string ready_file;
  std::string ready_line;
  double ready_timeout_s = 30;
  double stop_grace_s = 5;           // TERM, then KILL
  std::vector<std::string> env;      // KEY=VALUE
};

// A stage (docs/stages.md): a long-lived process in the tests' language
// that loads modules once and forks a child per test, so each test starts
// with them loaded. Jobs whose names match "paths" use it.
struct Stage {
  std::string name;
  std::string lang = "perl";          // perl or python
  // A stage of one's own (any language): started as COMMAND --socket PATH
  // --name NAME [--inc=DIR]... [--preload=MODULE]...; then lang is only a
  // label.
  std::vector<std::string> command;
  std::vector<std::string> preload;   // modules
  std::vector<std::string> inc;       // perl: -I directories; python: sys.path
  std::vector<std::string> paths;     // globs of the jobs it runs
  // Built on this stage (one defined before it, itself built on none):
  // forked from it, keeping what it loaded, loading "preload" on top.
  std::string from;
};

// Settings for the jobs whose names match "paths" (globs); later overrides
// win over earlier ones, every override over the top level.
// The top level of weft.toml and the command line are layers of the same
// kind, matching every job.
struct Override {
  std::vector<std::string> paths;  // empty: every job
  LimitFlags limits;
  std::optional<int> retries;
  std::vector<std::string> env;  // KEY=VALUE
};

struct Config {
  std::string file;  // the file read; empty when there is none
  std::vector<std::string> paths, include, exclude;
  std::optional<int> jobs;  // 0: auto
  Override top;  // timeouts, keep, leaks, stdin, retries, env
  std::optional<int> bail;
  std::optional<bool> flaky_fails, failed_first;
  std::optional<std::string> order;  // "duration", "name", "shuffle"
  std::optional<uint64_t> seed;
  // Extension without the dot -> the command that runs such a file (empty:
  // the file itself, when executable).
  std::map<std::string, std::vector<std::string>> interpreters;
  std::vector<Group> groups;
  std::vector<Override> overrides;
  std::vector<Service> services;
  std::vector<Stage> stages;
  std::optional<std::string> color;  // [render]
  std::optional<bool> verbose;
  // [render.colors]: "role=value,…" for weft-render-term --colors (each
  // value 0-255 or #rrggbb; roles checked here).
  std::string colors;
};

// The weft.toml that governs "dir": in it or the nearest directory above.
// Empty when there is none.
std::string FindConfig(const std::string& dir);

// Makes the directory holding "file" (the project's root) the current one,
// when it is not already, and rewrites "paths" (given relative to the old
// one) for it. False with errno when it cannot.
// *moved_from (if given) is where we were, or empty when we did not move.
bool EnterProjectRoot(const std::string& file, std::vector<std::string>* paths,
                      std::string* moved_from = nullptr);

// "path", given relative to the directory "from", as seen from the current
// one (absolute when it lies outside it). Absolute paths, "-" and an empty
// "from" leave it as it is.
std::string RebasePath(const std::string& path, const std::string& from);

// Reads and checks a weft.toml. On any problem (TOML syntax, an unknown
// key, a value of the wrong type or out of range) returns false with *err
// naming the file, the line and the key.
bool LoadConfig(const std::string& file, Config* config, std::string* err);

// Whether "name" (a job's path) matches a glob of weft.toml: fnmatch(3)
// without FNM_PATHNAME ("*" also matches "/"), or the glob is a directory
// prefix of the name ("t/db" matches "t/db/x.t").
bool GlobMatch(const std::string& glob, const std::string& name);

}  // namespace weft::runner
