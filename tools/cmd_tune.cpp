// tetra tune: search schedules for a model's int4 kernels on this machine and keep the best in a
// tuning database; `tune-worker` is the isolated process that builds and times one candidate.
#include <sys/prctl.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "dsl/object_cache.h"
#include "dsl/process.h"
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
  std::string shard;        // --shard i/N
  bool status = false;      // --status: where the run stands, measuring nothing
  int shards = 0;           // --shards N: print (or with --slurm submit) the N shard commands and the merge
  bool slurm = false;
  std::string sbatch_args;  // extra sbatch arguments, split at spaces
};

// A GPU target measured for real on this machine's device (cli_util.h).
void use_gpu_device(TuneCliOptions& opt) {
  const GpuDeviceInfo device =
      find_gpu_device(opt.target, "to run the candidates", " (rank its candidates without the GPU: --estimate)");
  opt.target = device.target;
  opt.tune.device_program = device.program;
  opt.tune.device_name = device.name;
}

// The folder of shard i's database in a distributed run into DB: DB/shards/i.
std::string shard_db(const std::string& db, const std::string& index) { return db + "/shards/" + index; }

// `tetra tune` for shard INDEX (a number, or a shell variable such as $SLURM_ARRAY_TASK_ID) of
// opt.shards, with this run's options, as a shell command line.
std::string shard_command(const TuneCliOptions& opt, const std::string& index) {
  const tuner::TuneOptions& t = opt.tune;
  std::vector<std::string> argv = {this_executable(), "tune", t.model, "--target", opt.target, "--trials",
                                   std::to_string(t.trials), "--strategy", opt.strategy, "--seed", std::to_string(t.seed),
                                   "--early-stop", std::to_string(t.early_stop), "--repeats", std::to_string(t.repeats),
                                   "--timeout", std::to_string(int(t.timeout_s)), "--jobs", std::to_string(t.jobs)};
  if (t.threads > 0) argv.insert(argv.end(), {"--threads", std::to_string(t.threads)});
  if (t.time_budget_s > 0) argv.insert(argv.end(), {"--time-budget", std::to_string(t.time_budget_s)});
  for (const std::string& s : opt.shapes) argv.insert(argv.end(), {"--shape", s});
  if (t.activations != ActivationOptIn::Exact) argv.push_back(activation_flag(t.activations));
  if (t.estimate) argv.push_back("--estimate");
  // The shard's own folder and index stay outside the quoting, so that a shell variable expands. Each
  // shard logs its trials beside its records, so a run's merged database can be checked against them.
  std::string folder = dsl::describe_command({shard_db(t.db_dir, "")}) + index;
  return dsl::describe_command(argv) + " --db " + folder + " --shard " + index + "/" + std::to_string(opt.shards) +
         " --log " + folder + "/trials.jsonl";
}

std::string merge_command(const TuneCliOptions& opt) {
  std::vector<std::string> argv = {this_executable(), "db", "merge", opt.tune.db_dir};
  for (int i = 0; i < opt.shards; ++i) argv.push_back(shard_db(opt.tune.db_dir, std::to_string(i)));
  return dsl::describe_command(argv);
}

void write_script(const std::string& path, const std::string& what, const std::string& body) {
  std::ofstream f(path);
  f << "#!/bin/sh\n# " << what << "\n" << body;
  check(f.good(), ErrorKind::Io, "cannot write " + path);
  std::filesystem::permissions(path, std::filesystem::perms::owner_exec, std::filesystem::perm_options::add);
}

// How many times an array task runs its shard when the shard is killed.
constexpr int kShardAttempts = 3;

