#include "tuner/tune.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "dsl/core/amd_arch.h"
#include "dsl/target.h"
#include "importer/error.h"
#include "runtime/executor.h"
#include "runtime/model.h"
#include "schedules/qmatmul_templates.h"
#include "tuner/builder.h"
#include "tuner/database.h"
#include "tuner/estimate_runner.h"
#include "tuner/measure.h"
#include "tuner/report.h"
#include "tuner/task.h"
#include "tuner/task_scheduler.h"

namespace tetra::tuner {
namespace {

using Clock = std::chrono::steady_clock;

struct TaskState {
  TuningTask task;
  TaskSummary summary;
  SearchSpace space;
  std::unique_ptr<SearchStrategy> strategy;  // this task's: it may learn between proposals
  std::vector<Measured> history;
  std::set<std::string> seen;
  int since_improvement = 0;
  bool done = false;
  // The exhaustive candidate split of a shard: each point's index in the space's enumeration order.
  std::map<std::string, int64_t> candidate_index;
};

std::string format_ms(double ms) {
  std::ostringstream s;
  s.precision(3);
  s << std::fixed << ms << " ms";
  return s.str();
}

// The database's measurements of the workloads most like `w` (same op, format and epilogue, another
// shape; the nearest kPriorWorkloads of them), which warm-start the xgb strategy's cost model.
std::vector<PriorMeasurement> prior_measurements(const TuningDatabase& db, const dsl::QMatMulWorkload& w) {
  constexpr size_t kPriorWorkloads = 8;
  const WorkloadDesc desc = workload_desc(w, db.target());
  std::map<std::string, double> distance;  // workload key -> distance
  for (const TuningRecord& r : db.records()) {
    double d = workload_distance(desc, r.workload);
    if (r.workload.key != desc.key && r.measured && std::isfinite(d)) distance[r.workload.key] = d;
  }
  std::vector<std::pair<double, std::string>> nearest;
  for (const auto& [key, d] : distance) nearest.push_back({d, key});
  std::sort(nearest.begin(), nearest.end());
  if (nearest.size() > kPriorWorkloads) nearest.resize(kPriorWorkloads);
  std::set<std::string> keep;
  for (const auto& n : nearest) keep.insert(n.second);
  std::vector<PriorMeasurement> out;
  for (const TuningRecord& r : db.records()) {
    if (!keep.count(r.workload.key) || !r.measured) continue;
    dsl::QMatMulWorkload other = w;  // the same format and epilogue: only the shape differs
    other.M = r.workload.dims.at("M");
    other.K = r.workload.dims.at("K");
    other.N = r.workload.dims.at("N");
    out.push_back({other, {r.schedule, r.failed() ? INFINITY : r.median_ms}});
  }
  return out;
}

void check_options(const TuneOptions& opt) {
  check(opt.trials >= 1, ErrorKind::Invalid, "--trials must be at least 1");
  check(opt.jobs >= 1, ErrorKind::Invalid, "--jobs must be at least 1");
  check(opt.repeats >= 1 && opt.repeats <= 100000, ErrorKind::Invalid,
        "--repeats must be from 1 to 100000, got " + std::to_string(opt.repeats));
  // A candidate is compiled, checked and timed within the timeout: under a second, every one would fail.
  check(opt.timeout_s >= 1 && opt.timeout_s <= 86400, ErrorKind::Invalid,
        "--timeout must be from 1 to 86400 seconds, got " + std::to_string(opt.timeout_s));
  check(opt.jobs == 1 || !opt.kernel_cache.empty(), ErrorKind::Invalid, "--jobs above 1 needs a kernel cache folder");
  check(!opt.worker.empty(), ErrorKind::Invalid, "no tune worker given");
  if (opt.estimate) {
    // Estimates are for GPUs this machine does not have: their kernels are built, never run.
    check(opt.target.family == dsl::TargetFamily::Hip, ErrorKind::Unsupported,
          "--estimate ranks kernels for AMD GPUs (hip:ARCH); " + opt.target.name + " is measured for real");
    dsl::Status known = dsl::check_amd_arch(opt.target.gpu_arch);
    check(known.ok(), ErrorKind::Unsupported, known.ok() ? "" : known.failure().describe());
    check(opt.jobs == 1, ErrorKind::Invalid, "--estimate builds one candidate at a time: drop --jobs");
    return;
  }
  if (!opt.target.is_cpu() && !opt.device_program.empty()) {
    // Measured on a GPU of this machine, found by the caller (cmd_tune.cpp asks tetra-device).
    check(opt.jobs == 1, ErrorKind::Invalid,
          "--jobs builds CPU kernels ahead; a GPU candidate is built where it runs: drop --jobs");
    check(opt.activations != ActivationOptIn::Int8, ErrorKind::Unsupported,
          "GPU tuning measures float32 and float16 activations, not int8 ones: drop --int8-activations");
    return;
  }
  // Tuning measures real runs: the target's code must run here.
  dsl::Status runs = dsl::runs_on_host(opt.target);
  check(runs.ok(), ErrorKind::Unsupported,
        "cannot tune for " + opt.target.name + ": " + (runs.ok() ? "" : runs.failure().describe()) +
            (opt.target.family == dsl::TargetFamily::Hip ? " (rank its candidates with --estimate)" : ""));
}

// The model's tasks.
std::vector<TuningTask> model_tasks(const TuneOptions& opt) {
  Graph graph = load_model(opt.model, opt.shapes);
  mark_activation_opt_in(graph, opt.activations);
  return extract_tasks(graph, opt.target);
}

// The split of the run that every shard computes alike from the model's task list.
ShardPlan shard_plan(const TuneOptions& opt, const std::vector<TuningTask>& tasks) {
  std::vector<std::string> keys;
  for (const TuningTask& t : tasks) keys.push_back(t.key());
  return plan_shard(keys, opt.shard);
}

// The tasks this run (or shard) tunes, each with what the database already holds for it: that is
// neither measured again nor lost, and counts toward the task's planned records. Only records of this
// run's kind count: an estimate is not a measurement, so it neither blocks measuring its schedule nor
// enters the best so far of a measuring run (and the other way round for an estimating run).
std::vector<TaskState> task_states(const TuneOptions& opt, const std::vector<TuningTask>& tasks,
                                   const TuningDatabase& db, const ShardPlan& plan) {
  std::vector<TaskState> states;
  for (const TuningTask& t : tasks) {
    if (!plan.owns_task(t.key())) continue;
    SearchSpace space = t.conv ? SearchSpace(*t.conv, t.workload, opt.target) : SearchSpace(t.workload, opt.target);
    // The xgb strategy's cost model starts from similar workloads' records (conv tasks start cold:
    // their records' dims are not a GEMM's).
    std::vector<PriorMeasurement> prior;
    if (opt.strategy == Strategy::Xgb && !t.conv) prior = prior_measurements(db, t.workload);
    TaskState s{t, {}, std::move(space), make_search_strategy(opt.strategy, std::move(prior)), {}, {}, 0, false, {}};
    s.summary.key = t.key();
    s.summary.node = t.node;
    s.summary.occurrences = t.occurrences;
    s.summary.planned = plan.trial_share(opt.trials);
    for (const TuningRecord& r : db.records()) {
      if (r.workload.key != s.summary.key || r.measured == opt.estimate) continue;
      ++s.summary.earlier_trials;
      s.seen.insert(r.schedule.to_string());
      s.history.push_back({r.schedule, r.failed() ? INFINITY : r.median_ms});
      if (!r.failed() && (s.summary.best_ms == 0 || r.median_ms < s.summary.best_ms)) {
        s.summary.best_ms = r.median_ms;
        s.summary.best_schedule = r.schedule.to_string();
      }
    }
    s.done = s.summary.earlier_trials >= s.summary.planned;
    states.push_back(std::move(s));
  }
  return states;
}

// What every search measures first: the task's default (the baseline), then the other templates'.
std::vector<dsl::Schedule> first_candidates(const TuningTask& task, const SearchSpace& space,
                                            const dsl::TargetSpec& target) {
  std::vector<dsl::Schedule> first = {default_schedule(task, target)};
  for (const dsl::Schedule& d : space.defaults())
    if (d.to_string() != first[0].to_string()) first.push_back(d);
  return first;
}
}  // namespace

std::vector<dsl::Schedule> exhaustive_order(const TuningTask& task, const SearchSpace& space,
                                            const dsl::TargetSpec& target) {
  std::vector<dsl::Schedule> order = first_candidates(task, space, target);
  std::set<std::string> first;
  for (const dsl::Schedule& s : order) first.insert(s.to_string());
  for (dsl::Schedule& s : space.enumerate(kExhaustiveLimit))
    if (!first.count(s.to_string())) order.push_back(std::move(s));
  return order;
}

std::vector<TaskSummary> tuning_status(const TuneOptions& opt) {
  std::vector<TuningTask> tasks = model_tasks(opt);
  TuningDatabase db = TuningDatabase::open(opt.db_dir, opt.target.name, dsl::toolchain_id());
  std::vector<TaskSummary> out;
  for (const TaskState& s : task_states(opt, tasks, db, shard_plan(opt, tasks))) out.push_back(s.summary);
  return out;
}

std::vector<TaskSummary> tune(const TuneOptions& opt) {
  if (opt.estimate) {
    std::filesystem::path work =
        std::filesystem::temp_directory_path() / ("tetra_estimate_" + std::to_string(::getpid()));
    EstimateRunner runner(work.string());
    std::vector<TaskSummary> out = tune(opt, runner);
    std::error_code ec;
    std::filesystem::remove_all(work, ec);
    return out;
  }
  IsolatedRunner runner(opt.worker, opt.timeout_s);
  return tune(opt, runner);
}

std::string min_improvement_text() { return std::to_string(std::lround(kMinImprovement * 100)) + "%"; }

std::vector<TaskSummary> tune(const TuneOptions& opt, Runner& runner) {
  check_options(opt);
  auto say = [&](const std::string& line) {
    if (opt.progress) opt.progress(line);
  };
  const dsl::TargetSpec& target = opt.target;
  std::vector<TuningTask> tasks = model_tasks(opt);
  const ShardPlan plan = shard_plan(opt, tasks);
  TuningDatabase db = TuningDatabase::open(opt.db_dir, target.name, dsl::toolchain_id());
  std::error_code ec;
  std::filesystem::create_directories(opt.db_dir, ec);  // the log and the report often live beside it
  if (!db.note().empty()) say(db.note());
  std::ofstream log;
  if (!opt.log_path.empty()) {
    log.open(opt.log_path, std::ios::app);
    check(log.good(), ErrorKind::Io, "cannot write the trial log '" + opt.log_path + "'");
  }

  std::vector<TaskState> states = task_states(opt, tasks, db, plan);
  std::string shard_note;
  if (opt.shard.count > 1)
    shard_note = " (shard " + opt.shard.to_string() + " of the model's " + std::to_string(tasks.size()) + " task(s), " +
                 (plan.split() == ShardSplit::Tasks ? "split by task" : "split by candidate") + ")";
  say("tuning " + std::to_string(states.size()) + " task(s) of " + opt.model + shard_note + " for " + target.name +
      ", " + std::to_string(plan.trial_share(opt.trials)) +
      " trials each (earlier ones in the database included), strategy " + strategy_name(opt.strategy));

  std::mt19937_64 rng(plan.seed(opt.seed));
  auto start = Clock::now();
  auto elapsed_s = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
  int total_trials = 0;
  auto trials_left = [&](const TaskState& s) { return s.summary.planned - s.summary.earlier_trials - s.summary.trials; };

  // Exhaustive search split by candidate: this shard measures the candidates whose index in the order
  // of an unsharded exhaustive run it owns, so N shards' first shares measure exactly what one process
  // would. Sampled strategies search with the shard's own seed instead, each measuring its default.
  const bool split_candidates = plan.split() == ShardSplit::Candidates && opt.strategy == Strategy::Exhaustive;
  auto owned = [&](TaskState& s, const dsl::Schedule& candidate) {
    if (!split_candidates) return true;
    if (s.candidate_index.empty()) {
      std::vector<dsl::Schedule> order = exhaustive_order(s.task, s.space, target);
      for (size_t i = 0; i < order.size(); ++i) s.candidate_index[order[i].to_string()] = int64_t(i);
    }
    auto it = s.candidate_index.find(candidate.to_string());
    return it != s.candidate_index.end() && plan.owns_candidate(it->second);
  };

  // A candidate for `s`: the task's default first (the baseline every speed-up is measured against),
  // then the other templates' defaults, then the strategy's proposals; nullopt when the space is
  // exhausted.
  auto next_candidate = [&](TaskState& s) -> std::optional<dsl::Schedule> {
    while (true) {
      std::optional<dsl::Schedule> candidate;
      for (const dsl::Schedule& first : first_candidates(s.task, s.space, target))
        if (!s.seen.count(first.to_string())) {
          candidate = first;
          break;
        }
      if (!candidate) candidate = s.strategy->propose(s.space, s.history, s.seen, rng);
      if (!candidate) return std::nullopt;
      s.seen.insert(candidate->to_string());
      if (owned(s, *candidate)) return candidate;
    }
  };

  auto record = [&](TaskState& s, const dsl::Schedule& candidate, const MeasureResult& r) {
    TaskSummary& sum = s.summary;
    TuningRecord rec;
    rec.workload = s.task.desc(target.name);
    rec.target = target.name;
    rec.toolchain = dsl::toolchain_id();
    rec.schedule = candidate;
    rec.median_ms = r.median_ms;
    rec.min_ms = r.min_ms;
    rec.max_ms = r.max_ms;
    rec.runs = r.runs;
    rec.measured_on = opt.estimate               ? estimate_device_note(target.gpu_arch)
                      : !opt.device_name.empty() ? opt.device_name
                                                 : host_cpu_model();
    rec.threads = opt.estimate ? 0 : opt.threads;
    rec.measured = !opt.estimate;
    rec.timestamp = utc_timestamp();
    rec.error = r.ok ? "" : r.error;
    db.commit({rec});

    ++sum.trials;
    ++total_trials;
    double time = r.ok ? r.median_ms : INFINITY;
    s.history.push_back({candidate, time});
    if (!r.ok) ++sum.failed;
    dsl::Schedule fallback = default_schedule(s.task, target);
    if (candidate.to_string() == fallback.to_string() && r.ok) sum.default_ms = r.median_ms;
    bool improved = r.ok && (sum.best_ms == 0 || r.median_ms < sum.best_ms * (1 - kMinImprovement));
    if (r.ok && (sum.best_ms == 0 || r.median_ms < sum.best_ms)) {
      sum.best_ms = r.median_ms;
      sum.best_schedule = candidate.to_string();
    }
    s.since_improvement = improved ? 0 : s.since_improvement + 1;
    sum.best_so_far.push_back(sum.best_ms);
    if (log.is_open()) {
      nlohmann::json line = {{"task", sum.key}, {"trial", sum.trials}, {"strategy", strategy_name(opt.strategy)},
                             {"schedule", candidate.to_json()}, {"result", r.to_json()}, {"best_ms", sum.best_ms},
                             {"elapsed_s", elapsed_s()}};
      log << line.dump() << "\n" << std::flush;
    }
    std::string status = r.ok ? format_ms(r.median_ms) : "failed: " + r.error;
    double per_trial = elapsed_s() / total_trials;
    int left = 0;
    for (const TaskState& t : states)
      if (!t.done) left += trials_left(t);
    say("  [" + sum.key + "] trial " + std::to_string(sum.earlier_trials + sum.trials) + "/" +
        std::to_string(sum.planned) + ": " + status +
        "; best " + format_ms(sum.best_ms) + "; ETA " + std::to_string(static_cast<int>(per_trial * left)) + " s");
    if (trials_left(s) > 0 && s.since_improvement >= opt.early_stop) {
      sum.stopped_early = true;
      say("  [" + sum.key + "] stopped early: " + std::to_string(opt.early_stop) + " trials without a " +
          min_improvement_text() + " improvement (--early-stop)");
    }
    if (trials_left(s) <= 0 || sum.stopped_early) s.done = true;
  };

  // Up to `count` trials of one task. With jobs > 1 the candidates are first compiled in parallel
  // worker processes into the kernel cache; then each is checked and timed alone, loading its code.
  const Builder builder(opt.worker, opt.timeout_s, opt.jobs);
  auto run_trials = [&](TaskState& s, int count) {
    std::vector<dsl::Schedule> candidates;
    while (int(candidates.size()) < std::min(count, trials_left(s))) {
      std::optional<dsl::Schedule> c = next_candidate(s);
      if (!c) break;
      candidates.push_back(*c);
    }
    if (candidates.empty()) {
      s.done = true;
      say("  " + s.summary.key + ": search space exhausted");
      return;
    }
    std::vector<MeasureJob> jobs;
    for (const dsl::Schedule& c : candidates) {
      MeasureJob job;
      if (s.task.conv) job.qconv = s.task.conv;
      else job.qmatmul = s.task.workload;  // resolved for the target by extract_tasks
      job.target = target.name;
      job.device_program = opt.device_program;
      job.schedule = c;
      job.repeats = opt.repeats;
      job.threads = opt.threads;
      if (opt.jobs > 1) job.kernel_cache = opt.kernel_cache;
      jobs.push_back(job);
    }
    std::vector<BuildResult> built(jobs.size());
    if (opt.jobs > 1) {
      auto t0 = Clock::now();
      built = builder.build(jobs);
      say("  [" + s.summary.key + "] built " + std::to_string(candidates.size()) + " candidates with " +
          std::to_string(opt.jobs) + " jobs in " +
          format_ms(std::chrono::duration<double, std::milli>(Clock::now() - t0).count()));
    }
    for (size_t i = 0; i < candidates.size() && !s.done; ++i) {
      if (!built[i].ok()) {  // a failed build is a failed trial, not timed
        MeasureResult failed;
        failed.error = built[i].error;
        record(s, candidates[i], failed);
        continue;
      }
      record(s, candidates[i], runner.run(jobs[i]));
    }
  };

  // The task scheduler picks where each batch goes; the time budget stops what follows the warm-up round.
  const int batch = std::max(4, opt.jobs);
  TaskScheduler scheduler;
  auto progress = [&] {
    std::vector<TaskProgress> tasks;
    for (const TaskState& s : states) tasks.push_back({s.summary.occurrences, s.summary.best_ms, s.done});
    return tasks;
  };
  while (std::optional<size_t> next = scheduler.next_task(progress())) {
    if (!scheduler.warming_up() && opt.time_budget_s > 0 && elapsed_s() >= opt.time_budget_s) break;
    run_trials(states[*next], batch);
  }
  // One rewrite of records.json per run, not per trial: the folder is left as one file for git and `db`.
  if (total_trials > 0) db.compact();

  std::vector<TaskSummary> out;
  for (const TaskState& s : states) out.push_back(s.summary);
  if (!opt.report_path.empty())
    write_tuning_report(opt.report_path, out, "tetra tune " + opt.model + " (" + strategy_name(opt.strategy) + ")");
  return out;
}

}  // namespace tetra::tuner
