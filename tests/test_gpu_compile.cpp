// `tetra compile --target hip:ARCH,...`: a model's GPU kernels for several AMD archs, with one code object
// and one launch-plan file per arch and a kernels.json naming each kernel's schedule, where it came from
// and its resources; the database's records for an arch are used for that arch only; bad targets are
// refused with nothing written. Occupancy follows dsl/core/amd_arch.h. `tetra tune --estimate` ranks an
// arch's candidates without that GPU, and compile uses the estimated records.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "dsl/core/amd_arch.h"
#include "dsl/core/gpu_estimate.h"
#include "dsl/core/launch_plan.h"
#include "dsl/gpu/code_object.h"
#include "dsl/target.h"
#include "runtime/model.h"
#include "tests/test_support.h"
#include "tools/model_builder.h"
#include "tuner/database.h"
#include "tuner/task.h"

namespace fs = std::filesystem;
using namespace tetra;
using namespace tetra::test;

namespace {

// Two int4 MatMuls on x [B, 64]: 64 -> 96 (blocked, with a bias) and 96 -> 40 (per-column uint4 with
// zero points).
std::string two_layer_model(const std::string& dir) {
  ModelBuilder b(21);
  b.input("x", DType::Float32, {-1, 64});
  b.output("y", DType::Float32);
  b.initializer("w1", random_tensor(DType::Int4, {64, 96}, -8, 7));
  b.initializer("s1", random_tensor(DType::Float32, {2, 96}, 0.01, 0.1));
  b.initializer("b1", random_tensor(DType::Float32, {96}, -1, 1));
  b.initializer("w2", random_tensor(DType::UInt4, {96, 40}, 0, 15));
  b.initializer("s2", random_tensor(DType::Float32, {40}, 0.01, 0.1));
  b.initializer("z2", random_tensor(DType::UInt4, {40}, 0, 15));
  b.node("DequantizeLinear", {"w1", "s1"}, {"w1f"}, {{"axis", 0}, {"block_size", 32}});
  b.node("MatMul", {"x", "w1f"}, {"h0"});
  b.node("Add", {"h0", "b1"}, {"h"});
  b.node("DequantizeLinear", {"w2", "s2", "z2"}, {"w2f"}, {{"axis", 1}});
  b.node("MatMul", {"h", "w2f"}, {"y"});
  return b.save(dir + "/model.onnx");
}

// An int4 conv (per-output-channel scales) then an int4 MatMul on its flattened output.
std::string conv_model(const std::string& dir) {
  ModelBuilder b(21);
  b.input("x", DType::Float32, {1, 4, 6, 6});
  b.output("y", DType::Float32);
  b.initializer("wc", random_tensor(DType::Int4, {8, 4, 3, 3}, -8, 7));
  b.initializer("sc", random_tensor(DType::Float32, {8}, 0.01, 0.1));
  b.initializer("wm", random_tensor(DType::Int4, {288, 10}, -8, 7));
  b.initializer("sm", random_tensor(DType::Float32, {10}, 0.01, 0.1));
  b.initializer("shape", Tensor::from_ints(DType::Int64, {2}, {1, 288}));
  b.node("DequantizeLinear", {"wc", "sc"}, {"wcf"}, {{"axis", 0}});
  b.node("Conv", {"x", "wcf"}, {"c"}, {{"pads", std::vector<int64_t>{1, 1, 1, 1}}});
  b.node("Reshape", {"c", "shape"}, {"f"});
  b.node("DequantizeLinear", {"wm", "sm"}, {"wmf"}, {{"axis", 1}});
  b.node("MatMul", {"f", "wmf"}, {"y"});
  return b.save(dir + "/conv.onnx");
}

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  REQUIRE(bool(in));
  return nlohmann::json::parse(in);
}

}  // namespace

