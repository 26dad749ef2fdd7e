#include "history.h"

#include <fmt/format.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>
#include <weft/events/event.h>
#include <weft/events/input.h>
#include <weft/events/line_reader.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fcntl.h>

namespace weft::runner {

namespace {

constexpr const char* kSchemaVersion = "1";

// A prepared statement, finalised at scope end.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) {
    if (sqlite3_prepare_v2(db, sql, -1, &s_, nullptr) != SQLITE_OK) s_ = nullptr;
  }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  explicit operator bool() const { return s_ != nullptr; }
  sqlite3_stmt* get() { return s_; }
  void Bind(int i, std::string_view text) {
    sqlite3_bind_text(s_, i, text.data(), static_cast<int>(text.size()),
                      SQLITE_TRANSIENT);
  }
  void Bind(int i, int64_t v) { sqlite3_bind_int64(s_, i, v); }
  bool Step() { return sqlite3_step(s_) == SQLITE_ROW; }
  bool Done() {
    int rc = sqlite3_step(s_);
    sqlite3_reset(s_);
    return rc == SQLITE_DONE;
  }
  std::string Text(int col) {
    auto* t = sqlite3_column_text(s_, col);
    return t ? std::string(reinterpret_cast<const char*>(t),
                           static_cast<size_t>(sqlite3_column_bytes(s_, col)))
             : std::string();
  }
  int64_t Int(int col) { return sqlite3_column_int64(s_, col); }

 private:
  sqlite3_stmt* s_ = nullptr;
};

}  // namespace

History::~History() {
  if (db_) sqlite3_close(db_);
}

bool History::Exec(const char* sql) {
  return sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) == SQLITE_OK;
}

bool History::Schema() {
  if (!Exec("PRAGMA journal_mode=WAL;") && !Exec("PRAGMA journal_mode=DELETE;"))
    return false;
  Exec("PRAGMA synchronous=NORMAL;");
  Exec("PRAGMA busy_timeout=5000;");
  if (!Exec("CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);"
            "CREATE TABLE IF NOT EXISTS logs(file TEXT PRIMARY KEY, size INTEGER, "
            "  mtime INTEGER, run TEXT);"
            "CREATE TABLE IF NOT EXISTS runs(run TEXT PRIMARY KEY, file TEXT, "
            "  started_us INTEGER);"
            "CREATE TABLE IF NOT EXISTS results(run TEXT, job INTEGER, name TEXT, "
            "  attempt INTEGER, verdict TEXT, duration_us INTEGER, retry INTEGER, "
            "  flaky INTEGER, ts INTEGER);"
            "CREATE INDEX IF NOT EXISTS results_name ON results(name, ts);"
            "CREATE INDEX IF NOT EXISTS results_run ON results(run);"))
    return false;
  Stmt get(db_, "SELECT value FROM meta WHERE key='schema'");
  if (!get) return false;
  if (get.Step()) return get.Text(0) == kSchemaVersion;
  Stmt put(db_, "INSERT INTO meta VALUES('schema', ?)");
  if (!put) return false;
  put.Bind(1, std::string_view(kSchemaVersion));
  return put.Done();
}

