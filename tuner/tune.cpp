#include "tuner/tune.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <thread>

#include "dsl/target.h"
#include "runtime/executor.h"
#include "importer/error.h"
#include "runtime/model.h"
#include "schedules/qmatmul_templates.h"
#include "tuner/database.h"
#include "tuner/measure.h"
#include "tuner/task.h"

namespace tetra::tuner {
namespace {

using Clock = std::chrono::steady_clock;

struct TaskState {
  TuningTask task;
  TaskSummary summary;
  SearchSpace space;
  std::vector<Measured> history;
  std::set<std::string> seen;
  int since_improvement = 0;
  bool done = false;
  SearchState search;  // the strategy's memory between proposals (xgb: its cost model)
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
  const WorkloadDesc desc = workload_desc(w);
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

}  // namespace

std::vector<TaskSummary> tune(const TuneOptions& opt) {
  check(opt.trials >= 1, ErrorKind::Invalid, "--trials must be at least 1");
  check(opt.jobs >= 1, ErrorKind::Invalid, "--jobs must be at least 1");
  check(opt.repeats >= 1 && opt.repeats <= 100000, ErrorKind::Invalid,
        "--repeats must be from 1 to 100000, got " + std::to_string(opt.repeats));
  // A candidate is compiled, checked and timed within the timeout: under a second, every one would fail.
  check(opt.timeout_s >= 1 && opt.timeout_s <= 86400, ErrorKind::Invalid,
        "--timeout must be from 1 to 86400 seconds, got " + std::to_string(opt.timeout_s));
  check(opt.jobs == 1 || !opt.kernel_cache.empty(), ErrorKind::Invalid, "--jobs above 1 needs a kernel cache folder");
  check(!opt.worker.empty(), ErrorKind::Invalid, "no tune worker given");
  auto say = [&](const std::string& line) {
    if (opt.progress) opt.progress(line);
  };
  Graph graph = load_model(opt.model, opt.shapes);
  if (opt.int8_activations) mark_int8_activations(graph);
  // Tuning measures real runs: the target's code must run here.
  const dsl::TargetSpec& target = opt.target;
  dsl::Status runs = dsl::runs_on_host(target);
  check(runs.ok(), ErrorKind::Unsupported, "cannot tune for " + target.name + ": " + (runs.ok() ? "" : runs.failure().describe()));
  std::vector<TuningTask> tasks = extract_tasks(graph, target);
  TuningDatabase db = TuningDatabase::open(opt.db_dir, target.name, dsl::toolchain_id());
  std::error_code ec;
  std::filesystem::create_directories(opt.db_dir, ec);  // the log and the report often live beside it
  if (!db.note().empty()) say(db.note());
  std::ofstream log;
  if (!opt.log_path.empty()) {
    log.open(opt.log_path, std::ios::app);
    check(log.good(), ErrorKind::Io, "cannot write the trial log '" + opt.log_path + "'");
  }

  std::vector<TaskState> states;
  for (const TuningTask& t : tasks) {
    SearchSpace space = t.conv ? SearchSpace(*t.conv, t.workload, target) : SearchSpace(t.workload, target);
    TaskState s{t, {}, std::move(space), {}, {}, 0, false, {}};
    s.summary.key = t.key();
    s.summary.node = t.node;
    s.summary.occurrences = t.occurrences;
    // Resumption: what the database already holds for this workload is neither measured again nor lost,
    // and counts toward --trials. An estimate is not a measurement: it neither blocks measuring its
    // schedule nor enters the best so far.
    for (const TuningRecord& r : db.records()) {
      if (r.workload.key != s.summary.key || !r.measured) continue;
      ++s.summary.earlier_trials;
      s.seen.insert(r.schedule.to_string());
      s.history.push_back({r.schedule, r.failed() ? INFINITY : r.median_ms});
      if (!r.failed() && (s.summary.best_ms == 0 || r.median_ms < s.summary.best_ms)) {
        s.summary.best_ms = r.median_ms;
        s.summary.best_schedule = r.schedule.to_string();
      }
    }
    // (Conv tasks start cold: their records' dims are not a GEMM's.)
    if (opt.strategy == Strategy::Xgb && !t.conv) s.search.prior = prior_measurements(db, t.workload);
    s.done = s.summary.earlier_trials >= opt.trials;
    states.push_back(std::move(s));
  }
  say("tuning " + std::to_string(states.size()) + " task(s) of " + opt.model + " for " + target.name + ", " +
      std::to_string(opt.trials) + " trials each (earlier ones in the database included), strategy " +
      strategy_name(opt.strategy));

  std::mt19937_64 rng(opt.seed);
  auto start = Clock::now();
  auto elapsed_s = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
  int total_trials = 0;
  auto trials_left = [&](const TaskState& s) { return opt.trials - s.summary.earlier_trials - s.summary.trials; };

  // A candidate for `s`: the template default first (the baseline every speed-up is measured
  // against), then the strategy's proposals; nullopt when the space is exhausted.
  auto next_candidate = [&](TaskState& s) -> std::optional<dsl::Schedule> {
    dsl::Schedule fallback = default_schedule(s.task, target);
    std::optional<dsl::Schedule> candidate;
    if (!s.seen.count(fallback.to_string())) candidate = fallback;
    else candidate = propose(opt.strategy, s.space, s.history, s.seen, rng, &s.search);
    if (candidate) s.seen.insert(candidate->to_string());
    return candidate;
  };

  auto record = [&](TaskState& s, const dsl::Schedule& candidate, const MeasureResult& r) {
    TaskSummary& sum = s.summary;
    TuningRecord rec;
    rec.workload = s.task.desc();
    rec.target = target.name;
    rec.toolchain = dsl::toolchain_id();
    rec.schedule = candidate;
    rec.median_ms = r.median_ms;
    rec.min_ms = r.min_ms;
    rec.max_ms = r.max_ms;
    rec.runs = r.runs;
    rec.measured_on = host_cpu_model();
    rec.threads = opt.threads;
    rec.measured = true;
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
    bool improved = r.ok && (sum.best_ms == 0 || r.median_ms < sum.best_ms * 0.99);
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
        std::to_string(opt.trials) + ": " + status +
        "; best " + format_ms(sum.best_ms) + "; ETA " + std::to_string(static_cast<int>(per_trial * left)) + " s");
    if (trials_left(s) <= 0 || s.since_improvement >= opt.early_stop) s.done = true;
  };

