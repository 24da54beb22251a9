// `tetra tune --target opencl` on this machine's OpenCL device (pocl on the CPU): the whole GPU tuning
// loop. Each candidate is lowered by a GPU template, emitted as OpenCL C, run by tetra-device in a
// process of its own, checked against the reference on fresh random data and timed; the records are
// stored under the device's name. A wrong, crashing or hanging candidate is a failed record, and tuning
// goes on.
#include <signal.h>
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "dsl/target.h"
#include "tests/faulty_runner.h"
#include "tests/test_support.h"
#include "tools/model_builder.h"
#include "tuner/database.h"
#include "tuner/runner.h"
#include "tuner/tune.h"

using namespace tetra;
using namespace tetra::test;

namespace {

namespace fs = std::filesystem;

// The OpenCL device's name, as tetra-device reports it.
std::string opencl_device_name() {
  std::string out;
  REQUIRE(run_command(tetra_device_program() + " info --dialect opencl", &out) == 0);
  nlohmann::json info = nlohmann::json::parse(out);
  return info.at("device").get<std::string>();
}

// An int4 GEMV (a's batch bound to 1) and, `with_conv`, an int4 direct conv: one task of each GPU kind.
std::string gemv_and_conv_model(const std::string& dir, bool with_conv = true) {
  ModelBuilder b(21);
  b.input("a", DType::Float32, {-1, 64});
  b.output("y", DType::Float32);
  b.initializer("w", random_tensor(DType::Int4, {64, 96}, -8, 7));
  b.initializer("w_s", random_tensor(DType::Float32, {2, 96}, 0.01, 0.1));
  b.node("DequantizeLinear", {"w", "w_s"}, {"w_f"}, {{"axis", 0}, {"block_size", 32}});
  b.node("MatMul", {"a", "w_f"}, {"y"});
  if (!with_conv) return b.save(dir + "/gemv.onnx");
  b.input("x", DType::Float32, {1, 8, 12, 12});
  b.output("c", DType::Float32);
  b.initializer("k", random_tensor(DType::Int4, {16, 8, 3, 3}, -8, 7));
  b.initializer("k_s", random_tensor(DType::Float32, {16}, 0.01, 0.1));
  b.initializer("bias", random_tensor(DType::Float32, {16}, -0.1, 0.1));
  b.node("DequantizeLinear", {"k", "k_s"}, {"k_f"}, {{"axis", 0}});
  b.node("Conv", {"x", "k_f", "bias"}, {"c"}, {{"pads", std::vector<int64_t>{1, 1, 1, 1}}});
  return b.save(dir + "/gemv_conv.onnx");
}

// Whether a running process's command line mentions `text`.
bool process_mentions(const std::string& text) {
  for (const fs::directory_entry& e : fs::directory_iterator("/proc")) {
    std::ifstream in(e.path() / "cmdline", std::ios::binary);
    std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmdline.find(text) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("tune --target opencl measures GPU candidates on the OpenCL device and stores them under its name",
          "[tuner][opencl]") {
  if (!opencl_runs_here("the OpenCL tuning tests")) return;
  const std::string dir = temp_dir("tune_opencl");
  const std::string model = gemv_and_conv_model(dir);
  const std::string device = opencl_device_name();
  const std::string target = dsl::opencl_target_name(device);
  std::string out;
  int rc = run_command(tetra_cli() + " tune " + model + " --target opencl --db " + dir + "/db --trials 3 --repeats 3" +
                           " --strategy random --shape a=1,64 2>&1",
                       &out);
  INFO(out);
  REQUIRE(rc == 0);
  CHECK_THAT(out, Catch::Contains("for " + target));

  tuner::TuningDatabase db = tuner::TuningDatabase::open(dir + "/db", target, dsl::toolchain_id());
  std::map<std::string, int> per_task;
  for (const tuner::TuningRecord& r : db.records()) {
    INFO(r.workload.key << " " << r.schedule.to_string() << ": " << r.error);
    ++per_task[r.workload.key];
    CHECK(r.target == target);
    CHECK_FALSE(r.failed());
    CHECK(r.measured);
    CHECK(r.runs == 3);
    CHECK(r.median_ms > 0);
    CHECK((r.min_ms <= r.median_ms && r.median_ms <= r.max_ms));  // over batches of the runs
    CHECK(r.measured_on == device);
    CHECK_THAT(r.schedule.template_name, Catch::StartsWith("gpu_"));
  }
  REQUIRE(per_task.size() == 2);
  for (const auto& [key, count] : per_task) CHECK(count == 3);
  CHECK(per_task.begin()->first.rfind("qconv n1 c8 h12 w12 m16", 0) == 0);
  CHECK(std::next(per_task.begin())->first.rfind("qmatmul m1 k64 n96 int4", 0) == 0);

  // A run resumes: the database holds every planned trial, so nothing is measured again.
  rc = run_command(
      tetra_cli() + " tune " + model + " --target opencl --db " + dir + "/db --trials 3 --shape a=1,64 --status 2>&1",
      &out);
  CHECK(rc == 0);
  CHECK_THAT(out, Catch::Contains("6 trials done, 0 left"));

  // tetra run on the device uses the records: tune, database, run, on the OpenCL path.
  rc = run_command(tetra_cli() + " run " + model + " --target opencl --db " + dir +
                       "/db --shape a=1,64 --random-inputs --check --explain 2>&1",
                   &out);
  CHECK(rc == 0);
  CHECK_THAT(out, Catch::Contains("kernel tetra.QMatMul") && Catch::Contains("kernel tetra.QConv") &&
                      Catch::Contains("(database ") && !Catch::Contains("default schedule") &&
                      !Catch::Contains("FAIL"));

  // Another OpenCL device's target is refused, naming this machine's.
  rc = run_command(tetra_cli() + " tune " + model + " --target opencl-some-other-gpu --db " + dir + "/db2 2>&1", &out);
  CHECK(rc == 2);
  CHECK_THAT(out, Catch::Contains("this machine's OpenCL device is " + target));
  CHECK_FALSE(fs::exists(dir + "/db2/records.json"));
}

TEST_CASE("tune --target opencl on a float16 model measures the float16 GEMV against float16 activations",
          "[tuner][opencl][f16]") {
  if (!opencl_runs_here("the OpenCL tuning tests")) return;
  const std::string dir = temp_dir("tune_opencl_f16");
  ModelBuilder b(21);
  b.input("a", DType::Float16, {-1, 64});
  b.output("y", DType::Float16);
  b.initializer("w", random_tensor(DType::Int4, {64, 96}, -8, 7));
  b.initializer("w_s", random_tensor(DType::Float16, {2, 96}, 0.01, 0.1));
  b.node("DequantizeLinear", {"w", "w_s"}, {"w_f"}, {{"axis", 0}, {"block_size", 32}});
  b.node("MatMul", {"a", "w_f"}, {"y"});
  const std::string model = b.save(dir + "/gemv_f16.onnx");
  const std::string target = dsl::opencl_target_name(opencl_device_name());
  std::string out;
  int rc = run_command(tetra_cli() + " tune " + model + " --target opencl --db " + dir + "/db --trials 4 --repeats 2" +
                           " --strategy random --shape a=1,64 2>&1",
                       &out);
  INFO(out);
  REQUIRE(rc == 0);
  tuner::TuningDatabase db = tuner::TuningDatabase::open(dir + "/db", target, dsl::toolchain_id());
  REQUIRE(db.records().size() == 4);
  int h2 = 0;
  for (const tuner::TuningRecord& r : db.records()) {
    INFO(r.workload.key << " " << r.schedule.to_string() << ": " << r.error);
    CHECK_THAT(r.workload.key, Catch::EndsWith(" a16"));  // a workload of its own
    CHECK_FALSE(r.failed());  // float16 scales included: checked within the float16 GEMV's tolerance
    h2 += r.schedule.template_name == "gpu_int4_gemv_h2";
  }
  CHECK(h2 >= 1);  // the default comes first
  rc = run_command(tetra_cli() + " run " + model + " --target opencl --db " + dir +
                       "/db --shape a=1,64 --random-inputs --check --explain 2>&1",
                   &out);
  CHECK(rc == 0);
  CHECK_THAT(out, Catch::Contains("(database ") && !Catch::Contains("FAIL"));
}

TEST_CASE("tune --target opencl: a wrong, crashing or hanging candidate is a failed record and tuning goes on",
          "[tuner][opencl]") {
  if (!opencl_runs_here("the OpenCL tuning tests")) return;
  const std::string dir = temp_dir("tune_opencl_faults");
  const std::string model = gemv_and_conv_model(dir), gemv_model = gemv_and_conv_model(dir, false);
  const std::string device = opencl_device_name();
  // The workers' job folders go here, so that what a killed worker left behind can be looked for.
  const std::string jobs = dir + "/tmp";
  fs::create_directories(jobs);
  const char* old_tmpdir = std::getenv("TMPDIR");
  const std::string saved = old_tmpdir ? old_tmpdir : "";
  ::setenv("TMPDIR", jobs.c_str(), 1);

  // The worker's own faults, and the device's: a kernel that spins forever in tetra-device.
  const std::vector<std::pair<std::string, std::string>> faults = {
      {"wrong", "outputs differ"}, {"crash", "crashed"}, {"hang", "timed out"}, {"device-hang", "timed out"}};
  for (const auto& [fault, error] : faults) {
    SECTION(fault) {
      tuner::TuneOptions o;
      // A hang costs the whole timeout, so the hangs are made in the GEMV's task alone.
      const bool hangs = fault == "hang" || fault == "device-hang";
      o.model = hangs ? gemv_model : model;
      o.shapes = {{"a", {1, 64}}};
      o.db_dir = dir + "/db_" + fault;
      o.trials = 3;
      o.strategy = tuner::Strategy::Random;
      o.repeats = 2;
      o.worker = tetra_cli();
      o.timeout_s = 20;  // pocl builds a candidate in a second or two, a few under a loaded machine
      o.target = dsl::parse_target(dsl::opencl_target_name(device)).value();
      o.device_program = tetra_device_program();
      o.device_name = device;
      FaultyRunner runner(fault, o.timeout_s);
      tuner::tune(o, runner);

      tuner::TuningDatabase db = tuner::TuningDatabase::open(o.db_dir, o.target.name, dsl::toolchain_id());
      std::map<std::string, int> records, failed;
      for (const tuner::TuningRecord& r : db.records()) {
        INFO(r.workload.key << " " << r.schedule.to_string() << ": " << r.error);
        ++records[r.workload.key];
        if (r.failed()) {
          ++failed[r.workload.key];
          CHECK_THAT(r.error, Catch::Contains(error));
        }
      }
      REQUIRE(records.size() == (hangs ? 1 : 2));
      for (const auto& [key, count] : records) {
        CHECK(count == 3);
        CHECK(failed[key] == 1);  // the second candidate; the third ran after it
      }
      // A timed-out worker's tetra-device was killed with it, and its job folder removed by a later worker.
      CHECK_FALSE(process_mentions(jobs));
      for (const fs::directory_entry& e : fs::directory_iterator(jobs)) FAIL("left behind: " << e.path());
    }
  }
  if (old_tmpdir)
    ::setenv("TMPDIR", saved.c_str(), 1);
  else
    ::unsetenv("TMPDIR");
}

TEST_CASE("killing tune --target opencl ends the kernel its worker left spinning on the device", "[tuner][opencl]") {
  if (!opencl_runs_here("the OpenCL tuning tests")) return;
  const std::string dir = temp_dir("tune_opencl_killed");
  const std::string model = gemv_and_conv_model(dir);
  const std::string jobs = dir + "/tmp";
  fs::create_directories(jobs);
  std::string pid_text;
  REQUIRE(run_command("TMPDIR=" + jobs + " TETRA_TEST_WORKER_FAULT=device-hang " + tetra_cli() + " tune " + model +
                          " --target opencl --db " + dir + "/db --trials 1 --timeout 600 --shape a=1,64" +
                          " >/dev/null 2>&1 & echo $!",
                      &pid_text) == 0);
  const pid_t tuner = pid_t(std::stol(pid_text));
  auto device_job_running = [&] { return process_mentions(jobs + "/tetra_device_job_"); };
  for (int i = 0; i < 600 && !device_job_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  REQUIRE(device_job_running());  // tetra-device spins in the candidate's kernel
  ::kill(tuner, SIGKILL);
  for (int i = 0; i < 100 && device_job_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK_FALSE(device_job_running());  // the worker died with the tuner, and tetra-device with the worker
  ::waitpid(tuner, nullptr, WNOHANG);
}
