// Shared option-parsing conventions for every weft executable. Include only
// from a main.cc: CLI11 is a heavy header.
#pragma once

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdio>
#include <string>

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

}  // namespace weft