  // Up to `count` trials of one task. With jobs > 1 the candidates are first compiled in parallel
  // worker processes into the kernel cache; then each is checked and timed alone, loading its code.
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
    auto job_for = [&](const dsl::Schedule& c) {
      MeasureJob job;
      if (s.task.conv) job.qconv = s.task.conv;
      else job.qmatmul = s.task.workload;  // resolved for the target by extract_tasks
      job.target = target.name;
      job.schedule = c;
      job.repeats = opt.repeats;
      job.threads = opt.threads;
      if (opt.jobs > 1) job.kernel_cache = opt.kernel_cache;
      return job;
    };
    std::vector<MeasureResult> built(candidates.size());
    if (opt.jobs > 1) {
      auto t0 = Clock::now();
      for (size_t first = 0; first < candidates.size(); first += size_t(opt.jobs)) {
        std::vector<std::thread> builders;
        for (size_t i = first; i < std::min(candidates.size(), first + size_t(opt.jobs)); ++i)
          builders.emplace_back([&, i] {
            MeasureJob job = job_for(candidates[i]);
            job.build_only = true;
            built[i] = measure_isolated(job, opt.worker, opt.timeout_s);
          });
        for (std::thread& t : builders) t.join();
      }
      say("  [" + s.summary.key + "] built " + std::to_string(candidates.size()) + " candidates with " +
          std::to_string(opt.jobs) + " jobs in " +
          format_ms(std::chrono::duration<double, std::milli>(Clock::now() - t0).count()));
    }
    for (size_t i = 0; i < candidates.size() && !s.done; ++i) {
      if (opt.jobs > 1 && !built[i].ok) {
        record(s, candidates[i], built[i]);
        continue;
      }
      MeasureJob job = job_for(candidates[i]);
      if (s.summary.trials == 1) job.fault = opt.inject_fault;  // each task's second candidate
      record(s, candidates[i], measure_isolated(job, opt.worker, opt.timeout_s));
    }
  };

  // Task scheduler: one warm-up round over every task, then the task with the most model time
  // (occurrences x best time) that still improves, a batch at a time.
  const int batch = std::max(4, opt.jobs);
  for (TaskState& s : states)
    if (!s.done) run_trials(s, std::min(batch, opt.trials));
  while (opt.time_budget_s <= 0 || elapsed_s() < opt.time_budget_s) {
    TaskState* next = nullptr;
    for (TaskState& s : states)
      if (!s.done && (!next || s.summary.occurrences * s.summary.best_ms > next->summary.occurrences * next->summary.best_ms))
        next = &s;
    if (!next) break;
    run_trials(*next, batch);
  }

  std::vector<TaskSummary> out;
  for (const TaskState& s : states) out.push_back(s.summary);
  if (!opt.report_path.empty()) {
    std::ofstream report(opt.report_path);
    check(report.good(), ErrorKind::Io, "cannot write the report '" + opt.report_path + "'");
    std::string title = "tetra tune " + opt.model + " (" + strategy_name(opt.strategy) + ")";
    const std::string& path = opt.report_path;
    bool html = path.size() >= 5 && path.compare(path.size() - 5, 5, ".html") == 0;
    report << (html ? tuning_report_html(out, title) : convergence_svg(out, title));
  }
  return out;
}

