// The tuner end to end on a small int4 model: tasks, isolated measurement (crashing, hanging and
// wrong candidates become failed records and tuning goes on), resumption, and the runtime using
// what it found.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include "runtime/executor.h"
#include "runtime/model.h"
#include "schedules/cpu/conv.h"
#include "schedules/qconv_templates.h"
#include "schedules/qmatmul_templates.h"
#include "tests/faulty_runner.h"
#include "tests/test_support.h"
#include "tools/model_builder.h"
#include "tuner/database.h"
#include "tuner/database_source.h"
#include "tuner/db_merge.h"
#include "tuner/measure.h"
#include "tuner/report.h"
#include "tuner/runner.h"
#include "tuner/search_strategy.h"
#include "tuner/task.h"
#include "tuner/task_scheduler.h"
#include "tuner/tune.h"

using namespace tetra;
using namespace tetra::test;

namespace {

// Two GEMMs of different shapes, one of them used twice.
std::string two_task_model(const std::string& dir) {
  ModelBuilder b(21);
  b.input("a", DType::Float32, {-1, 64});
  b.output("y", DType::Float32);
  for (const char* w : {"w1", "w2"}) {
    b.initializer(w, random_tensor(DType::Int4, {64, 64}, -8, 7));
    b.initializer(std::string(w) + "_s", random_tensor(DType::Float32, {2, 64}, 0.01, 0.1));
    b.node("DequantizeLinear", {w, std::string(w) + "_s"}, {std::string(w) + "_f"}, {{"axis", 0}, {"block_size", 32}});
  }
  b.initializer("w3", random_tensor(DType::Int4, {64, 24}, -8, 7));
  b.initializer("w3_s", random_tensor(DType::Float32, {24}, 0.01, 0.1));
  b.node("DequantizeLinear", {"w3", "w3_s"}, {"w3_f"}, {{"axis", 1}});
  b.node("MatMul", {"a", "w1_f"}, {"h1"});
  b.node("MatMul", {"h1", "w2_f"}, {"h2"});
  b.node("MatMul", {"h2", "w3_f"}, {"y"});
  return b.save(dir + "/m.onnx");
}

tuner::TuneOptions options(const std::string& model, const std::string& db, int trials) {
  tuner::TuneOptions o;
  o.model = model;
  o.shapes = {{"a", {2, 64}}};
  o.db_dir = db;
  o.trials = trials;
  o.strategy = tuner::Strategy::Random;
  o.repeats = 3;
  o.worker = tetra_cli();
  o.timeout_s = 60;
  return o;
}

}  // namespace

TEST_CASE("task extraction finds each distinct GEMM once, with its count", "[tuner]") {
  std::string dir = temp_dir("tuner_tasks");
  Graph g = load_model(two_task_model(dir), {{"a", {2, 64}}});
  std::vector<tuner::TuningTask> tasks = tuner::extract_tasks(g, dsl::host_target());
  REQUIRE(tasks.size() == 2);
  CHECK(tasks[0].occurrences == 2);  // w1 and w2 share shape and format
  CHECK(tasks[1].occurrences == 1);
  CHECK(tasks[0].workload.M == 2);
}

TEST_CASE("the task scheduler warms up every task, then picks the most model time that still improves", "[tuner]") {
  tuner::TaskScheduler scheduler;
  // occurrences, best ms, done
  std::vector<tuner::TaskProgress> tasks = {{1, 0, false}, {3, 0, true}, {1, 0, false}};
  CHECK(scheduler.next_task(tasks) == 0u);
  CHECK(scheduler.warming_up());
  CHECK(scheduler.next_task(tasks) == 2u);  // task 1 is done before its turn
  tasks = {{1, 2.0, false}, {3, 1.0, true}, {2, 0.5, false}};
  CHECK(scheduler.next_task(tasks) == 0u);  // 2 ms of model time against 1 ms
  CHECK_FALSE(scheduler.warming_up());
  tasks[2].best_ms = 1.5;
  CHECK(scheduler.next_task(tasks) == 2u);  // 3 ms
  tasks[0].done = tasks[2].done = true;
  CHECK_FALSE(scheduler.next_task(tasks));
}

TEST_CASE("every template's search space declares each knob once", "[tuner]") {
  // A knob declared twice counts twice in the space's size, and an enumeration of the space lists each point again.
  const dsl::TargetSpec gpu = dsl::parse_target("hip:gfx942").value();
  auto check_unique = [](const dsl::KnobSpace& space) {
    std::map<std::string, int> declared;
    for (const dsl::KnobDecl& k : space.knobs) ++declared[k.name];
    for (const auto& [name, count] : declared) {
      INFO(space.template_name << ": " << name);
      CHECK(count == 1);
    }
  };
  dsl::QMatMulWorkload gemm;
  gemm.M = 128, gemm.K = 4096, gemm.N = 4096;
  gemm.format.k_group = 32, gemm.format.per_n = true;
  for (const schedules::QMatMulTemplate& t : schedules::qmatmul_templates())
    check_unique(t.space(gemm, t.family == dsl::TargetFamily::Cpu ? dsl::host_target() : gpu));
  schedules::QConvWorkload conv;
  conv.N = 1, conv.C = conv.M = 64, conv.group = 1, conv.H = conv.W = conv.OH = conv.OW = 56, conv.KH = conv.KW = 3;
  for (const schedules::QConvTemplate& t : schedules::qconv_templates())
    check_unique(t.space(conv, t.family == dsl::TargetFamily::Cpu ? dsl::host_target() : gpu));
}