// The body of a Slurm array task's script. Slurm requeues a task (--requeue) when its node fails, but a
// task whose program a signal killed (kill -9, the OOM killer, a crash) is FAILED, and the merge would
// never run: so the script runs a killed shard again, which resumes where it stopped. Any other
// failure (a bad option, a model it cannot read) fails the task at once, and so does SIGTERM (status
// 143): it is how Slurm ends a task (scancel, a requeue, the time limit), the script with it.
std::string shard_script(const TuneCliOptions& opt) {
  const std::string attempts = std::to_string(kShardAttempts);
  return "for attempt in $(seq " + attempts + "); do\n"
         "  " + shard_command(opt, "\"$SLURM_ARRAY_TASK_ID\"") + " && exit 0\n"
         "  status=$?\n"
         "  [ $status -gt 128 ] && [ $status != 143 ] || exit $status\n"
         "  echo \"tetra: shard $SLURM_ARRAY_TASK_ID was killed (status $status) in attempt $attempt of " + attempts + "\" >&2\n"
         "done\n"
         "exit $status\n";
}

// Runs sbatch --parsable with `args` and returns the job id it prints.
std::string submit(std::vector<std::string> args) {
  args.insert(args.begin(), {"sbatch", "--parsable"});
  dsl::ProgramRun run = dsl::run_program(args);
  check(run.status != -1, ErrorKind::Unsupported,
        "--slurm: cannot run sbatch (is Slurm installed here?); without --slurm, --shards prints the commands");
  check(run.ok(), ErrorKind::Io, dsl::describe_command(args) + " failed: " + run.output);
  // The id is the last line (`ID` or `ID;CLUSTER`); sbatch may warn before it.
  std::string line, last;
  for (std::istringstream lines(run.output); std::getline(lines, line);)
    if (!line.empty()) last = line;
  std::string id = last.substr(0, last.find(';'));
  check(!id.empty() && id.find_first_not_of("0123456789") == std::string::npos, ErrorKind::Io,
        "sbatch printed no job id: " + run.output);
  return id;
}

// --shards N: the N shard commands and the merge, printed to paste into a batch script or GNU parallel,
// or (--slurm) submitted as a job array and a merge job that runs when every shard succeeded.
void distribute(const TuneCliOptions& opt) {
  const std::string& db = opt.tune.db_dir;
  const std::string n = std::to_string(opt.shards);
  if (!opt.slurm) {
    std::cout << "# the shards, each on any machine that can run them (one database folder each):\n";
    for (int i = 0; i < opt.shards; ++i) std::cout << shard_command(opt, std::to_string(i)) << "\n";
    std::cout << "# then, once every shard has finished:\n" << merge_command(opt) << "\n"
              << "# or with GNU parallel over ssh (--retries reruns a failed shard, which resumes):\n"
              << "parallel --retries 3 --joblog " << dsl::describe_command({db + "/shards.log"})
              << " --sshloginfile HOSTS " << shard_command(opt, "{}") << " ::: $(seq 0 " << opt.shards - 1 << ") && "
              << merge_command(opt) << "\n";
    return;
  }
  std::string scripts = db + "/slurm";
  std::filesystem::create_directories(scripts);
  write_script(scripts + "/shard.sh", "One shard of `tetra tune`: Slurm array task i of " + n + ".", shard_script(opt));
  write_script(scripts + "/merge.sh", "Joins the shards' databases into " + db + ".", "exec " + merge_command(opt) + "\n");
  std::vector<std::string> extra = dsl::split_command(opt.sbatch_args);
  // --open-mode=append: a requeued shard's log keeps what its earlier runs printed.
  std::vector<std::string> array = {"--array=0-" + std::to_string(opt.shards - 1), "--requeue", "--job-name=tetra-tune",
                                    "--output=" + scripts + "/shard-%a.log", "--open-mode=append"};
  array.insert(array.end(), extra.begin(), extra.end());
  array.push_back(scripts + "/shard.sh");
  std::string shards_job = submit(array);
  std::vector<std::string> merge = {"--dependency=afterok:" + shards_job, "--job-name=tetra-merge",
                                    "--output=" + scripts + "/merge.log"};
  merge.insert(merge.end(), extra.begin(), extra.end());
  merge.push_back(scripts + "/merge.sh");
  std::string merge_job = submit(merge);
  std::cout << "submitted " << n << " shards as job array " << shards_job << " and the merge into " << db
            << " as job " << merge_job << "\n"
            << "follow them:    squeue -j " << shards_job << "," << merge_job << "\n"
            << "a shard's logs: " << scripts << "/shard-I.log\n"
            << "a shard's state: " << shard_command(opt, "I") << " --status\n";
}