namespace {

std::string html_escape(const std::string& text) {
  std::string out;
  for (char c : text) out += c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '&' ? "&amp;" : c == '"' ? "&quot;" : std::string(1, c);
  return out;
}

}  // namespace

std::string tuning_report_html(const std::vector<TaskSummary>& tasks, const std::string& title) {
  std::ostringstream h;
  h << "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>" << html_escape(title) << "</title>\n"
    << "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:right}td:first-child,"
       "td:last-child{text-align:left}</style></head><body>\n<h1>"
    << html_escape(title) << "</h1>\n<table>\n<tr><th>task</th><th>trials</th><th>failed</th><th>default ms</th>"
    << "<th>best ms</th><th>speed-up</th><th>best schedule</th></tr>\n";
  for (const TaskSummary& t : tasks) {
    h << std::fixed << "<tr><td>" << html_escape(t.key) << "</td><td>" << t.trials << "</td><td>" << t.failed
      << "</td><td>" << std::setprecision(4) << t.default_ms << "</td><td>" << t.best_ms << "</td><td>"
      << std::setprecision(2) << (t.default_ms > 0 && t.best_ms > 0 ? t.default_ms / t.best_ms : 1.0)
      << "x</td><td><code>" << html_escape(t.best_schedule) << "</code></td></tr>\n";
  }
  h << "</table>\n<h2>Best so far against trials</h2>\n" << convergence_svg(tasks, title) << "</body></html>\n";
  return h.str();
}

std::string convergence_svg(const std::vector<TaskSummary>& tasks, const std::string& title) {
  const int width = 720, height = 420, left = 60, right = 200, top = 40, bottom = 50;
  size_t max_trials = 1;
  for (const TaskSummary& t : tasks) max_trials = std::max(max_trials, t.best_so_far.size());
  const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};
  std::ostringstream s;
  s << "<svg xmlns='http://www.w3.org/2000/svg' width='" << width << "' height='" << height
    << "' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n"
    << "<text x='" << left << "' y='20' font-size='14'>" << title << "</text>\n";
  int pw = width - left - right, ph = height - top - bottom;
  s << "<line x1='" << left << "' y1='" << top + ph << "' x2='" << left + pw << "' y2='" << top + ph
    << "' stroke='black'/>\n<line x1='" << left << "' y1='" << top << "' x2='" << left << "' y2='" << top + ph
    << "' stroke='black'/>\n<text x='" << left + pw / 2 - 20 << "' y='" << height - 15 << "'>trials</text>\n"
    << "<text x='10' y='" << top - 8 << "'>speed-up over first</text>\n";
  // y: speed-up over the task's first measurement, 1.0 at the bottom, the best speed-up at the top.
  double top_speedup = 1.1;
  for (const TaskSummary& t : tasks)
    for (double v : t.best_so_far)
      if (v > 0 && std::isfinite(v) && t.best_so_far.front() > 0)
        top_speedup = std::max(top_speedup, t.best_so_far.front() / v * 1.05);
  for (int tick = 0; tick <= 4; ++tick) {
    double v = 1 + (top_speedup - 1) * tick / 4;
    int y = top + ph - static_cast<int>(ph * tick / 4.0);
    s << "<text x='" << 20 << "' y='" << y + 4 << "'>" << std::fixed << std::setprecision(2) << v << "x</text>\n";
  }
  for (size_t i = 0; i < tasks.size(); ++i) {
    const TaskSummary& t = tasks[i];
    if (t.best_so_far.empty() || !(t.best_so_far.front() > 0)) continue;
    s << "<polyline fill='none' stroke='" << colors[i % 8] << "' stroke-width='2' points='";
    for (size_t k = 0; k < t.best_so_far.size(); ++k) {
      double speedup = t.best_so_far[k] > 0 ? t.best_so_far.front() / t.best_so_far[k] : 1;
      double x = left + pw * (max_trials == 1 ? 0.0 : static_cast<double>(k) / (max_trials - 1));
      double y = top + ph - ph * (speedup - 1) / (top_speedup - 1);
      s << x << "," << y << " ";
    }
    s << "'/>\n<text x='" << left + pw + 8 << "' y='" << top + 14 * (i + 1) << "' fill='" << colors[i % 8] << "'>"
      << t.key.substr(0, 30) << "</text>\n";
  }
  s << "</svg>\n";
  return s.str();
}

}  // namespace tetra::tuner
