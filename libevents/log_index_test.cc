#include "weft/events/log_index.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sys/types.h>

#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "weft/events/event.h"
#include "weft/events/input.h"
#include "weft/events/writer.h"

using namespace weft::events;

namespace {

// A scratch directory, removed at the end.
struct Dir {
  std::string path;
  Dir() {
    char tmpl[] = "/tmp/weft-index-test-XXXXXX";
    REQUIRE(mkdtemp(tmpl));
    path = tmpl;
  }
  ~Dir() { std::filesystem::remove_all(path); }
};

std::string ReadFile(const std::string& path) {
  std::string data;
  int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) return data;
  char buf[65536];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) data.append(buf, static_cast<size_t>(n));
  close(fd);
  return data;
}

void Append(const std::string& path, std::string_view data) {
  int fd = open(path.c_str(), O_WRONLY | O_APPEND);
  REQUIRE(fd >= 0);
  REQUIRE(WriteAll(fd, data));
  close(fd);
}

// A run's lines: per job a job.start, a plan, asserts and comments, a
// job.end; a few lines that are no event; a summary and run.end.
std::vector<std::string> RunLines(int jobs, int asserts) {
  std::vector<std::string> lines = {R"({"type":"hello","run":"r","seq":0,"ts":1})"};
  for (int j = 1; j <= jobs; ++j) {
    std::string job = "\"job\":" + std::to_string(j);
    lines.push_back(R"({"type":"job.start","run":"r",)" + job + R"(,"seq":1,"ts":2})");
    lines.push_back(R"({"type":"plan","run":"r",)" + job + R"(,"seq":2,"ts":3,"count":1})");
    for (int a = 0; a < asserts; ++a) {
      lines.push_back(R"({"type":"assert","run":"r",)" + job + R"(,"seq":3,"ts":4,"ok":true,)" +
                      R"("description":")" + std::string(static_cast<size_t>(a % 200), 'd') + "\"}");
      if (a % 50 == 0) lines.push_back(R"({"type":"comment","run":"r",)" + job + R"(,"text":"c"})");
    }
    if (j % 7 == 0) lines.push_back("not an event, line " + std::to_string(j));
    lines.push_back(R"({"type":"job.end","run":"r",)" + job + R"(,"seq":9,"ts":5,"verdict":")" +
                    (j % 5 ? "pass" : "fail") + "\"}");
  }
  lines.push_back(R"({"type":"summary","run":"r","seq":1,"ts":6,"verdict":"fail"})");
  lines.push_back(R"({"type":"run.end","run":"r","seq":2,"ts":7})");
  return lines;
}

// Writes "lines" to "log" as weft-logger does: in batches, each listed in
// the index once it is in the log. Returns the log's size.
uint64_t WriteLog(const std::string& log, const std::vector<std::string>& lines,
                  size_t per_batch = 300) {
  int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  REQUIRE(fd >= 0);
  IndexWriter index;
  index.Start(log);
  uint64_t base = 0;
  std::string batch;
  for (size_t i = 0; i < lines.size(); ++i) {
    index.Line(batch.size(), lines[i], TypeOf(lines[i]));
    batch += lines[i] + "\n";
    if ((i + 1) % per_batch == 0 || i + 1 == lines.size()) {
      REQUIRE(WriteAll(fd, batch));
      std::string err;
      REQUIRE(index.Commit(base, batch, &err));
      base += batch.size();
      batch.clear();
    }
  }
  close(fd);
  index.Finish(base);
  return base;
}

std::vector<std::string> OfTypes(const std::vector<std::string>& lines,
                                 const std::vector<std::string>& types) {
  std::vector<std::string> out;
  for (const auto& l : lines)
    for (const auto& t : types)
      if (TypeOf(l) == t) out.push_back(l);
  return out;
}

// What a reader of "types" gets from ReadInput (its own filter applied).
std::vector<std::string> Read(const std::string& log, const std::vector<std::string>& types) {
  InputOptions in;
  in.path = log;
  in.types = types;
  LineReader reader;
  PumpHandlers h;
  std::vector<std::string> got;
  h.line = [&](std::string_view line) {
    for (const auto& t : types)
      if (TypeOf(line) == t) got.emplace_back(line);
  };
  std::string err;
  CHECK(ReadInput(in, reader, h, nullptr, &err) == PumpEnd::kEof);
  return got;
}