TEST_CASE("tetra compile --target hip: code objects, launch plans and kernels.json for several archs", "[cli][gpu]") {
  std::string dir = temp_dir("gpu_compile");
  std::string model = two_layer_model(dir);
  fs::path out = fs::path(dir) / "out";
  std::string log;
  REQUIRE(run_command(tetra_cli() + " compile " + model + " --target hip:gfx90a,gfx1201 --name net --shape x=1,64 -o " +
                          out.string(),
                      &log) == 0);
  INFO(log);
  nlohmann::json report = read_json(out / "net.kernels.json");
  INFO(report.dump(1));
  CHECK(report["compiler"].get<std::string>().rfind("clang-", 0) == 0);
  REQUIRE(report["archs"].size() == 2);
  for (const nlohmann::json& arch : report["archs"]) {
    const std::string name = arch["arch"];
    const dsl::AmdArch* facts = dsl::find_amd_arch(name);
    REQUIRE(facts);
    CHECK(arch["target"] == "hip-" + name);
    // The code object is for that arch and holds every kernel kernels.json names.
    fs::path code_object = out / arch["code_object"].get<std::string>();
    REQUIRE(code_object == out / ("net." + name + ".co"));
    dsl::Result<std::vector<dsl::gpu::KernelResources>> notes = dsl::gpu::read_kernel_resources(code_object.string());
    REQUIRE(notes.ok());
    std::string readelf;
    REQUIRE(run_command("llvm-readelf-19 --notes " + code_object.string(), &readelf) == 0);
    CHECK_THAT(readelf, Catch::Contains("amdgcn-amd-amdhsa--" + name));
    nlohmann::json launches = read_json(out / ("net." + name + ".launch.json"));
    CHECK(launches["arch"] == name);
    REQUIRE(arch["workloads"].size() == 2);
    std::set<std::string> kernels_named;
    for (const nlohmann::json& w : arch["workloads"]) {
      CHECK(w["schedule"]["template"] == "gpu_int4_gemv");
      CHECK(w["schedule"]["knobs"]["tile_n"].get<int>() % facts->wavefront == 0);
      CHECK(w["schedule_source"] == "default schedule");
      // The static estimate on the arch's reference GPU.
      CHECK(w["estimate"]["device"] == dsl::reference_gpu(name)->name);
      CHECK(w["estimate"]["time_us"].get<double>() > 0);
      // The launch plans of the workload, one per kernel, read back as plans.
      const nlohmann::json& plans = launches["workloads"][w["workload"].get<std::string>()];
      REQUIRE(plans.size() == w["kernels"].size());
      for (size_t i = 0; i < plans.size(); ++i) {
        dsl::Result<dsl::LaunchPlan> plan = dsl::LaunchPlan::from_json(plans[i]);
        REQUIRE(plan.ok());
        const nlohmann::json& k = w["kernels"][i];
        CHECK(plan.value().kernel == k["kernel"]);
        kernels_named.insert(k["kernel"].get<std::string>());
        const nlohmann::json& r = k["resources"];
        const dsl::gpu::KernelResources* in_notes = nullptr;
        for (const auto& n : notes.value())
          if (n.name == k["kernel"]) in_notes = &n;
        REQUIRE(in_notes);
        CHECK(r["vgprs"] == in_notes->vgprs);
        CHECK(r["lds_bytes"] == in_notes->lds_bytes);
        CHECK(r["lds_bytes"].get<int64_t>() >= plan.value().shared_bytes);
        CHECK(r["spills"] == 0);
        CHECK(r["scratch_bytes"] == 0);
        CHECK(r["wavefront"] == facts->wavefront);
        // Small kernels reach the arch's most waves per SIMD.
        CHECK(r["waves_per_simd"] == facts->max_waves_per_simd);
        // The output keeps the output Func's name, whatever number Halide gave it.
        bool writes_output = false;
        for (const dsl::KernelParam& p : plan.value().params)
          writes_output |= p.is_buffer && p.write && p.name == "qmatmul";
        CHECK(writes_output);
      }
    }
    CHECK(kernels_named.size() == notes.value().size());
  }
  // Nothing else is left in the folder (no work folder).
  int files = 0;
  for (const auto& e : fs::directory_iterator(out)) files += e.is_regular_file() ? 1 : 100;
  CHECK(files == 5);
}