TEST_CASE("every search strategy proposes legal schedules not measured yet", "[tuner]") {
  dsl::QMatMulWorkload w;
  w.M = 2;
  w.K = 64;
  w.N = 64;
  w.format.k_group = 32;
  tuner::SearchSpace space(w, dsl::host_target());
  REQUIRE(space.size() > 0);
  for (tuner::Strategy kind :
       {tuner::Strategy::Random, tuner::Strategy::Exhaustive, tuner::Strategy::Evolution, tuner::Strategy::Xgb}) {
    INFO(tuner::strategy_name(kind));
    CHECK(tuner::parse_strategy(tuner::strategy_name(kind)) == kind);
    std::unique_ptr<tuner::SearchStrategy> strategy = tuner::make_search_strategy(kind);
    std::mt19937_64 rng(3);
    std::vector<tuner::Measured> history;
    std::set<std::string> seen;
    for (int i = 0; i < 12; ++i) {
      std::optional<dsl::Schedule> s = strategy->propose(space, history, seen, rng);
      REQUIRE(s);
      CHECK(space.legal(*s));
      CHECK(seen.insert(s->to_string()).second);
      history.push_back({*s, 1.0 + double(seen.size() % 5)});
    }
  }
  // Exhaustive search proposes every point once, then nothing.
  std::unique_ptr<tuner::SearchStrategy> exhaustive = tuner::make_search_strategy(tuner::Strategy::Exhaustive);
  std::mt19937_64 rng(3);
  std::set<std::string> seen;
  while (std::optional<dsl::Schedule> s = exhaustive->propose(space, {}, seen, rng)) REQUIRE(seen.insert(s->to_string()).second);
  CHECK(seen.size() == space.enumerate(100000).size());
  CHECK_THROWS_WITH(tuner::parse_strategy("annealing"), Catch::Contains("unknown search strategy"));
}

TEST_CASE("random points give every template an equal share whatever the size of its space", "[tuner]") {
  // The float16 prefill GEMM on MI300X: the float16 GEMM's knob space is several times smaller than
  // the float32 GEMM's, and a share by size once gave it 2 trials in 48.
  dsl::QMatMulWorkload w;
  w.M = 128;
  w.K = 4096;
  w.N = 4096;
  w.format.k_group = 32;
  w.f16_activations = true;
  tuner::SearchSpace space(w, dsl::parse_target("hip:gfx942").value());
  REQUIRE(space.spaces().size() >= 2);
  double smallest = space.spaces()[0].size(), largest = smallest;
  for (const dsl::KnobSpace& k : space.spaces())
    smallest = std::min(smallest, k.size()), largest = std::max(largest, k.size());
  REQUIRE(largest > 3 * smallest);  // else the check below would hold for a share by size too

  std::map<std::string, int> draws;
  std::mt19937_64 rng(11);
  const int total = 600;
  for (int i = 0; i < total; ++i) {
    std::optional<dsl::Schedule> s = space.random(rng);
    REQUIRE(s);
    CHECK(space.legal(*s));
    ++draws[s->template_name];
  }
  const double fair = double(total) / space.spaces().size();
  for (const dsl::KnobSpace& k : space.spaces()) {
    INFO(k.template_name << ": " << draws[k.template_name] << " of " << total << ", space " << k.size());
    CHECK(draws[k.template_name] > 0.7 * fair);
  }
}

namespace {
// Every candidate takes the same time: nothing ever improves on the first.
class SameTimeRunner : public tuner::Runner {
 public:
  tuner::MeasureResult run(const tuner::MeasureJob&) override {
    tuner::MeasureResult r;
    r.ok = true;
    r.median_ms = r.min_ms = r.max_ms = 1.0;
    r.runs = 1;
    return r;
  }
};
}  // namespace

namespace {
// Records the schedules it is asked to measure, per workload, in order; each takes 1 ms.
class OrderRunner : public tuner::Runner {
 public:
  std::map<std::string, std::vector<std::string>> order;
  tuner::MeasureResult run(const tuner::MeasureJob& job) override {
    order[job.qmatmul->key()].push_back(job.schedule.to_string());
    return SameTimeRunner().run(job);
  }
};
}  // namespace