// How far the log's index serves "types" (0: it does not).
off_t Covered(const std::string& log, const std::vector<std::string>& types,
              size_t* lines = nullptr) {
  int fd = open(log.c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  IndexedLines indexed;
  off_t covered = indexed.Load(fd, log, types);
  if (lines) *lines = indexed.lines().size();
  for (auto l : indexed.lines()) CHECK(l.data()[l.size()] == '\n');
  close(fd);
  return covered;
}

// The log's modification time set "seconds" from its index's (a file's
// times come from a coarse clock: a write just after another may bear the
// same time).
void Redate(const std::string& log, int seconds) {
  struct stat st;
  REQUIRE(stat(IndexPath(log).c_str(), &st) == 0);
  struct timespec times[2] = {st.st_atim, st.st_mtim};
  times[1].tv_sec += seconds;
  REQUIRE(utimensat(AT_FDCWD, log.c_str(), times, 0) == 0);
}
void Backdate(const std::string& log) { Redate(log, -1); }

const std::vector<std::string> kOutline = {"job.end", "summary"};

// No index beside "log": a reader of kOutline gets its lines from the log.
void CheckNoIndex(const std::string& log, const std::vector<std::string>& lines) {
  CHECK(access(IndexPath(log).c_str(), F_OK) != 0);
  CHECK(Read(log, kOutline) == OfTypes(lines, kOutline));
}

}  // namespace

TEST_CASE("an index is named beside its log, hidden") {
  CHECK(IndexPath(".weft/runs/20261202T000000Z-abcdef.jsonl") ==
        ".weft/runs/.20261202T000000Z-abcdef.jsonl.idx");
  CHECK(IndexPath("run.jsonl") == ".run.jsonl.idx");
  for (const char* bulk : {"assert", "attachment", "comment", "deps", "diag", "note", "output",
                           "parse_error", "pragma", "subtest", "timing"}) {
    CAPTURE(bulk);
    CHECK(IsBulkType(bulk));
  }
  for (const char* landmark : {"hello", "run.start", "job.start", "plan", "job.end", "timeout",
                               "bail", "counts", "summary", "run.end", "warning", "", "asserts"})
    CHECK(!IsBulkType(landmark));
}

TEST_CASE("a long log's index gives the lines of the types asked for, as the log has them") {
  Dir d;
  std::string log = d.path + "/run.jsonl";
  auto lines = RunLines(400, 120);
  uint64_t size = WriteLog(log, lines);
  REQUIRE(size > kIndexFrom);
  std::string index = ReadFile(IndexPath(log));
  CHECK(index.starts_with("weft-log-index 1 bulk=assert,"));
  CHECK(index.ends_with("= " + std::to_string(size) + "\n"));
  CHECK(index.size() < size / 20);  // landmarks only
  size_t n = 0;
  CHECK(Covered(log, kOutline, &n) == static_cast<off_t>(size));
  CHECK(n == 401);
  CHECK(Read(log, kOutline) == OfTypes(lines, kOutline));
  for (std::vector<std::string> types :
       {std::vector<std::string>{"hello"}, {"job.start", "plan"}, {"run.end", "job.end"}, {"nothing"}}) {
    CAPTURE(types[0]);
    CHECK(Covered(log, types) == static_cast<off_t>(size));
    CHECK(Read(log, types) == OfTypes(lines, types));
  }
  // A bulk type is not in it: the log is read.
  CHECK(Covered(log, {"job.end", "assert"}) == 0);
  CHECK(Read(log, {"job.end", "assert"}) == OfTypes(lines, {"job.end", "assert"}));
  // (Through .weft/latest's link too.)
  std::string link = d.path + "/latest";
  REQUIRE(symlink("run.jsonl", link.c_str()) == 0);
  CHECK(Covered(link, kOutline) == static_cast<off_t>(size));
}

TEST_CASE("a short log has no index: it is read as fast as one would be") {
  Dir d;
  std::string log = d.path + "/run.jsonl";
  auto lines = RunLines(20, 10);
  WriteLog(log, lines);
  CheckNoIndex(log, lines);
}

