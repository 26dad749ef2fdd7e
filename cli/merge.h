// weft merge: logs of several runs or shards as one run.
#pragma once

#include <string>
#include <vector>

namespace weft::cli {

// Reads the logs (.jsonl or .jsonl.zst) and writes one run: a new run id,
// a run.start spanning them (its "merged" names the runs), every job's
// events with job ids renumbered after the logs before it, a run.end, and
// the counts and summary weft-overlord makes of the whole. To stdout, or
// to "output" (whole or not at all). Returns 0, 2 (a log cannot be read)
// or 3 (the output cannot be written).
int Merge(const std::vector<std::string>& logs, const std::string& output,
          const std::vector<std::string>& argv);

}  // namespace weft::cli