void print_status(const std::vector<tuner::TaskSummary>& tasks) {
  std::cout << std::left << std::setw(60) << "task" << std::right << std::setw(8) << "done" << std::setw(9) << "planned"
            << std::setw(8) << "left" << std::setw(10) << "best ms" << "\n";
  int done = 0, left = 0;
  for (const tuner::TaskSummary& t : tasks) {
    int task_left = std::max(0, t.planned - t.earlier_trials);
    done += t.earlier_trials;
    left += task_left;
    std::cout << std::left << std::setw(60) << t.key.substr(0, 59) << std::right << std::setw(8) << t.earlier_trials
              << std::setw(9) << t.planned << std::setw(8) << task_left << std::fixed << std::setprecision(3)
              << std::setw(10) << t.best_ms << "\n";
  }
  std::cout << tasks.size() << " task(s): " << done << " trials done, " << left
            << " left (a task may stop early once it stops improving)\n";
}

void tune(TuneCliOptions& opt) {
  // Tuning measures real runs: a CPU target this machine cannot run is refused, and a GPU target needs
  // its device here (tetra-device runs the candidates), except an AMD GPU whose candidates --estimate
  // ranks (tuner/estimate_runner.h).
  // hip or cuda alone: the device's arch, which use_gpu_device finds (with --estimate, parse_target asks
  // for the arch).
  const bool bare_dialect = !bare_gpu_dialect(opt.target).empty();
  bool gpu = bare_dialect;
  if (!bare_dialect) {
    auto parsed = dsl::parse_target(opt.target);
    check(parsed.ok(), ErrorKind::Invalid, "--target: " + (parsed.ok() ? "" : parsed.failure().describe()));
    gpu = !parsed.value().is_cpu();
  }
  if (gpu && !opt.tune.estimate) use_gpu_device(opt);
  auto target = opt.tune.estimate || gpu ? dsl::parse_target(opt.target) : dsl::parse_runnable_target(opt.target);
  check(target.ok(), ErrorKind::Invalid, "--target: " + (target.ok() ? "" : target.failure().describe()));
  opt.tune.target = target.value();
  for (const std::string& s : opt.shapes) opt.tune.shapes.insert(parse_shape_binding(s));
  opt.tune.strategy = tuner::parse_strategy(opt.strategy);
  opt.tune.worker = this_executable();
  check(opt.shards >= 0, ErrorKind::Invalid, "--shards must be at least 1");
  check(!opt.slurm || opt.shards > 0, ErrorKind::Invalid, "--slurm needs --shards N");
  check(opt.shards == 0 || opt.shard.empty(), ErrorKind::Invalid, "give --shards N (the whole run) or --shard i/N (one shard), not both");
  if (!opt.shard.empty()) opt.tune.shard = tuner::parse_shard(opt.shard);
  if (opt.shards > 0) {
    // The shards may run in other folders, on other machines sharing the file system.
    opt.tune.model = std::filesystem::absolute(opt.tune.model).lexically_normal().string();
    opt.tune.db_dir = std::filesystem::absolute(opt.tune.db_dir).lexically_normal().string();
    return distribute(opt);
  }
  if (opt.status) return print_status(tuner::tuning_status(opt.tune));
  opt.tune.progress = [](const std::string& line) { std::cerr << line << "\n" << std::flush; };
  std::vector<tuner::TaskSummary> tasks = tuner::tune(opt.tune);
  std::cout << "\n" << std::left << std::setw(60) << "task" << std::right << std::setw(8) << "trials" << std::setw(8)
            << "failed" << std::setw(12) << "default ms" << std::setw(10) << "best ms" << std::setw(9) << "speedup"
            << "\n";
  // "-" where nothing was measured: a default timed in an earlier run, a task whose every trial failed.
  auto ms = [](double v) {
    std::ostringstream text;
    text << std::fixed << std::setprecision(3) << v;
    return v > 0 ? text.str() : std::string("-");
  };
  std::vector<std::string> unschedulable;  // tasks with no working schedule at all, earlier runs included
  for (const tuner::TaskSummary& t : tasks) {
    std::ostringstream speedup;
    speedup << std::fixed << std::setprecision(2) << t.default_ms / t.best_ms << "x";
    std::cout << std::left << std::setw(60) << t.key.substr(0, 59) << std::right << std::setw(8) << t.trials
              << std::setw(8) << t.failed << std::setw(12) << ms(t.default_ms) << std::setw(10) << ms(t.best_ms)
              << std::setw(9) << (t.default_ms > 0 && t.best_ms > 0 ? speedup.str() : "-")
              << (t.stopped_early ? "  stopped early" : "") << "\n";
    if (t.trials > 0 && t.best_ms == 0) unschedulable.push_back(t.key);
  }
  std::cout << "records in " << opt.tune.db_dir << "\n";
  if (!unschedulable.empty()) {
    // A model whose kernel has no working schedule on this target must not look tuned: its run would fail.
    std::cerr << "tetra: every trial failed for " << unschedulable.size() << " task(s), first '" << unschedulable[0]
              << "': no schedule for them works on " << opt.target << " (the trials' errors are above)\n";
    exit_status = 1;
  }
}

}  // namespace

