// The tuning loop: extracts a model's tasks and ties the tuner's parts together. The TaskScheduler
// picks a task, its SearchStrategy proposes candidates, the Builder compiles them ahead (--jobs), the
// Runner checks and times each one in an isolated worker, and every result is committed to the tuning
// database at once, so a run can be stopped and resumed. The reports are in tuner/report.h.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "importer/tensor.h"
#include "runtime/executor.h"
#include "tuner/runner.h"
#include "tuner/search_strategy.h"
#include "tuner/shard.h"
#include "tuner/task.h"

namespace tetra::tuner {

// A trial improves on a task's best when it is faster by at least this share; `early_stop` counts the
// trials in a row that do not.
constexpr double kMinImprovement = 0.01;
// "1%", as messages and help say it.
std::string min_improvement_text();

struct TuneOptions {
  std::string model;
  std::map<std::string, Shape> shapes;  // binds dynamic input dims
  std::string db_dir;
  dsl::TargetSpec target = dsl::host_target();  // tuned for; this machine must run it (dsl::runs_on_host),
                                                // be a GPU device here (device_program), or, with
                                                // `estimate`, be an AMD GPU arch
  // A GPU target's: tetra-device, which runs each candidate on the device, and the device's name, which
  // its records say they were measured on.
  std::string device_program, device_name;
  int trials = 64;             // measured records per task in total: earlier runs' and the default's included
  double time_budget_s = 0;    // 0: no limit
  Strategy strategy = Strategy::Evolution;
  int early_stop = 32;         // a task stops after this many trials without a kMinImprovement gain
  int repeats = 10;            // timed runs per candidate
  int threads = 0;
  double timeout_s = 120;      // per candidate, compile and check included
  int jobs = 1;                // candidates compiled at once (into kernel_cache), before they are timed one by one
  std::string kernel_cache;    // the on-disk kernel cache the parallel builds fill (required with jobs > 1)
  std::string worker;          // the tetra CLI, which has the `tune-worker` subcommand
  std::string log_path;        // one JSON line per trial
  std::string report_path;     // best-so-far against trials per task: SVG, or HTML with a table for *.html
  unsigned seed = 1;
  ActivationOptIn activations = ActivationOptIn::Exact;  // tune an opt-in's kernels (mark_activation_opt_in)
  ShardSpec shard;             // this process tunes shard i of N (tuner/shard.h); 0/1: the whole run
  // Rank candidates by the static estimate instead of timing them (tuner/estimate_runner.h): for an AMD
  // GPU this machine does not have. Records are stored as estimated; trials count estimated records.
  bool estimate = false;
  std::function<void(const std::string&)> progress;  // status lines for a person
};

struct TaskSummary {
  std::string key;   // workload key
  std::string node;  // first node with this workload
  int occurrences = 1;
  int trials = 0;    // measured in this run
  int earlier_trials = 0;  // measured records already in the database (they count toward --trials)
  int planned = 0;   // records this run (or shard) wants in total: --trials, or the shard's share of them
  int failed = 0;
  bool stopped_early = false;  // early_stop trials in a row without a kMinImprovement gain ended it
  double default_ms = 0;  // the template default's time (0 when it was measured in an earlier run)
  double best_ms = 0;     // best so far, earlier runs included
  std::string best_schedule;
  std::vector<double> best_so_far;  // after each trial of this run
};

// Candidates are checked and timed by an IsolatedRunner of `options.worker` (estimated by an
// EstimateRunner with `options.estimate`).
std::vector<TaskSummary> tune(const TuneOptions& options);
// The same with another runner (tests wrap the isolated one to make candidates fail).
std::vector<TaskSummary> tune(const TuneOptions& options, Runner& runner);

// The order an exhaustive run measures a task's candidates in: the task's default (the baseline), the
// other templates' defaults, then the rest of the space in SearchSpace::enumerate's order. A shard of a candidate split
// owns the indices of this order that are its own (tuner/shard.h).
std::vector<dsl::Schedule> exhaustive_order(const TuningTask& task, const SearchSpace& space,
                                            const dsl::TargetSpec& target);

// Where a run (or shard) stands, measuring nothing: per task the records already in the database, the
// records planned, and the best so far (`tetra tune --status`).
std::vector<TaskSummary> tuning_status(const TuneOptions& options);

}  // namespace tetra::tuner