TEST_CASE("an index is used only as far as it goes, and only while its log agrees with it") {
  Dir d;
  std::string log = d.path + "/run.jsonl";
  auto lines = RunLines(400, 120);
  uint64_t size = WriteLog(log, lines);
  std::string index = ReadFile(IndexPath(log));
  auto expected = OfTypes(lines, kOutline);

  SUBCASE("torn anywhere (a logger killed mid-write): the rest of the log is read") {
    std::mt19937 random(20261202);
    for (int round = 0; round < 20; ++round) {
      size_t cut = std::uniform_int_distribution<size_t>(0, index.size() - 1)(random);
      CAPTURE(cut);
      std::filesystem::resize_file(IndexPath(log), cut);
      CHECK(Covered(log, kOutline) < static_cast<off_t>(size));
      CHECK(Read(log, kOutline) == expected);
      int fd = open(IndexPath(log).c_str(), O_WRONLY | O_TRUNC);
      REQUIRE(WriteAll(fd, index));
      close(fd);
    }
  }
  SUBCASE("the log went on past it (its logger was killed): the rest is read") {
    std::string more = R"({"type":"job.end","run":"r","job":999,"verdict":"fail"})";
    Append(log, more + "\nno event\n" + more + "\n");
    CHECK(Covered(log, kOutline) == static_cast<off_t>(size));
    expected.push_back(more);
    expected.push_back(more);
    CHECK(Read(log, kOutline) == expected);
  }
  SUBCASE("the log changed after its index was written: the log is read") {
    // An assert line becomes a job.end of the same length.
    std::string all = ReadFile(log);
    size_t at = all.find(R"({"type":"assert","run":"r","job":3,)");
    REQUIRE(at != std::string::npos);
    std::string forged = R"({"type":"job.end","run":"r","job":3,"verdict":"fail","x":")";
    size_t end = all.find('\n', at);
    forged += std::string(end - at - forged.size() - 2, 'x') + "\"}";
    REQUIRE(forged.size() == end - at);
    int fd = open(log.c_str(), O_WRONLY);
    REQUIRE(pwrite(fd, forged.data(), forged.size(), static_cast<off_t>(at)) ==
            static_cast<ssize_t>(forged.size()));
    close(fd);
    Redate(log, 1);
    CHECK(Covered(log, kOutline) == 0);
    auto read = Read(log, kOutline);
    CHECK(read.size() == expected.size() + 1);
    // Made to look older than its index, the log is taken at the index's
    // word: which shows the index is what a reader goes by.
    Backdate(log);
    CHECK(Covered(log, kOutline) == static_cast<off_t>(size));
    CHECK(Read(log, kOutline) == expected);
  }
  SUBCASE("a line the index copies differs from the log's: the log is read") {
    // The last landmark (always compared): run.end's ts changes.
    std::string all = ReadFile(log);
    size_t at = all.rfind(R"("ts":7)");
    REQUIRE(at != std::string::npos);
    int fd = open(log.c_str(), O_WRONLY);
    REQUIRE(pwrite(fd, "8", 1, static_cast<off_t>(at + 5)) == 1);
    close(fd);
    Backdate(log);
    CHECK(Covered(log, {"run.end"}) == 0);
    auto read = Read(log, {"run.end"});
    REQUIRE(read.size() == 1);
    CHECK(read[0].find(R"("ts":8)") != std::string::npos);
  }
  SUBCASE("the log is shorter than the index says: the log is read") {
    std::filesystem::resize_file(log, size - 10);
    Backdate(log);
    CHECK(Covered(log, kOutline) == 0);
    CHECK(Read(log, kOutline) == expected);  // (run.end, cut, is not wanted)
  }
  SUBCASE("another log's index: the log is read") {
    std::string other = d.path + "/other.jsonl";
    auto other_lines = RunLines(401, 119);
    WriteLog(other, other_lines);
    std::filesystem::copy_file(IndexPath(other), IndexPath(log),
                               std::filesystem::copy_options::overwrite_existing);
    Backdate(log);
    CHECK(Covered(log, kOutline) == 0);
    CHECK(Read(log, kOutline) == expected);
  }
  SUBCASE("garbage for an index: the log is read, nothing breaks") {
    std::mt19937 random(7);
    for (int round = 0; round < 10; ++round) {
      std::string junk = round % 2 ? index.substr(0, 200) : "";
      for (int i = 0; i < 5000; ++i) junk.push_back(static_cast<char>(random()));
      int fd = open(IndexPath(log).c_str(), O_WRONLY | O_TRUNC);
      REQUIRE(WriteAll(fd, junk));
      close(fd);
      Backdate(log);
      CHECK(Covered(log, kOutline) == 0);
      CHECK(Read(log, kOutline) == expected);
    }
  }
}