TEST_CASE("a search measures the task's default, then every other template's default, then sampled points", "[tuner]") {
  // On MI300X the two-task model's GEMVs (2 rows) have several templates, each its own default.
  std::string dir = temp_dir("tuner_defaults_first");
  std::string model = two_task_model(dir);
  const dsl::TargetSpec gfx942 = dsl::parse_target("hip:gfx942").value();
  tuner::TuneOptions o = options(model, dir + "/db", 10);
  o.target = gfx942;
  o.estimate = true;
  OrderRunner runner;
  REQUIRE(tuner::tune(o, runner).size() == 2);
  Graph g = load_model(model, {{"a", {2, 64}}});
  for (const tuner::TuningTask& t : tuner::extract_tasks(g, gfx942)) {
    INFO(t.key());
    const tuner::SearchSpace space(t.workload, gfx942);
    std::vector<std::string> want = {tuner::default_schedule(t, gfx942).to_string()};
    for (const dsl::Schedule& d : space.defaults())
      if (d.to_string() != want[0]) want.push_back(d.to_string());
    REQUIRE(want.size() >= 2);  // the split-k GEMV's and the lanes' GEMV's
    const std::vector<std::string>& measured = runner.order.at(t.workload.key());
    REQUIRE(measured.size() == 10);
    CHECK(std::vector<std::string>(measured.begin(), measured.begin() + long(want.size())) == want);
  }
}

TEST_CASE("a task stops after --early-stop trials without a 1% improvement, and says so", "[tuner]") {
  std::string dir = temp_dir("tuner_early_stop");
  std::string model = two_task_model(dir);
  SameTimeRunner runner;
  std::vector<std::string> said;
  tuner::TuneOptions o = options(model, dir + "/db", 20);
  o.early_stop = 4;
  o.progress = [&](const std::string& line) { said.push_back(line); };
  std::vector<tuner::TaskSummary> tasks = tuner::tune(o, runner);
  REQUIRE(tasks.size() == 2);
  for (const tuner::TaskSummary& t : tasks) {
    INFO(t.key);
    CHECK(t.trials == 5);  // the default, then 4 that do not improve on it
    CHECK(t.stopped_early);
    CHECK(std::count_if(said.begin(), said.end(), [&](const std::string& line) {
            return line.find(t.key) != std::string::npos && line.find("stopped early: 4 trials") != std::string::npos;
          }) == 1);
  }
  // With a patience longer than the trials, every planned trial runs.
  o.db_dir = dir + "/db_patient";
  o.trials = 8;
  o.early_stop = 100;
  for (const tuner::TaskSummary& t : tuner::tune(o, runner)) {
    CHECK(t.trials == 8);
    CHECK_FALSE(t.stopped_early);
  }
}

TEST_CASE("a worker's result is its delimited last line, whatever JSON its messages hold", "[tuner]") {
  tuner::MeasureResult failure;
  failure.error = "cannot compile schedule {\"template\": \"cpu_int4_gemv\", \"knobs\": {\"tile_n\": 16}}";
  std::string output = "a log line {\"not\": \"a result\"}\n" + tuner::worker_result_line(failure);
  std::optional<tuner::MeasureResult> read = tuner::parse_worker_output(output);
  REQUIRE(read);
  CHECK_FALSE(read->ok);
  CHECK(read->error == failure.error);
  CHECK_FALSE(tuner::parse_worker_output("{\"ok\": true, \"median_ms\": 1}\n"));  // JSON alone is no result

  // End to end: the worker's failure names a template whose name is JSON.
  std::string dir = temp_dir("tuner_worker_json");
  Graph g = load_model(two_task_model(dir), {{"a", {2, 64}}});
  tuner::MeasureJob job;
  job.qmatmul = tuner::extract_tasks(g, dsl::host_target()).at(0).workload;
  job.schedule.template_name = "{\"tile_n\": 16}";
  tuner::MeasureResult r = tuner::measure_isolated(job, tetra_cli(), 60);
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.error, Catch::StartsWith("unknown template '{\"tile_n\": 16}'"));

  // A malformed job is a failed result naming the field at fault.
  nlohmann::json malformed = job.to_json();
  malformed["workload"].erase("K");
  std::string out;
  CHECK(run_command(tetra_cli() + " tune-worker '" + malformed.dump() + "'", &out) == 0);
  std::optional<tuner::MeasureResult> refused = tuner::parse_worker_output(out);
  REQUIRE(refused);
  CHECK_FALSE(refused->ok);
  CHECK_THAT(refused->error, Catch::StartsWith("malformed job:") && Catch::Contains("\"K\" is missing"));
}

TEST_CASE("workers build from the workload and schedule alone: the model is never read again", "[tuner]") {
  std::string dir = temp_dir("tuner_no_model");
  std::string model = two_task_model(dir);
  tuner::TuneOptions o = options(model, dir + "/db", 2);
  o.jobs = 2;  // build-only workers, then timing workers
  o.kernel_cache = dir + "/kernels";
  // The model moves away once its tasks are extracted, before any worker starts.
  o.progress = [&](const std::string& line) {
    if (line.rfind("tuning ", 0) == 0) std::filesystem::rename(model, model + ".moved");
  };
  std::vector<tuner::TaskSummary> tasks = tuner::tune(o);
  REQUIRE_FALSE(std::filesystem::exists(model));
  REQUIRE(tasks.size() == 2);
  tuner::TuningDatabase db = tuner::TuningDatabase::open(dir + "/db", dsl::host_target().name, dsl::toolchain_id());
  CHECK(db.records().size() == 4);
  for (const tuner::TuningRecord& r : db.records()) CHECK(r.error == "");
}