void History::Open(const std::string& weft_dir, bool rebuild,
                   std::vector<std::string>* warnings) {
  namespace fs = std::filesystem;
  std::string runs_dir = runs_dir_ = weft_dir + "/runs";
  std::string path = weft_dir + "/history.sqlite";
  std::error_code ec;
  if (!fs::is_directory(runs_dir, ec) && !fs::exists(path, ec)) return;  // nothing yet
  fs::create_directories(weft_dir, ec);
  for (int tries = 0; tries < 2; ++tries) {
    if (rebuild || tries > 0) {
      for (const char* suffix : {"", "-wal", "-shm", "-journal"})
        fs::remove(path + suffix, ec);
    }
    if (sqlite3_open_v2(path.c_str(), &db_,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        nullptr) == SQLITE_OK &&
        Schema())
      break;
    if (db_) {
      if (tries == 0)
        warnings->push_back(fmt::format("{}: {}; rebuilding it from the logs", path,
                                        sqlite3_errmsg(db_)));
      sqlite3_close(db_);
      db_ = nullptr;
    }
  }
  if (!db_) {
    warnings->push_back(fmt::format("{}: cannot be made; running without history", path));
    return;
  }
  // The logs to index: new, or grown since (a run that was still going).
  std::vector<std::pair<std::string, std::pair<int64_t, int64_t>>> todo;
  {
    Stmt known(db_, "SELECT size, mtime FROM logs WHERE file=?");
    for (const auto& entry : fs::directory_iterator(runs_dir, ec)) {
      std::string name = entry.path().filename().string();
      if (!name.ends_with(".jsonl") && !name.ends_with(".jsonl.zst")) continue;
      struct stat st;
      if (stat(entry.path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      // In nanoseconds: two runs often end within one second, and the
      // latest run is the log written last.
      int64_t size = st.st_size,
              mtime = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
      known.Bind(1, std::string_view(name));
      bool same = known.Step() && known.Int(0) == size && known.Int(1) == mtime;
      sqlite3_reset(known.get());
      if (!same) todo.push_back({name, {size, mtime}});
    }
  }
  std::sort(todo.begin(), todo.end());
  if (todo.empty()) return;
  Exec("BEGIN");
  for (const auto& [name, sm] : todo) {
    if (!IndexLog(name, sm.first, sm.second)) {
      warnings->push_back(fmt::format("{}/{}: cannot index it: {}", runs_dir, name,
                                      sqlite3_errmsg(db_)));
      break;
    }
  }
  if (!Exec("COMMIT")) {
    warnings->push_back(fmt::format("{}: {}; running without history", path,
                                    sqlite3_errmsg(db_)));
    Exec("ROLLBACK");
  }
}

bool History::IndexLog(const std::string& name, int64_t size, int64_t mtime) {
  events::InputOptions in;
  in.path = runs_dir_ + "/" + name;  // .jsonl or .jsonl.zst: ReadInput tells
  in.types = {"run.start", "job.end"};  // (from the log's index, if it has one)
  events::LineReader reader(64 * 1024);
  events::Fields f;
  std::string run;
  int64_t started = 0;
  Stmt drop(db_, "DELETE FROM results WHERE run=(SELECT run FROM logs WHERE file=?)");
  Stmt insert(db_, "INSERT INTO results VALUES(?,?,?,?,?,?,?,?,?)");
  if (!drop || !insert) return false;
  drop.Bind(1, std::string_view(name));
  drop.Done();
  bool ok = true;
  events::PumpHandlers h;
  h.line = [&](std::string_view line) {
    std::string_view type = events::TypeOf(line);
    if (type == "run.start") {
      if (f.Load(events::Event(line))) {
        run = std::string(f.Str("run").value_or(""));
        started = f.Int("ts").value_or(0);
      }
    } else if (type == "job.end" && ok && !run.empty() && f.Load(events::Event(line))) {
      insert.Bind(1, std::string_view(run));
      insert.Bind(2, f.Int("job").value_or(-1));
      insert.Bind(3, f.Str("name").value_or(""));
      insert.Bind(4, f.Int("attempt").value_or(1));
      insert.Bind(5, f.Str("verdict").value_or("fail"));
      insert.Bind(6, f.Int("duration_us").value_or(0));
      insert.Bind(7, static_cast<int64_t>(f.Bool("retry").value_or(false)));
      insert.Bind(8, static_cast<int64_t>(f.Bool("flaky").value_or(false)));
      insert.Bind(9, f.Int("ts").value_or(0));
      if (!insert.Done()) ok = false;
      ++results_;
    }
  };
  std::string err;
  // A log that cannot be read (gone meanwhile, damaged) indexes as far as
  // it goes.
  events::ReadInput(in, reader, h, nullptr, &err);
  if (!ok) return false;
  Stmt log(db_, "INSERT OR REPLACE INTO logs VALUES(?,?,?,?)");
  Stmt runs(db_, "INSERT OR REPLACE INTO runs VALUES(?,?,?)");
  if (!log || !runs) return false;
  log.Bind(1, std::string_view(name));
  log.Bind(2, size);
  log.Bind(3, mtime);
  log.Bind(4, std::string_view(run));
  if (!log.Done()) return false;
  if (!run.empty()) {
    runs.Bind(1, std::string_view(run));
    runs.Bind(2, std::string_view(name));
    runs.Bind(3, started);
    if (!runs.Done()) return false;
    ++runs_;
  }
  return true;
}

std::map<std::string, int64_t> History::ExpectedDurations() {
  std::map<std::string, int64_t> expected;
  if (!db_) return expected;
  Stmt q(db_, "SELECT name, duration_us FROM results WHERE retry=0 "
              "ORDER BY name, ts DESC");
  if (!q) return expected;
  std::string name;
  std::vector<int64_t> last;
  auto done = [&] {
    if (name.empty() || last.empty()) return;
    std::sort(last.begin(), last.end());
    expected[name] = last[last.size() / 2];
  };
  while (q.Step()) {
    std::string n = q.Text(0);
    if (n != name) {
      done();
      name = n;
      last.clear();
    }
    if (last.size() < 5) last.push_back(q.Int(1));
  }
  done();
  return expected;
}

std::set<std::string> History::FailedInLatestRun(std::string* run) {
  std::set<std::string> failed;
  run->clear();
  if (!db_) return failed;
  // The latest log written (a merged log is the newest of its runs, though
  // it starts with the earliest of them); on a tie of the clock's grain,
  // the run that started last.
  Stmt latest(db_,
              "SELECT l.run FROM logs l LEFT JOIN runs r ON r.run = l.run WHERE l.run != '' "
              "ORDER BY l.mtime DESC, r.started_us DESC, l.file DESC LIMIT 1");
  if (!latest || !latest.Step()) return failed;
  *run = latest.Text(0);
  Stmt q(db_, "SELECT name FROM results WHERE run=? AND retry=0 AND verdict='fail'");
  if (!q) return failed;
  q.Bind(1, std::string_view(*run));
  while (q.Step()) failed.insert(q.Text(0));
  return failed;
}

}  // namespace weft::runner
