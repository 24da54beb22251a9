// tetra's HIP and CUDA paths where there is no AMD or NVIDIA GPU: `tetra run|bench|tune --target hip|cuda`
// and tetra-device against stand-ins for the HIP runtime and the CUDA driver (tests/fake_gpu/). They run no
// kernels, so no output is checked here (the kernels' own tests check their results on pocl); they check
// every call tetra makes: each program is for the device's arch and has the kernels launched, with their
// arguments, each copy stays inside its buffer, and nothing is left allocated or loaded. A device fault, a
// missing device and an arch tetra has no code for are errors that say so.
#include <catch2/catch.hpp>
#include <filesystem>
#include <string>

#include "dsl/target.h"
#include "examples/example_models.h"
#include "tests/example_files.h"
#include "tests/test_support.h"
#include "tuner/database.h"

using namespace tetra;
using namespace tetra::test;

TEST_CASE("tetra-device opens the HIP runtime and reads the device's target ID and CUs", "[gpu][hip]") {
  const std::string dir = temp_dir("hip_device_info");
  const std::string log = dir + "/hip.log";
  std::string out;
  REQUIRE(run_command(hip_stand_in("gfx90a:sramecc+:xnack-", log) + tetra_device_program() + " info --dialect hip",
                      &out) == 0);
  CHECK_THAT(out, Catch::Contains("\"arch\":\"gfx90a:sramecc+:xnack-\""));
  CHECK_THAT(out, Catch::Contains("Stand-in AMD GPU (gfx90a:sramecc+:xnack-, 304 CUs, HIP runtime 50231000)"));
  // ROCm 6 moved the arch's name in the device properties: it is found there too.
  REQUIRE(run_command(hip_stand_in("gfx1201", log, "TETRA_FAKE_HIP_ROCM=6 TETRA_FAKE_HIP_CUS=32") +
                          tetra_device_program() + " info --dialect hip",
                      &out) == 0);
  CHECK_THAT(out, Catch::Contains("Stand-in AMD GPU (gfx1201, 32 CUs, HIP runtime 60032830)"));
  // No device: exit 2, naming what was missing.
  CHECK(run_command(
            hip_stand_in("gfx90a", log, "TETRA_FAKE_HIP_DEVICES=0") + tetra_device_program() + " info --dialect hip",
            &out) == 2);
  CHECK_THAT(out, Catch::Contains("no HIP device (hipInit failed: no ROCm-capable device is detected (100))"));
  check_stand_in_reports(log);
}