TEST_CASE("a worker checks and times every weight format and a direct conv on random weights", "[tuner]") {
  auto measure = [](tuner::MeasureJob job, const std::string& fault) {
    job.repeats = 2;
    if (!fault.empty()) ::setenv("TETRA_TEST_WORKER_FAULT", fault.c_str(), 1);
    tuner::MeasureResult result = tuner::measure_isolated(job, tetra_cli(), 120);
    ::unsetenv("TETRA_TEST_WORKER_FAULT");
    return result;
  };
  const dsl::TargetSpec& host = dsl::host_target();
  std::vector<dsl::QMatMulWorkload> gemms;
  dsl::QMatMulWorkload w;
  w.M = 3, w.K = 72, w.N = 24, w.has_bias = true, w.epilogue = dsl::OutputEpilogue::relu();
  w.format.k_group = 32, w.format.per_n = true, w.format.has_zero_point = true, w.format.f16_scale = true;
  gemms.push_back(w);  // int4 blocked, zero points, float16 scales, a partial last block
  w.format = {};
  w.format.is_signed = false, w.format.per_n = true, w.M = 9;
  gemms.push_back(w);  // uint4 per-n, the GEMM template
  w.format = {};
  w.format.float_bits = 16, w.M = 1;
  gemms.push_back(w);  // a float16 weight
  if (host.has_int8_dot()) {
    w.format = {};
    w.format.k_group = 32, w.format.per_n = true, w.format.f16_scale = true, w.int8_activations = true, w.K = 64;
    gemms.push_back(schedules::resolve_qmatmul(w, host).workload);  // int8 activations, scales widened
  }
  for (const dsl::QMatMulWorkload& g : gemms) {
    INFO(g.key());
    tuner::MeasureJob job;
    job.qmatmul = g;
    job.schedule = schedules::default_qmatmul_schedule(g, host).value();
    tuner::MeasureResult r = measure(job, "");
    CHECK(r.error == "");
    CHECK(r.median_ms > 0);
  }
  tuner::MeasureJob wrong;
  wrong.qmatmul = gemms[0];
  wrong.schedule = schedules::default_qmatmul_schedule(gemms[0], host).value();
  CHECK_THAT(measure(wrong, "wrong").error, Catch::Contains("wrong result"));

  dsl::QConvWorkload conv;  // depthwise 3x3, stride 2, int4 per output channel
  conv.N = 1, conv.C = 8, conv.H = 9, conv.W = 7, conv.M = 8, conv.group = 8, conv.KH = 3, conv.KW = 3;
  conv.SH = 2, conv.pad_top = 1, conv.pad_left = 1, conv.pad_bottom = 1, conv.pad_right = 1;
  conv.OH = 5, conv.OW = 7, conv.has_bias = true;
  conv.format.grid = dsl::ConvInt4Format::Grid::PerAxis;
  tuner::MeasureJob job;
  job.qconv = conv;
  job.schedule = schedules::default_qconv_schedule(conv, host).value();
  tuner::MeasureResult r = measure(job, "");
  CHECK(r.error == "");
  CHECK(r.median_ms > 0);
  CHECK_THAT(measure(job, "wrong").error, Catch::Contains("wrong result"));
}

TEST_CASE("tuning records every trial, survives failing candidates and resumes", "[tuner]") {
  std::string dir = temp_dir("tuner_run");
  std::string model = two_task_model(dir);
  std::string db_dir = dir + "/db";
  for (const std::string& fault : {std::string("crash"), std::string("wrong"), std::string("hang")}) {
    INFO("fault " << fault);
    std::string db_path = db_dir + "_" + fault;
    tuner::TuneOptions o = options(model, db_path, 3);
    o.timeout_s = fault == "hang" ? 5 : 60;
    FaultyRunner runner(fault, o.timeout_s);
    std::vector<tuner::TaskSummary> tasks = tuner::tune(o, runner);
    REQUIRE(tasks.size() == 2);
    tuner::TuningDatabase db = tuner::TuningDatabase::open(db_path, dsl::host_target().name, dsl::toolchain_id());
    std::vector<tuner::TuningRecord> records = db.records();
    CHECK(records.size() == 6);
    int failed = 0;
    for (const tuner::TuningRecord& r : records) {
      if (!r.failed()) continue;
      ++failed;
      if (fault == "crash") CHECK_THAT(r.error, Catch::Contains("crashed"));
      if (fault == "wrong") CHECK_THAT(r.error, Catch::Contains("wrong result"));
      if (fault == "hang") CHECK_THAT(r.error, Catch::Contains("timed out"));
    }
    CHECK(failed == 2);  // each task's second candidate
    for (const tuner::TaskSummary& t : tasks) CHECK(t.best_ms > 0);
  }

  // Resumption: --trials counts the records already in the database, so a second run measures only
  // the rest, all of them new candidates, and a third one has nothing left to do.
  tuner::tune(options(model, db_dir, 3));
  for (const tuner::TaskSummary& t : tuner::tune(options(model, db_dir, 5))) {
    CHECK(t.earlier_trials == 3);
    CHECK(t.trials == 2);
  }
  for (const tuner::TaskSummary& t : tuner::tune(options(model, db_dir, 5))) {
    CHECK(t.earlier_trials == 5);
    CHECK(t.trials == 0);
  }
  tuner::TuningDatabase db = tuner::TuningDatabase::open(db_dir, dsl::host_target().name, dsl::toolchain_id());
  std::set<std::string> distinct;
  for (const tuner::TuningRecord& r : db.records()) distinct.insert(r.workload.key + r.schedule.to_string());
  CHECK(db.records().size() == 10);
  CHECK(distinct.size() == 10);

  // The runtime takes its schedules from the database, and says so.
  Graph g = load_model(model);
  tuner::DatabaseScheduleSource source(db);
  Executor exec(g, ExecutorOptions{Backend::Halide, 0, &source, "", ""});
  TensorMap in = {{"a", random_tensor(DType::Float32, {2, 64})}};
  TensorMap got = exec.run(in);
  CHECK(compare_tensors(got.at("y"), run_reference(g, in).at("y"), 1e-4, 1e-4) == "");
  for (const KernelInfo& k : exec.kernels()) CHECK_THAT(k.detail, Catch::StartsWith("database exact"));
  // Another row count finds the nearest tuned workload.
  Executor other(g, ExecutorOptions{Backend::Halide, 0, &source, "", ""});
  other.run({{"a", random_tensor(DType::Float32, {3, 64})}});
  for (const KernelInfo& k : other.kernels()) CHECK_THAT(k.detail, Catch::StartsWith("database nearest"));
}