void add_tune_command(CLI::App& app) {
  auto opt = std::make_shared<TuneCliOptions>();
  CLI::App* cmd = app.add_subcommand("tune", "Search schedules for a model's int4 kernels and store the best");
  cmd->add_option("model", opt->tune.model, "ONNX model file")->required();
  cmd->add_option("--db", opt->tune.db_dir, "tuning database folder (created if missing)")->required();
  cmd->add_option("--target", opt->target,
                  "host (default) or a target this machine runs, such as x86-64-avx2 on an AVX-512 CPU "
                  "(tuning measures real runs here); a GPU of this machine: opencl (its OpenCL device), hip[:ARCH] or "
                  "cuda[:sm_NN], whose candidates tetra-device runs; or hip:ARCH with --estimate, without the GPU. "
                  "Records are stored under the target's name");
  cmd->add_option("--trials", opt->tune.trials, "measured records per task in total, those already in the database and the default schedule's included "
                  "(default 64; a resumed run measures the rest)");
  cmd->add_option("--time-budget", opt->tune.time_budget_s, "stop after this many seconds (default: none)");
  cmd->add_option("--strategy", opt->strategy, "random, exhaustive, evolution (default) or xgb (XGBoost cost model)");
  cmd->add_option("--early-stop", opt->tune.early_stop,
                  "stop a task after this many trials in a row without a " + tuner::min_improvement_text() +
                      " improvement (default " + std::to_string(opt->tune.early_stop) + ")");
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
  add_activation_flags(cmd, opt->tune.activations);
  cmd->add_flag("--estimate", opt->tune.estimate,
                "for an AMD GPU this machine does not have (--target hip:ARCH): build each candidate for the arch, "
                "reject those that spill, and rank the rest by the static estimate; records are stored as estimated "
                "and never outrank a measurement");
  cmd->add_option("--shard", opt->shard, "tune only shard i/N of the run (docs/distributed_tuning.md); the shard's records go to --db");
  cmd->add_flag("--status", opt->status, "print per task the trials done and planned, the best so far and what is left; measures nothing");
  cmd->add_option("--shards", opt->shards,
                  "split the run into N shards: print each shard's command and the merge into --db (or submit them with --slurm)");
  cmd->add_flag("--slurm", opt->slurm, "with --shards: submit the shards as a Slurm job array (--requeue) and a merge job after them");
  cmd->add_option("--sbatch-args", opt->sbatch_args, "extra sbatch arguments for --slurm, e.g. \"--partition gpu --gres=gpu:1\"");
  cmd->callback([opt] { tune(*opt); });

  auto job = std::make_shared<std::string>();
  CLI::App* worker = app.add_subcommand("tune-worker", "builds, checks and times one candidate (internal)");
  worker->group("");
  worker->add_option("job", *job, "the job as JSON")->required();
  worker->callback([job] {
    // A worker dies with its tuner (Ctrl-C, kill -9): it leads a process group of its own (for its
    // timeout), so the terminal's signals no longer reach it.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
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