TEST_CASE("tetra run --target hip runs a whole model on the device's arch through the HIP runtime", "[gpu][hip]") {
  const std::string dir = temp_dir("hip_run");
  const std::string model = int4_example(dir, "cnn");
  const std::string run = tetra_cli() + " run " + model + " --random-inputs --explain ";
  std::string out;

  // `hip` alone takes the device's arch, features and all: code for gfx942 on an MI300X's target ID.
  for (const std::string arch : {"gfx942:sramecc+:xnack-", "gfx1100"}) {
    const std::string processor = arch.substr(0, arch.find(':'));
    const std::string log = dir + "/" + processor + ".log";
    int rc = run_command(hip_stand_in(arch, log) + run + "--target hip", &out);
    INFO(out);
    REQUIRE(rc == 0);
    CHECK_THAT(out, Catch::Contains("device: Stand-in AMD GPU (" + arch + ", 304 CUs") &&
                        Catch::Contains("(hip-" + processor + ")"));
    // Every node ran on the GPU, with one launch the stand-in counted for each the job planned.
    CHECK_THAT(out, !Catch::Contains("reference"));
    const std::string launches = out.substr(out.find(" kernel launches") - 2, 2);
    std::vector<nlohmann::json> reports = stand_in_reports(log);
    REQUIRE(reports.size() == 2);  // tetra-device info, then run
    CHECK(reports[1]["launches"] == std::stoi(launches));
    CHECK(reports[1]["launches"].get<int>() >= 8);
    CHECK(reports[1]["allocations"].get<int>() > reports[1]["launches"].get<int>());  // weights, values, views
    check_stand_in_reports(log);
  }

  // bench times the runs with the runtime's events (the stand-in's take 0.25 ms).
  const std::string bench_log = dir + "/bench.log";
  REQUIRE(run_command(hip_stand_in("gfx942", bench_log) + tetra_cli() + " bench " + model +
                          " --random-inputs --repeat 3 --target hip",
                      &out) == 0);
  CHECK_THAT(out, Catch::Contains("on Stand-in AMD GPU (gfx942, 304 CUs") && Catch::Contains("mean 0.250 ms a run"));
  check_stand_in_reports(bench_log);

  // An arch given must be the device's; an arch tetra does not build for is named.
  const std::string log = dir + "/errors.log";
  CHECK(run_command(hip_stand_in("gfx1100", log) + run + "--target hip:gfx942", &out) == 2);
  CHECK_THAT(out, Catch::Contains("this machine's HIP device is Stand-in AMD GPU (gfx1100, 304 CUs") &&
                      Catch::Contains("not gfx942"));
  CHECK(run_command(hip_stand_in("gfx1036", log) + run + "--target hip", &out) == 2);
  CHECK_THAT(out, Catch::Contains("(gfx1036, 304 CUs") && Catch::Contains("which tetra does not build for"));

  // A device fault in the third launch fails the run, naming the kernel; every buffer is still freed.
  CHECK(run_command(hip_stand_in("gfx942", log, "TETRA_FAKE_HIP_FAIL_LAUNCH=3") + run + "--target hip", &out) == 2);
  CHECK_THAT(out, Catch::Contains("the model failed on Stand-in AMD GPU") &&
                      Catch::Contains("failed: unspecified launch failure (719)"));
  CHECK(stand_in_reports(log).back()["launches"] == 3);

  // No device: an error saying so, or with --fallback cpu the CPU's answer, checked against the reference.
  CHECK(run_command(hip_stand_in("gfx942", log, "TETRA_FAKE_HIP_DEVICES=0") + run + "--target hip", &out) == 2);
  CHECK_THAT(out, Catch::Contains("--target hip: unsupported 'hip': no HIP device"));
  CHECK(
      run_command(hip_stand_in("gfx942", log, "TETRA_FAKE_HIP_DEVICES=0") + run + "--target hip --fallback cpu --check",
                  &out) == 0);
  CHECK_THAT(out, Catch::Contains("running on this machine's CPU instead") &&
                      Catch::Contains("check 'probs' against the reference") && !Catch::Contains("FAIL"));
  check_stand_in_reports(log);
}

TEST_CASE("tetra tune --target hip measures on the device and refuses kernels that return nothing",
          "[gpu][hip][tuner]") {
  // The stand-in runs no kernel, so every candidate's output is left unwritten: each trial must fail its
  // check against the reference, and the tune must say that no schedule works rather than look done.
  const std::string dir = temp_dir("hip_tune");
  const std::string model = int4_example(dir, "mlp");
  const std::string log = dir + "/hip.log";
  std::string out;
  int rc = run_command(hip_stand_in("gfx90a:sramecc+:xnack-", log) + tetra_cli() + " tune " + model + " --db " + dir +
                           "/db --target hip --trials 2 --shape x=1,64",
                       &out);
  INFO(out);
  CHECK(rc == 1);
  CHECK_THAT(out, Catch::Contains("outputs differ") && Catch::Contains("no schedule for them works on hip-gfx90a"));
  REQUIRE(stand_in_reports(log).size() >= 3);  // tetra-device info, then a run a candidate
  check_stand_in_reports(log);
  // Compiling ahead of time needs the arch named too.
  CHECK(run_command(tetra_cli() + " compile " + model + " -o " + dir + "/lib --shape x=1,64 --target hip", &out) == 2);
  CHECK_THAT(out, Catch::Contains("name the GPU's arch, as hip:gfx942 or cuda:sm_90"));
  // Ranking by the estimate needs the arch named: the device's would be a guess where there is none.
  CHECK(run_command(tetra_cli() + " tune " + model + " --db " + dir + "/db --target hip --estimate", &out) == 2);
  CHECK_THAT(out, Catch::Contains("name the GPU's arch, as hip:gfx942"));
}