TEST_CASE("shards split a run: each candidate measured by one shard, a task's status per shard", "[tuner][shard]") {
  std::string dir = temp_dir("tuner_shards");
  std::string model = two_task_model(dir);
  // Two tasks over three shards: fewer tasks than shards, so every shard takes both tasks and the
  // exhaustive search's candidates are split by their index in the space's enumeration.
  constexpr int kShards = 3, kTrials = 6;
  std::map<std::string, std::set<std::string>> measured;  // task -> schedules, over every shard
  size_t records = 0;
  Graph g = load_model(model, {{"a", {2, 64}}});
  std::vector<tuner::TuningTask> tasks = tuner::extract_tasks(g, dsl::host_target());
  for (int i = 0; i < kShards; ++i) {
    tuner::TuneOptions o = options(model, dir + "/shard_" + std::to_string(i), kTrials);
    o.strategy = tuner::Strategy::Exhaustive;
    o.shard = tuner::parse_shard(std::to_string(i) + "/" + std::to_string(kShards));
    for (const tuner::TaskSummary& t : tuner::tuning_status(o)) {
      CHECK(t.earlier_trials == 0);
      CHECK(t.planned == kTrials / kShards);
    }
    std::vector<tuner::TaskSummary> summaries = tuner::tune(o);
    REQUIRE(summaries.size() == 2);
    tuner::TuningDatabase db = tuner::TuningDatabase::open(o.db_dir, dsl::host_target().name, dsl::toolchain_id());
    CHECK(db.records().size() == 2 * kTrials / kShards);
    for (const tuner::TuningRecord& r : db.records()) {
      ++records;
      CHECK(measured[r.workload.key].insert(r.schedule.to_string()).second);  // no other shard measured it
      // ... and this shard owns it: its index in an unsharded exhaustive run's order is i mod N.
      const tuner::TuningTask* task = nullptr;
      for (const tuner::TuningTask& t : tasks)
        if (t.key() == r.workload.key) task = &t;
      REQUIRE(task);
      std::vector<dsl::Schedule> order = tuner::exhaustive_order(
          *task, tuner::SearchSpace(task->workload, dsl::host_target()), dsl::host_target());
      auto at = std::find_if(order.begin(), order.end(), [&](const dsl::Schedule& p) { return p.to_string() == r.schedule.to_string(); });
      REQUIRE(at != order.end());
      CHECK((at - order.begin()) % kShards == i);
    }
    // A rerun of the shard (requeued) finds its share done; --status says so.
    for (const tuner::TaskSummary& t : tuner::tuning_status(o)) {
      CHECK(t.earlier_trials == kTrials / kShards);
      CHECK(t.planned == kTrials / kShards);
    }
    for (const tuner::TaskSummary& t : tuner::tune(o)) CHECK(t.trials == 0);
  }
  CHECK(records == 2 * kTrials);  // the whole budget, once
}

TEST_CASE("an exhaustive tune as one process and as 4 shards plus merge measure the same candidates", "[tuner][shard]") {
  std::string dir = temp_dir("tuner_equivalence");
  std::string model = two_task_model(dir);
  constexpr int kShards = 4, kTrials = 8;
  auto schedules_in = [](const tuner::TuningDatabase& db) {
    std::set<std::string> out;
    for (const tuner::TuningRecord& r : db.records()) out.insert(r.workload.key + " " + r.schedule.to_string());
    return out;
  };
  tuner::TuneOptions whole = options(model, dir + "/whole", kTrials);
  whole.strategy = tuner::Strategy::Exhaustive;
  tuner::tune(whole);
  std::vector<std::string> shard_dirs;
  for (int i = 0; i < kShards; ++i) {
    tuner::TuneOptions o = whole;
    o.db_dir = dir + "/shard_" + std::to_string(i);
    o.shard = {i, kShards};
    tuner::tune(o);
    shard_dirs.push_back(o.db_dir);
  }
  tuner::merge_databases(dir + "/merged", shard_dirs);
  const std::string& target = dsl::host_target().name;
  tuner::TuningDatabase one = tuner::TuningDatabase::open(whole.db_dir, target, dsl::toolchain_id());
  tuner::TuningDatabase merged = tuner::TuningDatabase::open(dir + "/merged", target, dsl::toolchain_id());
  REQUIRE(one.records().size() == 2 * kTrials);
  CHECK(schedules_in(merged) == schedules_in(one));
  // The merged database's best per workload is its fastest record. (Which schedule is fastest can differ
  // between the two runs by timing noise alone: the candidates are the same, their times are not.)
  for (const tuner::TuningRecord& r : one.records()) {
    tuner::TuningDatabase::Lookup best = merged.best(r.workload);
    REQUIRE(best.record);
    for (const tuner::TuningRecord& other : merged.records())
      if (other.workload.key == r.workload.key && !other.failed()) CHECK(best.record->median_ms <= other.median_ms);
  }
}

