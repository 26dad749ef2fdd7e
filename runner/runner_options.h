// weft-runner's options about the run, declared once for weft-runner and
// for `weft test` (which forwards the ones given). Include only from a
// main.cc: CLI11 is a heavy header.
#pragma once

#include <weft/common/cli.h>

#include "runner.h"

namespace weft::runner {

// -j's value: a number from 1 to 100000, or auto; "" when it is one.
inline std::string CheckJobs(const std::string& v) {
  if (v == "auto") return std::string();
  try {
    size_t used = 0;
    int n = std::stoi(v, &used);
    if (used == v.size() && n >= 1 && n <= 100000) return std::string();
  } catch (...) {
  }
  return std::string("must be a number from 1 to 100000, or auto");
}

inline void AddRunnerOptions(CLI::App& app, Options* o) {
  const char* group = "Running tests";
  app.add_option("paths", o->paths, "Test files or directories");
  app.add_option_function<std::string>(
         "-j,--jobs",
         [o](const std::string& v) {
           o->jobs = v == "auto" ? 0 : std::stoi(v);
         },
         "Run N tests at once, or auto: one per CPU (default: auto; a make "
         "jobserver in MAKEFLAGS is respected)")
      ->check(CheckJobs)
      ->type_name("N|auto")->group(group);
  AddLimitOptions(app, &o->cli.limits);
  app.add_option("--retries", o->cli.retries,
                 "Rerun a failing test up to N times; one that then passes is "
                 "FLAKY (default: 0)")
      ->check(CLI::Range(0, 1000))->group(group);
  app.add_flag_callback("--flaky-fails", [o] { o->flaky_fails = true; },
                        "Count a FLAKY test (failed, then passed on a retry) "
                        "as a failure in the exit code")
      ->group(group);
  app.add_option("--repeat", o->repeat,
                 "Run the suite N times, each time its own run (and log); the "
                 "end shows each test's failure rate (0: until stopped)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40))->group(group);
  app.add_flag_callback("--forever", [o] { o->repeat = 0; },
                        "Run the suite again and again until stopped (q, "
                        "Ctrl-C); same as --repeat=0")
      ->group(group);
  app.add_flag("--until-fail", o->until_fail,
               "Repeat until a run fails (at most --repeat N times if given)")
      ->group(group);
  app.add_option("--bail", o->bail,
                 "Stop the run after N failed tests: queued ones are cancelled, "
                 "running ones stopped (default: 0, never)")
      ->check(CLI::Range(0, 1000000))->group(group);
  AddEnvOption(app, &o->cli.env, "every test's")->group(group);
  app.add_option("--include", o->include,
                 "Run only the tests whose names match GLOB (repeatable; "
                 "replaces weft.toml's include)")
      ->allow_extra_args(false)->type_name("GLOB")->group(group);
  app.add_option("--exclude", o->exclude,
                 "Leave out the tests whose names match GLOB (repeatable; "
                 "replaces weft.toml's exclude)")
      ->allow_extra_args(false)->type_name("GLOB")->group(group);
  app.add_option("--interpreter", o->interpreters,
                 "Run files ending in .EXT with COMMAND (words split at "
                 "spaces; empty: the file itself) (repeatable)")
      ->check([](const std::string& v) {
        size_t eq = v.find('=');
        return eq == std::string::npos || eq == 0 || (eq == 1 && v[0] == '.')
                   ? std::string("must be EXT=COMMAND")
                   : std::string();
      })
      ->allow_extra_args(false)->type_name("EXT=COMMAND")->group(group);
  const char* order = "Order";
  app.add_option("--order", o->order,
                 "duration: longest first by history (default); name; shuffle")
      ->check(CLI::IsMember({"duration", "name", "shuffle"}))->group(order);
  app.add_flag_callback("--shuffle", [o] { o->order = "shuffle"; },
                        "Same as --order=shuffle; the seed is printed")
      ->group(order);
  app.add_option("--seed", o->seed,
                 "The shuffle's seed: the same seed, the same order (default: "
                 "a new one, shown in run.start)")
      ->group(order);
  app.add_flag_callback("--failed-first", [o] { o->failed_first = true; },
                        "Run the tests that failed in the latest run first")
      ->group(order);
  app.add_flag("--rerun-failed", o->rerun_failed,
               "Run only the tests that failed in the latest run")
      ->group(order);
  const char* config = "Configuration";
  app.add_option("--config", o->config,
                 "Read this weft.toml (default: ./weft.toml or the nearest one "
                 "above)")
      ->group(config);
  app.add_flag("--no-config", o->no_config, "Read no weft.toml")->group(config);
  app.add_option("--jobs-from", o->jobs_from,
                 "Run the job specs (JSONL, as `weft list` prints them) in FILE, "
                 "or - for stdin, instead of finding tests; on a pipe, also "
                 "stop and bail control lines")
      ->group(config);
}

}  // namespace weft::runner
