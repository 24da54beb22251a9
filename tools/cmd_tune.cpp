// tetra tune: search schedules for a model's int4 kernels on this machine and keep the best in a
// tuning database; `tune-worker` is the isolated process that builds and times one candidate.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iomanip>
#include <iostream>

#include "dsl/object_cache.h"
#include "dsl/target.h"
#include "importer/error.h"
#include "tools/cli_util.h"
#include "tools/commands.h"
#include "tuner/measure.h"
#include "tuner/tune.h"

namespace tetra::cli {
namespace {

constexpr const char* kTestFaultVariable = "TETRA_TEST_WORKER_FAULT";  // "crash", "hang" or "wrong"

struct TuneCliOptions {
  tuner::TuneOptions tune;
  std::string target = "host";
  std::string strategy = "evolution";
  std::vector<std::string> shapes;
};

std::string this_executable() {
  char path[4096];
  ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
  check(n > 0, ErrorKind::Io, "cannot find the tetra executable for the tuning workers");
  return std::string(path, n);
}

void tune(TuneCliOptions& opt) {
  // Tuning measures real runs: a target this machine cannot run is refused.
  auto target = dsl::parse_runnable_target(opt.target);
  check(target.ok(), ErrorKind::Invalid, "--target: " + (target.ok() ? "" : target.failure().describe()));
  opt.tune.target = target.value();
  for (const std::string& s : opt.shapes) opt.tune.shapes.insert(parse_shape_binding(s));
  opt.tune.strategy = tuner::parse_strategy(opt.strategy);
  opt.tune.worker = this_executable();
  opt.tune.progress = [](const std::string& line) { std::cerr << line << "\n" << std::flush; };
  std::vector<tuner::TaskSummary> tasks = tuner::tune(opt.tune);
  std::cout << "\n" << std::left << std::setw(60) << "task" << std::right << std::setw(8) << "trials" << std::setw(8)
            << "failed" << std::setw(12) << "default ms" << std::setw(10) << "best ms" << std::setw(9) << "speedup"
            << "\n";
  for (const tuner::TaskSummary& t : tasks) {
    std::cout << std::left << std::setw(60) << t.key.substr(0, 59) << std::right << std::setw(8) << t.trials
              << std::setw(8) << t.failed << std::fixed << std::setprecision(3) << std::setw(12) << t.default_ms
              << std::setw(10) << t.best_ms << std::setw(8) << std::setprecision(2)
              << (t.default_ms > 0 && t.best_ms > 0 ? t.default_ms / t.best_ms : 1.0) << "x\n";
  }
  std::cout << "records in " << opt.tune.db_dir << "\n";
}

}  // namespace

void add_tune_command(CLI::App& app) {
  auto opt = std::make_shared<TuneCliOptions>();
  CLI::App* cmd = app.add_subcommand("tune", "Search schedules for a model's int4 kernels and store the best");
  cmd->add_option("model", opt->tune.model, "ONNX model file")->required();
  cmd->add_option("--db", opt->tune.db_dir, "tuning database folder (created if missing)")->required();
  cmd->add_option("--target", opt->target,
                  "host (default) or a target this machine runs, such as x86-64-avx2 on an AVX-512 CPU "
                  "(tuning measures real runs here); records are stored under its name");
  cmd->add_option("--trials", opt->tune.trials, "measured records per task in total, those already in the database and the default schedule's included "
                  "(default 64; a resumed run measures the rest)");
  cmd->add_option("--time-budget", opt->tune.time_budget_s, "stop after this many seconds (default: none)");
  cmd->add_option("--strategy", opt->strategy, "random, exhaustive, evolution (default) or xgb (XGBoost cost model)");
  cmd->add_option("--early-stop", opt->tune.early_stop, "stop a task after this many trials without improvement");
  cmd->add_option("--repeats", opt->tune.repeats, "timed runs per candidate (default 10)");
  add_threads_option(cmd, opt->tune.threads);
  cmd->add_option("--timeout", opt->tune.timeout_s, "seconds before a candidate is killed (default 120)");
  cmd->add_option("--jobs", opt->tune.jobs,
                  "candidates compiled at once in worker processes, before each is timed alone (default 1)");
  opt->tune.kernel_cache = dsl::default_kernel_cache_dir();
  cmd->add_option("--kernel-cache", opt->tune.kernel_cache, "where --jobs builds put compiled candidates");
  cmd->add_option("--shape", opt->shapes, "NAME=D0,D1,... binds a dynamic input shape (repeatable)");
  cmd->add_option("--log", opt->tune.log_path, "append one JSON line per trial to this file");
  cmd->add_option("--report", opt->tune.report_path,
                  "write best-so-far against trials per task: an SVG, or for F.html a page with a table of the tasks too");
  cmd->add_option("--seed", opt->tune.seed, "seed of the search");
  cmd->add_flag("--int8-activations", opt->tune.int8_activations, kInt8ActivationsHelp);
  cmd->callback([opt] { tune(*opt); });

  auto job = std::make_shared<std::string>();
  CLI::App* worker = app.add_subcommand("tune-worker", "builds, checks and times one candidate (internal)");
  worker->group("");
  worker->add_option("job", *job, "the job as JSON")->required();
  worker->callback([job] {
    tuner::MeasureResult r;
    try {
      dsl::Result<tuner::MeasureJob> parsed = tuner::MeasureJob::from_json(nlohmann::json::parse(*job));
      if (parsed) {
        // Tests make a worker crash, hang or compute a wrong result through its environment, so that
        // neither the tuner's options nor its jobs carry test hooks.
        const char* fault = std::getenv(kTestFaultVariable);
        r = tuner::measure_here(parsed.value(), fault ? fault : "");
      } else {
        r.error = "malformed job: " + parsed.failure().describe();
      }
    } catch (const std::exception& e) {
      r.ok = false;
      r.error = e.what();
    }
    std::cout << tuner::worker_result_line(r) << std::flush;
  });
}

}  // namespace tetra::cli