TEST_CASE("tuning with --jobs builds candidates in parallel workers, then times each alone", "[tuner]") {
  std::string dir = temp_dir("tuner_jobs");
  std::string model = two_task_model(dir);
  tuner::TuneOptions o = options(model, dir + "/db", 6);
  o.jobs = 2;
  o.kernel_cache = dir + "/kernels";
  FaultyRunner wrong("wrong", o.timeout_s);  // a wrong result is still caught: the check runs in the timing worker
  std::vector<std::string> lines;
  o.progress = [&](const std::string& line) { lines.push_back(line); };
  std::vector<tuner::TaskSummary> tasks = tuner::tune(o, wrong);
  REQUIRE(tasks.size() == 2);
  int builds = 0;
  for (const std::string& l : lines) builds += l.find("candidates with 2 jobs") != std::string::npos;
  CHECK(builds >= 2);
  tuner::TuningDatabase db = tuner::TuningDatabase::open(dir + "/db", dsl::host_target().name, dsl::toolchain_id());
  CHECK(db.records().size() == 12);
  int failed = 0;
  for (const tuner::TuningRecord& r : db.records()) failed += r.failed();
  CHECK(failed == 2);
  for (const tuner::TaskSummary& t : tasks) CHECK(t.best_ms > 0);
  // The builds went into the kernel cache: one shared Halide runtime, and one library per distinct candidate.
  int runtimes = 0, kernels = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir + "/kernels")) {
    std::string name = e.path().filename().string();
    runtimes += name.rfind("runtime_", 0) == 0;
    kernels += name.rfind("kernel_", 0) == 0;
  }
  CHECK(runtimes == 1);
  CHECK(kernels >= 6);

  o.kernel_cache = "";
  CHECK_THROWS_WITH(tuner::tune(o), Catch::Contains("kernel cache"));
}

TEST_CASE("tuning reports: an SVG chart, or an HTML page with the tasks and the chart", "[tuner]") {
  std::string dir = temp_dir("tuner_report");
  tuner::TuneOptions o = options(two_task_model(dir), dir + "/db", 3);
  o.report_path = dir + "/report.html";
  std::vector<tuner::TaskSummary> tasks = tuner::tune(o);
  std::ifstream in(o.report_path);
  std::string html((std::istreambuf_iterator<char>(in)), {});
  for (const tuner::TaskSummary& t : tasks) {
    CHECK_THAT(html, Catch::Contains("<td>" + t.key + "</td><td>3</td>"));  // each task's row: 3 trials
    std::string schedule;  // as the page escapes it
    for (char c : t.best_schedule) schedule += c == '"' ? std::string("&quot;") : std::string(1, c);
    CHECK_THAT(html, Catch::Contains("<code>" + schedule + "</code>"));
  }
  CHECK_THAT(html, Catch::Contains("<svg") && Catch::Contains("<polyline"));
  std::string svg = tuner::convergence_svg(tasks, "t");
  CHECK_THAT(svg, Catch::StartsWith("<svg") && Catch::Contains("<polyline"));
}

TEST_CASE("kernels built by tune --jobs are kernel-cache hits for run", "[tuner][cli]") {
  std::string dir = temp_dir("tuner_cache_hits");
  std::string model = two_task_model(dir);
  std::string db = dir + "/db", cache = dir + "/kernels";
  auto kernels_in_cache = [&] {
    int n = 0;
    for (const auto& entry : std::filesystem::directory_iterator(cache))
      n += entry.path().filename().string().rfind("kernel_", 0) == 0;
    return n;
  };
  std::string out;
  REQUIRE(run_command(tetra_cli() + " tune " + model + " --db " + db + " --kernel-cache " + cache +
                          " --shape a=2,64 --trials 2 --jobs 2 --repeats 2 --strategy random",
                      &out) == 0);
  int built = kernels_in_cache();
  INFO(out);
  CHECK(built >= 2);
  REQUIRE(run_command(tetra_cli() + " run " + model + " --random-inputs --shape a=2,64 --explain --db " + db +
                          " --kernel-cache " + cache,
                      &out) == 0);
  INFO(out);
  // Each of the three GEMMs runs a tuned schedule, loaded from what the tuner built: nothing new compiled.
  size_t loaded = 0;
  for (size_t at = out.find("database exact, loaded from the kernel cache"); at != std::string::npos;
       at = out.find("database exact, loaded from the kernel cache", at + 1))
    ++loaded;
  CHECK(loaded == 3);
  CHECK(kernels_in_cache() == built);
}

