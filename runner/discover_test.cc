#include <fmt/format.h>
#include "discover.h"

#include <doctest/doctest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

using namespace weft::runner;
namespace fs = std::filesystem;

namespace {
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/weft-discover-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
  void File(const std::string& rel, bool exec) {
    fs::create_directories(fs::path(path + "/" + rel).parent_path());
    std::ofstream(path + "/" + rel) << "#!/bin/sh\n";
    chmod((path + "/" + rel).c_str(), exec ? 0755 : 0644);
  }
};
}  // namespace

TEST_CASE("known extensions get their interpreter; weft.toml's win") {
  Interpreters all = DefaultInterpreters();
  auto cmd = [&](const std::string& path) {
    const auto* c = InterpreterFor(all, path);
    return c ? fmt::format("{}", fmt::join(*c, " ")) : std::string();
  };
  CHECK(cmd("t/a.t") == "perl");
  CHECK(cmd("a.pl") == "perl");
  CHECK(cmd("x/y.sh") == "sh");
  CHECK(cmd("y.py") == "python3");
  CHECK(cmd("y.js") == "node");
  CHECK(cmd("y.bats") == "bats");
  CHECK(cmd("dir.t/file") == "");
  CHECK(cmd("README") == "");
  all = DefaultInterpreters({{"t", {"perl", "-Ilib"}}, {"rb", {"ruby"}}, {"sh", {}}});
  CHECK(cmd("t/a.t") == "perl -Ilib");
  CHECK(cmd("a.rb") == "ruby");
  CHECK(cmd("a.sh") == "");  // empty: run the file itself
}

TEST_CASE("discovery finds executables and known extensions, sorted, hidden skipped") {
  TempDir d;
  d.File("b.t", false);
  d.File("a dir/é.sh", false);
  d.File("bin-test", true);
  d.File("README", false);
  d.File(".hidden.t", false);
  d.File(".git/hook.sh", true);
  d.File("sub/c.py", false);
  std::vector<JobSpec> jobs;
  std::vector<std::string> warnings;
  std::string err;
  REQUIRE(Discover({d.path}, DefaultInterpreters(), &jobs, &warnings, &err));
  std::vector<std::string> names;
  for (auto& j : jobs) names.push_back(j.name.substr(d.path.size() + 1));
  CHECK(names == std::vector<std::string>{"a dir/é.sh", "b.t", "bin-test", "sub/c.py"});
  // Interpreters are looked up in PATH once, at discovery.
  REQUIRE(jobs[1].argv.size() == 2);
  CHECK(jobs[1].argv[0].size() > 5);
  CHECK(jobs[1].argv[0].substr(jobs[1].argv[0].size() - 5) == "/perl");
  CHECK(jobs[1].argv[1] == d.path + "/b.t");
  CHECK(jobs[2].argv == std::vector<std::string>{d.path + "/bin-test"});
  CHECK(warnings.empty());
}

TEST_CASE("a dangling symlink is skipped with a warning, not silently") {
  TempDir d;
  REQUIRE(symlink("../nowhere/test", (d.path + "/gone").c_str()) == 0);
  std::vector<JobSpec> jobs;
  std::vector<std::string> warnings;
  std::string err;
  REQUIRE(Discover({d.path}, DefaultInterpreters(), &jobs, &warnings, &err));
  CHECK(jobs.empty());
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0].find("gone") != std::string::npos);
}

TEST_CASE("a missing path is an error naming it") {
  std::vector<JobSpec> jobs;
  std::vector<std::string> warnings;
  std::string err;
  CHECK_FALSE(Discover({"/nonexistent/weft"}, DefaultInterpreters(), &jobs, &warnings, &err));
  CHECK(err.find("/nonexistent/weft") != std::string::npos);
}

TEST_CASE("a file named explicitly is run even without a known extension") {
  TempDir d;
  d.File("data", false);
  std::vector<JobSpec> jobs;
  std::vector<std::string> warnings;
  std::string err;
  REQUIRE(Discover({d.path + "/data"}, DefaultInterpreters(), &jobs, &warnings, &err));
  REQUIRE(jobs.size() == 1);
  CHECK(jobs[0].argv == std::vector<std::string>{d.path + "/data"});
}
