// The history index: .weft/history.sqlite, built from the run logs in
// .weft/runs/ (the logs are the truth; the index can always be rebuilt).
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

struct sqlite3;

namespace weft::runner {

class History {
 public:
  History() = default;
  ~History();
  History(const History&) = delete;
  History& operator=(const History&) = delete;

  // Opens "weft_dir"/history.sqlite and indexes the logs of
  // "weft_dir"/runs/ it has not seen (or that grew). A missing index is
  // created; an unreadable or corrupt one is rebuilt from the logs. Never
  // fatal: problems go to *warnings and the index may stay closed.
  // "rebuild" starts from nothing.
  void Open(const std::string& weft_dir, bool rebuild,
            std::vector<std::string>* warnings);
  bool open() const { return db_ != nullptr; }

  // Expected duration per job name: the median of its last five final
  // attempts, in microseconds.
  std::map<std::string, int64_t> ExpectedDurations();
  // The latest indexed run, and the names of its jobs that failed (their
  // final attempt). Empty run id when there is none.
  std::set<std::string> FailedInLatestRun(std::string* run);

  int64_t runs() const { return runs_; }
  int64_t results() const { return results_; }

 private:
  bool Schema();
  bool IndexLog(const std::string& file, int64_t size, int64_t mtime);
  bool Exec(const char* sql);
  sqlite3* db_ = nullptr;
  std::string runs_dir_;
  int64_t runs_ = 0, results_ = 0;  // indexed by this Open()
};

}  // namespace weft::runner
