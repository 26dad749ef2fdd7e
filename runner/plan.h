// The run's plan: which jobs, with which settings, in which order.
#pragma once

#include <weft/events/writer.h>

#include <string>
#include <string_view>
#include <vector>

#include "config.h"
#include "discover.h"
#include "runner.h"

namespace weft::runner {

// One layer over a job's settings: its limits, retries and env.
void ApplyLayer(const Override& layer, JobSpec* job);

// The layers a job's settings come from, lowest first: built-in defaults,
// weft.toml's top level, each [[override]] whose paths match (in file
// order), then the command line. Also sets the job's group (the first
// [[group]] whose paths match).
void ApplyLayers(const Config& config, const Override& cli, JobSpec* job);

// Finds the jobs (discovery under the paths, or the specs of --jobs-from
// when it is a regular file) and applies include/exclude and the layers.
// False with *err on a usage problem.
bool PlanJobs(const Options& o, const Config& config, std::vector<JobSpec>* jobs,
              std::vector<std::string>* warnings, std::string* err);

// Orders the jobs: "name" (by name, byte order), "shuffle" (by a hash of the seed and
// the name: the same seed gives the same order, and adding a job does not
// reorder the others), "duration" (longest expected first; jobs without
// history first of all, as they may be the longest). Stable.
void OrderJobs(const std::string& order, uint64_t seed, std::vector<JobSpec>* jobs);

// A job spec as one JSONL line ({"type":"job",…}, see docs/weft-runner.md).
void WriteJobSpec(events::JsonWriter& w, const JobSpec& job);
// Reads one; false with *err when it is not a valid job spec.
bool ParseJobSpec(std::string_view line, JobSpec* job, std::string* err);

}  // namespace weft::runner
