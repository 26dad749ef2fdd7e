// Shared option-parsing conventions for every weft executable. Include only
// from a main.cc: CLI11 is a heavy header.
#pragma once

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "limits.h"

namespace weft {

// Exit codes of DESIGN.md.
inline constexpr int kExitPass = 0;
inline constexpr int kExitFail = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitHarness = 3;
inline constexpr int kExitNoTests = 4;
inline constexpr int kExitInterrupted = 130;

// Parses argv into "app". Returns -1 to go on, or the exit code to return
// now: 0 after --help/--version, 2 with "prog: error: …" and a hint after a
// usage error.
inline int ParseArgs(CLI::App& app, int argc, char** argv) {
  app.set_version_flag("--version", std::string(WEFT_VERSION));
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    return kExitPass;
  } catch (const CLI::CallForVersion&) {
    std::fputs(fmt::format("{} {}\n", app.get_name(), WEFT_VERSION).c_str(),
               stdout);
    return kExitPass;
  } catch (const CLI::ParseError& e) {
    std::fputs(fmt::format("{}: error: {}\nTry '{} --help' for more "
                           "information.\n",
                           app.get_name(), e.what(), app.get_name())
                   .c_str(),
               stderr);
    return kExitUsage;
  }
  return -1;
}

// --env KEY=VALUE, repeatable, one value per use, for "what" ("the
// test's", "every test's").
inline CLI::Option* AddEnvOption(CLI::App& app, std::vector<std::string>* env,
                                 const std::string& what) {
  return app
      .add_option("--env", *env,
                  fmt::format("Set KEY=VALUE in {} environment (repeatable)", what))
      ->check([](const std::string& kv) {
        return kv.find('=') == std::string::npos || kv[0] == '='
                   ? std::string("must be KEY=VALUE")
                   : std::string();
      })
      ->allow_extra_args(false);
}

// The options of JobLimits (or of LimitFlags: the same, each given or
// not), declared once for every executable that takes them, in the group
// "Running tests" (weft test forwards that group to weft-runner).
template <class Limits>
void AddLimitOptions(CLI::App& app, Limits* l, const std::string& subject = "a test") {
  const char* group = "Running tests";
  app.add_option("--timeout", l->timeout_s,
                 fmt::format("Stop {} after SECONDS (TERM, then KILL); 0 = never "
                             "(default: 0)", subject))
      ->check(CLI::NonNegativeNumber)->group(group);
  app.add_option("--idle-timeout", l->idle_timeout_s,
                 fmt::format("Stop {} that prints nothing (on any stream) for "
                             "SECONDS; 0 = never (default: 0)", subject))
      ->check(CLI::NonNegativeNumber)->group(group);
  app.add_option("--exit-timeout", l->exit_timeout_s,
                 "After a test exits, stop reading output still held open "
                 "(by something it passed its pipes to) after SECONDS; the job "
                 "fails (default: 2)")
      ->check(CLI::PositiveNumber)->group(group);
  app.add_option("--kill-grace", l->kill_grace_s,
                 "Seconds between TERM and KILL when stopping a test (default: 5)")
      ->check(CLI::NonNegativeNumber)->group(group);
  app.add_flag_callback("--keep", [l] { l->keep_tmpdir = true; },
                        "Keep each test's TMPDIR after it passes (always kept "
                        "after a failure)")
      ->group(group);
  app.add_option_function<std::string>(
         "--leaks", [l](const std::string& v) { l->leaks_fail = v == "fail"; },
         "Processes a test leaves running: fail the job, or only warn "
         "(default: fail)")
      ->check(CLI::IsMember({"fail", "warn"}))->type_name("fail|warn")->group(group);
  app.add_option("--stdin", l->stdin_path,
                 "Every test's stdin (default: /dev/null)")->group(group);
}

}  // namespace weft