TEST_CASE("tetra run --target hip takes the device's records: measured first, from its CU count first", "[gpu][hip]") {
  const std::string dir = temp_dir("hip_records");
  const std::string model = int4_example(dir, "cnn");
  const std::string db = dir + "/db";
  std::string out;
  REQUIRE(run_command(tetra_cli() + " tune " + model + " --db " + db + " --target hip:gfx942 --estimate --trials 2",
                      &out) == 0);
  const std::string log = dir + "/hip.log";
  const std::string run = tetra_cli() + " run " + model + " --db " + db + " --random-inputs --explain --target hip";

  // Only estimates: each conv runs the best, and --explain says it is an estimate.
  REQUIRE(run_command(hip_stand_in("gfx942:sramecc+:xnack-", log) + run, &out) == 0);
  CHECK_THAT(out, Catch::Contains("kernel tetra.QConv 'Conv_0': ") && Catch::Contains("(database exact (estimated))"));
  REQUIRE(out.find("kernel tetra.QConv 'Conv_0': ") != std::string::npos);

  // A measurement of the first conv's worse estimate, from an MI300A (228 CUs), outranks the estimates.
  tuner::TuningDatabase records = tuner::TuningDatabase::open(db, "hip-gfx942", dsl::toolchain_id());
  const std::string first_conv = "kernel tetra.QConv 'Conv_0': ";
  const size_t at = out.find(first_conv) + first_conv.size();
  const std::string chosen = out.substr(at, out.find(" (database", at) - at);
  const tuner::TuningRecord* estimate = nullptr;  // the chosen schedule's record: its workload is Conv_0's
  for (const tuner::TuningRecord& r : records.records())
    if (r.schedule.to_string() == chosen && r.workload.key.rfind("qconv", 0) == 0) estimate = &r;
  REQUIRE(estimate);
  std::optional<tuner::TuningRecord> measured;
  for (const tuner::TuningRecord& r : records.records())
    if (r.workload.key == estimate->workload.key && !r.failed() && r.schedule.to_string() != chosen) measured = r;
  REQUIRE(measured);
  measured->measured = true;
  measured->measured_on = "AMD Instinct MI300A (gfx942:sramecc+:xnack-, 228 CUs, HIP runtime 60032830)";
  measured->runs = 10;
  records.commit({*measured});
  const std::string want = first_conv + measured->schedule.to_string() + " (database exact";
  // On an MI300X (304 CUs), as nearest; on an MI300A, as its own.
  REQUIRE(run_command(hip_stand_in("gfx942:sramecc+:xnack-", log) + run, &out) == 0);
  CHECK_THAT(out, Catch::Contains(want + " (as nearest: measured on 228 compute units, this GPU has 304))"));
  REQUIRE(run_command(hip_stand_in("gfx942:sramecc+:xnack-", log, "TETRA_FAKE_HIP_CUS=228") + run, &out) == 0);
  CHECK_THAT(out, Catch::Contains(want + ")"));
  check_stand_in_reports(log);
}

TEST_CASE("tetra run --target cuda runs a whole model through the CUDA driver", "[gpu][cuda]") {
  const std::string dir = temp_dir("cuda_run");
  const std::string model = int4_example(dir, "cnn");
  const std::string run = tetra_cli() + " run " + model + " --random-inputs ";
  const std::string log = dir + "/cuda.log";
  std::string out;
  // `cuda` alone takes the device's SM version; PTX for an older one runs too, as the driver compiles it.
  int rc = run_command(cuda_stand_in(90, log) + run + "--target cuda", &out);
  INFO(out);
  REQUIRE(rc == 0);
  CHECK_THAT(out, Catch::Contains("device: Stand-in NVIDIA GPU (sm_90, 132 SMs, CUDA driver 12.4) (cuda-sm90)"));
  const std::string launches = out.substr(out.find(" kernel launches") - 2, 2);
  CHECK(stand_in_reports(log).back()["launches"] == std::stoi(launches));
  CHECK(run_command(cuda_stand_in(90, log) + run + "--target cuda:sm_80", &out) == 2);
  CHECK_THAT(
      out, Catch::Contains("this machine's CUDA device is Stand-in NVIDIA GPU (sm_90") && Catch::Contains("not sm_80"));
  CHECK(run_command(cuda_stand_in(90, log, "TETRA_FAKE_CUDA_FAIL_LAUNCH=4") + run + "--target cuda", &out) == 2);
  CHECK_THAT(out, Catch::Contains("failed: CUDA_ERROR_LAUNCH_FAILED (719)"));
  CHECK(run_command(cuda_stand_in(90, log, "TETRA_FAKE_CUDA_DEVICES=0") + run + "--target cuda", &out) == 2);
  CHECK_THAT(out, Catch::Contains("--target cuda: unsupported 'cuda': ") && Catch::Contains("CUDA_ERROR_NO_DEVICE"));
  check_stand_in_reports(log);
}