TEST_CASE("tune and run and compile take a target this machine runs and refuse one it cannot", "[tuner][cli][target]") {
  if (!dsl::parse_runnable_target("x86-64-avx2").ok()) {
    WARN("this machine does not run AVX2 code");
    return;
  }
  std::string dir = temp_dir("tuner_target");
  std::string model = two_task_model(dir);
  std::string db = dir + "/db", cache = dir + "/kernels";
  const std::string shape = " --shape a=2,64";
  std::string out;
  REQUIRE(run_command(tetra_cli() + " tune " + model + " --target x86-64-avx2 --db " + db + " --kernel-cache " + cache +
                          shape + " --trials 2 --jobs 2 --repeats 2 --strategy random",
                      &out) == 0);
  INFO(out);
  // The records are the target's, not this machine's.
  tuner::TuningDatabase avx2 = tuner::TuningDatabase::open(db, "x86-64-avx2", dsl::toolchain_id());
  CHECK(avx2.records().size() == 4);
  if (dsl::host_target().name != "x86-64-avx2")
    CHECK(tuner::TuningDatabase::open(db, dsl::host_target().name, dsl::toolchain_id()).records().empty());

  // run --target: the target's records, on the very code the tuner's workers built for it.
  auto count = [](const std::string& text, const std::string& what) {
    size_t n = 0;
    for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
  };
  REQUIRE(run_command(tetra_cli() + " run " + model + " --random-inputs" + shape + " --check --explain --target x86-64-avx2 --db " +
                          db + " --kernel-cache " + cache,
                      &out) == 0);
  CHECK(count(out, "database exact, loaded from the kernel cache") == 3);
  // On this machine's own target there are no records.
  REQUIRE(run_command(tetra_cli() + " run " + model + " --random-inputs" + shape + " --explain --db " + db +
                          " --kernel-cache ''",
                      &out) == 0);
  if (dsl::host_target().name != "x86-64-avx2") CHECK(count(out, "default schedule (no database record)") == 3);

  REQUIRE(run_command(tetra_cli() + " compile " + model + " -o " + dir + "/lib --target x86-64-avx2 --db " + db + shape,
                      &out) == 0);
  CHECK_THAT(out, Catch::Contains("2 with tuned schedules from the database"));

  // Targets this machine cannot run are refused, naming what it lacks.
  std::vector<std::string> foreign = {"arm-64"};
  if (!dsl::host_target().halide.has_feature(Halide::Target::AVX512_SapphireRapids))
    foreign.push_back("x86-64-avx512-fp16");
  for (const std::string& target : foreign) {
    INFO("target " << target);
    CHECK(run_command(tetra_cli() + " tune " + model + " --target " + target + " --db " + dir + "/db2" + shape, &out) == 2);
    CHECK_THAT(out, Catch::Contains("cannot run code for it"));
    CHECK(run_command(tetra_cli() + " run " + model + " --random-inputs" + shape + " --target " + target, &out) == 2);
    CHECK_THAT(out, Catch::Contains("cannot run code for it"));
    // compile too, writing nothing (another architecture is refused before the features are looked at).
    std::string lib = dir + "/lib_" + target;
    CHECK(run_command(tetra_cli() + " compile " + model + " -o " + lib + " --target " + target + shape, &out) == 2);
    CHECK_THAT(out, Catch::Contains(target == "arm-64" ? "x86-64 CPU targets" : "cannot run code for it"));
    CHECK_FALSE(std::filesystem::exists(lib));
  }
}

TEST_CASE("estimated records neither block a measurement nor count as one", "[tuner]") {
  std::string dir = temp_dir("tuner_estimated");
  std::string model = two_task_model(dir);
  Graph g = load_model(model, {{"a", {2, 64}}});
  const dsl::TargetSpec& host = dsl::host_target();
  tuner::TuningDatabase db = tuner::TuningDatabase::open(dir + "/db", host.name, dsl::toolchain_id());
  // A cost model's (wildly optimistic) estimate of each task's default schedule.
  std::vector<tuner::TuningRecord> estimates;
  for (const tuner::TuningTask& t : tuner::extract_tasks(g, host)) {
    tuner::TuningRecord r;
    r.workload = t.desc(host.name);
    r.target = host.name;
    r.toolchain = dsl::toolchain_id();
    r.schedule = tuner::default_schedule(t, host);
    r.median_ms = r.min_ms = r.max_ms = 1e-9;
    r.measured = false;
    r.measured_on = "cost model";
    r.timestamp = tuner::utc_timestamp();
    estimates.push_back(r);
  }
  db.commit(estimates);

  std::vector<tuner::TaskSummary> tasks = tuner::tune(options(model, dir + "/db", 1));
  REQUIRE(tasks.size() == 2);
  for (const tuner::TaskSummary& t : tasks) {
    CHECK(t.earlier_trials == 0);  // an estimate is no trial
    CHECK(t.trials == 1);          // and it does not keep the default schedule from being measured
    CHECK(t.default_ms > 0);
    CHECK(t.best_ms == t.default_ms);  // the estimate's 1e-9 ms never entered the best so far
  }
  db = tuner::TuningDatabase::open(dir + "/db", host.name, dsl::toolchain_id());
  for (const tuner::TuningRecord& r : db.records()) CHECK(r.measured);  // the measurement replaced the estimate
}