TEST_CASE("tetra compile --target hip uses the database's records for each arch", "[cli][gpu]") {
  std::string dir = temp_dir("gpu_compile_db");
  std::string model = two_layer_model(dir);
  // A record for gfx942 only, with a schedule unlike the default.
  dsl::TargetSpec gfx942 = dsl::parse_target("hip:gfx942").value();
  std::vector<tuner::TuningTask> tasks = tuner::extract_tasks(load_model(model, {{"x", {1, 64}}}), gfx942);
  REQUIRE(tasks.size() == 2);
  tuner::TuningRecord r;
  r.workload = tasks[0].desc(gfx942.name);
  r.target = gfx942.name;
  r.toolchain = dsl::toolchain_id();
  r.schedule.template_name = "gpu_int4_gemv";
  r.schedule.knobs = {{"tile_n", int64_t(128)}, {"unroll_k", int64_t(2)}, {"split_k", int64_t(2)}};
  r.median_ms = r.min_ms = r.max_ms = 0.01;
  r.runs = 1;
  r.measured = false;
  r.measured_on = "static estimate";
  r.timestamp = "2026-12-01T00:00:00Z";
  tuner::TuningDatabase::open(dir + "/tuning_db", gfx942.name, dsl::toolchain_id()).commit({r});
  // For gfx1100, a record whose schedule is not legal there (k is too short to split 16 ways): the default
  // is used, and kernels.json says why.
  dsl::TargetSpec gfx1100 = dsl::parse_target("hip:gfx1100").value();
  tuner::TuningRecord bad = r;
  bad.workload = tasks[1].desc(gfx1100.name);
  bad.target = gfx1100.name;
  bad.schedule.knobs = {{"tile_n", int64_t(128)}, {"unroll_k", int64_t(2)}, {"split_k", int64_t(16)}};
  tuner::TuningDatabase::open(dir + "/tuning_db", gfx1100.name, dsl::toolchain_id()).commit({bad});

  fs::path out = fs::path(dir) / "out";
  std::string log;
  REQUIRE(
      run_command(tetra_cli() + " compile " + model + " --target hip:gfx942,gfx1100 --shape x=1,64 -o " + out.string(),
                  &log) == 0);
  INFO(log);
  CHECK_THAT(log, Catch::Contains("gfx942: 2 kernels for 2 of 2 workloads, 1 with schedules from the database"));
  CHECK_THAT(log, Catch::Contains("gfx1100: 2 kernels for 2 of 2 workloads, 0 with schedules from the database"));
  nlohmann::json report = read_json(out / "model.kernels.json");
  INFO(report.dump(1));
  for (const nlohmann::json& arch : report["archs"]) {
    for (const nlohmann::json& w : arch["workloads"]) {
      bool tuned = arch["arch"] == "gfx942" && w["workload"] == tasks[0].key();
      bool failed = arch["arch"] == "gfx1100" && w["workload"] == tasks[1].key();
      const std::string source = w["schedule_source"];
      CHECK(source.rfind(tuned ? "database" : "default", 0) == 0);
      if (tuned) CHECK(w["schedule"] == r.schedule.to_json());
      if (failed) CHECK_THAT(source, Catch::Contains("the database's failed") && Catch::Contains("split_k"));
    }
  }
  // tetra inspect shows the same kernel with the records of a database elsewhere (--db), and the default
  // without them.
  const std::string elsewhere = dir + "/elsewhere";
  fs::rename(dir + "/tuning_db", elsewhere);
  const std::string inspect = tetra_cli() + " inspect " + model + " --target hip:gfx942 --shape x=1,64";
  REQUIRE(run_command(inspect + " --db " + elsewhere, &log) == 0);
  CHECK_THAT(log, Catch::Contains(r.schedule.to_string() + " (database exact (estimated))"));
  REQUIRE(run_command(inspect, &log) == 0);
  CHECK_THAT(log, !Catch::Contains("(database"));
  CHECK(run_command(inspect + " --db " + dir + "/no_such_db", &log) != 0);
  CHECK_THAT(log, Catch::Contains("no tuning database folder"));
}