TEST_CASE("a new log of the same name removes the old one's index") {
  Dir d;
  std::string log = d.path + "/run.jsonl";
  WriteLog(log, RunLines(400, 120));
  REQUIRE(access(IndexPath(log).c_str(), F_OK) == 0);
  auto lines = RunLines(20, 10);
  WriteLog(log, lines);  // short: no index of its own
  CheckNoIndex(log, lines);
}

TEST_CASE("a log of landmarks only (a run of tiny tests) gets no index") {
  Dir d;
  std::string log = d.path + "/run.jsonl";
  auto lines = RunLines(40000, 0);
  REQUIRE(WriteLog(log, lines) > kIndexFrom);
  CheckNoIndex(log, lines);
}

TEST_CASE("the bulk types an index names are the ones the logger leaves out") {
  Dir d;
  std::string log = d.path + "/run.jsonl";
  WriteLog(log, RunLines(400, 120));
  std::string index = ReadFile(IndexPath(log));
  std::string header = index.substr(0, index.find('\n'));
  CHECK(header ==
        "weft-log-index 1 bulk=assert,attachment,comment,deps,diag,note,output,parse_error,"
        "pragma,subtest,timing");
  std::string list = header.substr(header.find('=') + 1) + ",";
  for (size_t at = 0, comma; (comma = list.find(',', at)) != std::string::npos; at = comma + 1) {
    CAPTURE(list.substr(at, comma - at));
    CHECK(IsBulkType(list.substr(at, comma - at)));
  }
}

TEST_CASE("every line from an index has its padding, even at the end of a page") {
  // An index whose size is a multiple of the page: its last line's
  // padding is not in the mapping (reading it would fault), so it is a copy.
  Dir d;
  std::string log = d.path + "/run.jsonl";
  auto lines = RunLines(400, 120);
  uint64_t size = WriteLog(log, lines);
  std::string index = ReadFile(IndexPath(log));
  size_t header_end = index.find('\n');
  size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  size_t pad = page - index.size() % page;
  if (pad < 2) pad += page;
  // (A made-up bulk type lengthens the header.)
  index.insert(header_end, "," + std::string(pad - 1, 'z'));
  REQUIRE(index.size() % page == 0);
  int fd = open(IndexPath(log).c_str(), O_WRONLY | O_TRUNC);
  REQUIRE(WriteAll(fd, index));
  close(fd);
  Backdate(log);
  std::vector<std::string> types = {"run.end"};  // the index's last record
  int log_fd = open(log.c_str(), O_RDONLY);
  REQUIRE(log_fd >= 0);
  IndexedLines indexed;
  CHECK(indexed.Load(log_fd, log, types) == static_cast<off_t>(size));
  REQUIRE(indexed.lines().size() == 1);
  // Where the index is mapped (from /proc/self/maps): a line handed out
  // from the mapping must end kPadding bytes before the mapping does.
  uintptr_t map_start = 0, map_end = 0;
  std::string maps = ReadFile("/proc/self/maps");
  for (size_t at = 0, nl; (nl = maps.find('\n', at)) != std::string::npos; at = nl + 1) {
    std::string line = maps.substr(at, nl - at);
    if (!line.ends_with(IndexPath(log))) continue;
    map_start = std::stoull(line.substr(0, line.find('-')), nullptr, 16);
    map_end = std::stoull(line.substr(line.find('-') + 1), nullptr, 16);
  }
  REQUIRE(map_end > map_start);
  for (auto l : indexed.lines()) {
    auto p = reinterpret_cast<uintptr_t>(l.data());
    if (p >= map_start && p < map_end) CHECK(p + l.size() + kPadding <= map_end);
    CHECK(l.data()[l.size()] == '\n');
  }
  close(log_fd);
}

TEST_CASE("a FIFO where the index would be is no index, and no wait") {
  Dir d;
  std::string log = d.path + "/run.jsonl";
  auto lines = RunLines(400, 120);
  WriteLog(log, lines);
  std::filesystem::remove(IndexPath(log));
  REQUIRE(mkfifo(IndexPath(log).c_str(), 0600) == 0);
  CHECK(Covered(log, kOutline) == 0);
  CHECK(Read(log, kOutline) == OfTypes(lines, kOutline));
}