TEST_CASE("tuning int8 activations: their own records, checked against the int8 arithmetic", "[tuner][int8]") {
  if (!dsl::host_target().has_int8_dot()) {
    WARN("this CPU has no AVX512-VNNI: int8 activations stay float32 here");
    return;
  }
  std::string dir = temp_dir("tuner_int8");
  std::string model = two_task_model(dir);
  tuner::TuneOptions o = options(model, dir + "/db", 3);
  o.activations = ActivationOptIn::Int8;
  FaultyRunner wrong("wrong", o.timeout_s);  // one output off by 1.0: the int8 reference must catch it too
  std::vector<tuner::TaskSummary> tasks = tuner::tune(o, wrong);
  REQUIRE(tasks.size() == 2);
  tuner::TuningDatabase db = tuner::TuningDatabase::open(dir + "/db", dsl::host_target().name, dsl::toolchain_id());
  int failed = 0;
  for (const tuner::TuningRecord& r : db.records()) {
    CHECK_THAT(r.workload.key, Catch::EndsWith(" a8"));
    CHECK(r.schedule.template_name == "cpu_int4_vnni");
    if (r.failed()) {
      ++failed;
      CHECK_THAT(r.error, Catch::Contains("wrong result"));
    }
  }
  CHECK(failed == 2);

  // The int8 runtime takes these records; the float32 one finds none of them, not even as nearest.
  tuner::DatabaseScheduleSource source(db);
  TensorMap in = {{"a", random_tensor(DType::Float32, {2, 64})}};
  Graph g = load_model(model);
  Graph g8 = g;
  REQUIRE(mark_int8_activations(g8) == 3);
  Executor int8(g8, ExecutorOptions{Backend::Halide, 0, &source, "", ""});
  int8.run(in);
  for (const KernelInfo& k : int8.kernels()) CHECK_THAT(k.detail, Catch::StartsWith("database exact"));
  Executor fp32(g, ExecutorOptions{Backend::Halide, 0, &source, "", ""});
  fp32.run(in);
  for (const KernelInfo& k : fp32.kernels()) CHECK_THAT(k.detail, Catch::StartsWith("default schedule"));
}

TEST_CASE("convs are tuning tasks: direct conv schedules are searched, checked and used", "[tuner][conv]") {
  std::string dir = temp_dir("tuner_conv");
  ModelBuilder b(21);
  b.input("x", DType::Float32, {1, 8, 12, 12});
  b.output("y", DType::Float32);
  b.initializer("w", random_tensor(DType::Int4, {16, 8, 3, 3}, -8, 7));
  b.initializer("s", random_tensor(DType::Float32, {16}, 0.01, 0.1));
  b.initializer("bias", random_tensor(DType::Float32, {16}, -0.1, 0.1));
  b.node("DequantizeLinear", {"w", "s"}, {"wf"}, {{"axis", 0}});
  b.node("Conv", {"x", "wf", "bias"}, {"c"}, {{"pads", std::vector<int64_t>{1, 1, 1, 1}}});
  b.node("Relu", {"c"}, {"y"});
  std::string model = b.save(dir + "/conv.onnx");

  Graph g = load_model(model);
  std::vector<tuner::TuningTask> tasks = tuner::extract_tasks(g, dsl::host_target());
  REQUIRE(tasks.size() == 1);
  REQUIRE(tasks[0].conv.has_value());
  CHECK_THAT(tasks[0].key(), Catch::StartsWith("qconv n1 c8 h12 w12 m16"));

  tuner::TuneOptions o = options(model, dir + "/db", 4);
  o.shapes = {};
  FaultyRunner wrong("wrong", o.timeout_s);  // the second candidate's output is off by 1.0 at one point
  tuner::tune(o, wrong);
  tuner::TuningDatabase db = tuner::TuningDatabase::open(dir + "/db", dsl::host_target().name, dsl::toolchain_id());
  REQUIRE(db.records().size() == 4);
  int failed = 0;
  for (const tuner::TuningRecord& r : db.records()) {
    CHECK(r.workload.op() == "qconv");
    CHECK(r.schedule.template_name == "cpu_int4_dense_conv");
    if (r.failed()) {
      ++failed;
      CHECK_THAT(r.error, Catch::Contains("wrong result"));
    }
  }
  CHECK(failed == 1);

  tuner::DatabaseScheduleSource source(db);
  Executor exec(g, ExecutorOptions{Backend::Halide, 0, &source, "", ""});
  TensorMap in = {{"x", random_tensor(DType::Float32, {1, 8, 12, 12})}};
  CHECK(compare_tensors(exec.run(in).at("y"), run_reference(g, in).at("y"), 1e-4, 1e-4) == "");
  CHECK_THAT(exec.kernels()[0].detail, Catch::StartsWith("database exact"));
}