TEST_CASE("tetra compile --target hip: convs get GPU kernels, and bad targets are refused", "[cli][gpu]") {
  std::string dir = temp_dir("gpu_compile_errors");
  std::string model = two_layer_model(dir);
  fs::path out = fs::path(dir) / "out";
  std::string log;
  // A conv and a MatMul: the conv runs on gpu_int4_conv.
  REQUIRE(run_command(tetra_cli() + " compile " + conv_model(dir) + " --target hip:gfx942 -o " + out.string(), &log) ==
          0);
  INFO(log);
  CHECK_THAT(log, Catch::Contains("gfx942: 2 kernels for 2 of 2 workloads"));
  nlohmann::json report = read_json(out / "model.kernels.json");
  INFO(report.dump(1));
  std::set<std::string> templates;
  for (const nlohmann::json& w : report["archs"][0]["workloads"]) {
    templates.insert(w["schedule"]["template"]);
    // Each template models its own traffic: a conv's estimate is a few microseconds, not empty.
    const double time_us = w["estimate"]["time_us"].get<double>();
    CHECK(time_us > 0);
    CHECK(time_us < 1000);
  }
  CHECK(templates == std::set<std::string>{"gpu_int4_conv", "gpu_int4_gemv"});
  CHECK(fs::exists(out / "model.gfx942.co"));

  // Each refused with a message naming what is wrong, and nothing written.
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"hip:gfx942,gfx942", "gfx942 is named twice"},
      {"hip:gfx9999", "tetra builds GPU kernels for gfx906"},
      {"hip:gfx90a,opencl", "name its CPU target as well"},
      {"hip:", "a HIP target names an AMD GPU architecture"},
  };
  for (const auto& [target, message] : bad) {
    fs::path none = fs::path(dir) / "none";
    INFO(target);
    CHECK(run_command(tetra_cli() + " compile " + model + " --target " + target + " --shape x=1,64 -o " + none.string(),
                      &log) == 2);
    CHECK_THAT(log, Catch::Contains(message));
    CHECK((!fs::exists(none) || fs::is_empty(none)));
  }
  // An unbound dynamic input.
  CHECK(run_command(tetra_cli() + " compile " + model + " --target hip:gfx942 -o " + out.string(), &log) == 2);
  CHECK_THAT(log, Catch::Contains("bind it with --shape x="));
}

TEST_CASE("tetra tune --estimate ranks an AMD arch's candidates, and compile uses the estimated records",
          "[cli][gpu]") {
  std::string dir = temp_dir("gpu_tune_estimate");
  std::string model = two_layer_model(dir);
  std::string db = dir + "/db", log;
  const std::string tune =
      tetra_cli() + " tune " + model + " --db " + db + " --shape x=1,64 --trials 4 --strategy random";
  REQUIRE(run_command(tune + " --target hip:gfx942 --estimate", &log) == 0);
  INFO(log);
  tuner::TuningDatabase records = tuner::TuningDatabase::open(db, "hip-gfx942", dsl::toolchain_id());
  std::map<std::string, std::vector<tuner::TuningRecord>> by_task;
  for (const tuner::TuningRecord& r : records.records()) by_task[r.workload.key].push_back(r);
  REQUIRE(by_task.size() == 2);
  std::map<std::string, tuner::TuningRecord> best;
  for (const auto& [key, rs] : by_task) {
    CHECK(rs.size() == 4);
    for (const tuner::TuningRecord& r : rs) {
      CHECK_FALSE(r.measured);
      CHECK(r.measured_on == "static estimate on MI300X (gfx942)");
      CHECK(r.runs == 0);
      if (!r.failed() && (!best.count(key) || r.median_ms < best[key].median_ms)) best[key] = r;
    }
    REQUIRE(best.count(key));
  }
  // Resumed: the estimated records count toward --trials, so nothing more is estimated.
  REQUIRE(run_command(tune + " --target hip:gfx942 --estimate", &log) == 0);
  CHECK(tuner::TuningDatabase::open(db, "hip-gfx942", dsl::toolchain_id()).records().size() == 8);

  // compile takes the best estimate of each workload for that arch.
  fs::path out = fs::path(dir) / "out";
  REQUIRE(run_command(tetra_cli() + " compile " + model + " --target hip:gfx942 --db " + db + " --shape x=1,64 -o " +
                          out.string(),
                      &log) == 0);
  CHECK_THAT(log, Catch::Contains("gfx942: 2 kernels for 2 of 2 workloads, 2 with schedules from the database"));
  nlohmann::json report = read_json(out / "model.kernels.json");
  for (const nlohmann::json& w : report["archs"][0]["workloads"]) {
    INFO(w.dump());
    CHECK(w["schedule_source"].get<std::string>().rfind("database", 0) == 0);
    CHECK(w["schedule"] == best[w["workload"].get<std::string>()].schedule.to_json());
  }

  // Without --estimate an AMD arch is tuned on its GPU, which this machine lacks: the error says what is
  // missing (the HIP runtime, or with Debian's a device) and points to --estimate, which is for AMD
  // archs only.
  CHECK(run_command(tune + " --target hip:gfx942", &log) == 2);
  CHECK_THAT(log, Catch::Contains("no HIP"));
  CHECK_THAT(log, Catch::Contains("--estimate"));
  CHECK(run_command(tune + " --target host --estimate", &log) == 2);
  CHECK_THAT(log, Catch::Contains("--estimate ranks kernels for AMD GPUs"));
}
