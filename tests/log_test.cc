// Logs: never torn, compressed or not, whatever moment the chain dies at;
// and every reader reads both kinds the same way.
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <dirent.h>
#include <random>
#include <string>

#include "support.h"

using namespace weft::testing;

namespace {

bool Has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// The one log in DIR/.weft/runs.
std::string OnlyLog(const TempDir& d) {
  std::string dir = d.path() + "/.weft/runs";
  std::string found;
  if (DIR* dp = opendir(dir.c_str())) {
    while (dirent* e = readdir(dp))
      if (e->d_name[0] != '.') found = dir + "/" + e->d_name;
    closedir(dp);
  }
  return found;
}

// Every line of the (decompressed) log is a whole JSON object with a type.
std::string CheckLines(const std::string& log) {
  Result r = Run({"/usr/bin/python3", "-c",
                  "import json, subprocess, sys\n"
                  "p = sys.argv[1]\n"
                  "data = open(p, 'rb').read()\n"
                  "if p.endswith('.zst'):\n"
                  "    data = subprocess.run(['/usr/bin/zstd', '-dcq', p], capture_output=True).stdout\n"
                  "lines = data.split(b'\\n')\n"
                  "assert lines[-1] == b'', 'the log does not end with a newline'\n"
                  "for l in lines[:-1]:\n"
                  "    assert json.loads(l)['type'], l\n"
                  "print(len(lines) - 1)\n",
                  log});
  return r.code == 0 ? r.out : "bad: " + r.err;
}

}  // namespace

TEST_CASE("a compressed log replays like the live run, and the history reads it") {
  TempDir d;
  d.Write("t/a.sh", "echo 1..2; echo ok 1; echo 'not ok 2 - no'\n");
  d.Write("t/b.sh", "echo 1..1; echo ok 1\n");
  RunOptions o;
  o.cwd = d.path();
  Result live = Run({Bin("weft"), "test", "--zstd", "-j1"}, o);
  CHECK(live.code == 1);
  std::string log = OnlyLog(d);
  CHECK(log.size() > 10);
  CHECK(log.substr(log.size() - 10) == ".jsonl.zst");
  CHECK(d.Read(".weft/runs/" + log.substr(log.rfind('/') + 1)).substr(0, 4) ==
        "\x28\xB5\x2F\xFD");
  Result replay = Run({Bin("weft"), "replay"}, o);
  CHECK(replay.code == 1);
  CHECK(replay.out == live.out);
  Result json = Run({Bin("weft-render-json"), log});
  CHECK(Has(json.out, R"("verdict":"fail","exit":1,)"));
  // The history index reads compressed logs too.
  Result again = Run({Bin("weft"), "list", "--rerun-failed"}, o);
  CHECK(Has(again.out, R"("name":"t/a.sh")"));
  CHECK(!Has(again.out, R"("name":"t/b.sh")"));
}

TEST_CASE("the chain SIGKILLed at random moments: the log is always whole lines") {
  std::mt19937 random(20261123);
  for (bool zstd : {false, true}) {
    for (int round = 0; round < 4; ++round) {
      int delay_ms = std::uniform_int_distribution<int>(50, 1800)(random);
      CAPTURE(zstd);
      CAPTURE(delay_ms);
      TempDir d;
      // Output at a steady pace for three seconds.
      d.Write("t/steady.sh",
              "echo 1..1; i=0; while [ $i -lt 3000 ]; do echo \"# line $i\"; i=$((i+1));"
              " [ $((i % 100)) = 0 ] && sleep 0.1; done; echo ok 1\n");
      RunOptions o;
      o.cwd = d.path();
      o.new_group = true;
      std::vector<std::string> argv = {Bin("weft"), "test", "t"};
      if (zstd) argv.push_back("--zstd");
      Child weft(argv, o);
      usleep(static_cast<useconds_t>(delay_ms) * 1000);
      kill(-weft.pid(), SIGKILL);
      weft.Wait();
      std::string log = OnlyLog(d);
      if (log.empty()) continue;  // killed before the log was made
      std::string lines = CheckLines(log);
      CAPTURE(lines);
      CHECK(lines.rfind("bad", 0) != 0);
      // A compressed log holds what came up to a second before the kill.
      if (zstd && delay_ms > 1300) CHECK(std::stoi(lines) > 2);
      // Readers take the prefix: no summary, said plainly; no crash.
      Result shown = Run({Bin("weft-render-term"), log});
      CHECK(shown.code == 3);
      Result json = Run({Bin("weft-render-json"), log});
      CHECK(json.code == 0);
      if (lines == "0\n")
        CHECK(Has(json.out, R"("run":null)"));  // nothing had reached the file
      else
        CHECK(Has(json.out, R"("complete":false)"));
    }
  }
}
