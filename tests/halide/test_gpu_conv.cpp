// The GPU conv template (schedules/gpu/conv.h), direct and implicit GEMM, end to end without a GPU:
// dense, grouped and depthwise convs with odd sizes, strides, dilations and asymmetric pads, every weight
// format, with a bias and ReLU on some, at the default and random knob points, captured, emitted as
// OpenCL C, run on pocl by tetra-device and checked against conv_reference; the staged weight's barriers
// shown to matter; and the default kernels built for every AMD arch with no spills and no scratch.
#include <catch2/catch.hpp>
#include <fstream>
#include <random>

#include "dsl/gpu/capture_kernels.h"
#include "dsl/gpu/code_object.h"
#include "dsl/gpu/emit_kernel.h"
#include "dsl/gpu/launch_plan_of.h"
#include "schedules/gpu/build.h"
#include "schedules/gpu/conv.h"
#include "tests/halide/gpu_jobs.h"
#include "tests/halide/qconv_cases.h"
#include "tests/oclgrind.h"

using namespace tetra;
using namespace tetra::dsl;
using namespace tetra::dsl::gpu;
using namespace tetra::gpu_test;
using namespace tetra::qconv_test;

namespace {

const TargetSpec& gfx90a() {
  static const TargetSpec t = parse_target("hip:gfx90a").value();
  return t;
}

}  // namespace

TEST_CASE("GPU int4 conv: dense, grouped and depthwise convs on an OpenCL device match the reference", "[gpu]") {
  if (!opencl_runs_here()) return;
  fs::path dir = work_dir("conv");
  std::mt19937_64 rng(20261204);
  std::vector<WeightSpec> specs = all_specs();
  struct Kernel {
    int64_t KH, KW, SH, SW;
  };
  const std::vector<Kernel> kernels = {{3, 3, 1, 1}, {3, 3, 2, 2}, {1, 1, 1, 1}, {5, 3, 1, 2}};
  int runs = 0;
  for (size_t trial = 0; trial < 12; ++trial) {
    const Kernel& k = kernels[trial % kernels.size()];
    // Dense, depthwise and grouped in turn.
    Case c = random_case(k.KH, k.KW, k.SH, k.SW, rng, trial % 3 == 0 ? 2 : trial % 3 == 1 ? 1 : 0);
    const WeightSpec& spec = specs[trial % specs.size()];
    QuantizedWeight w = random_weight(c.weight_shape(), spec, rng);
    QConvWorkload wl = workload_of(c, w);
    if (trial % 2) wl.epilogue = OutputEpilogue{false, "Relu", {}};
    // The default, then a random legal point.
    Schedule s = schedules::gpu_conv_default(wl, gfx90a());
    for (int i = 0; i < 2; ++i) {
      if (i == 1) {
        dsl::KnobSpace space = schedules::gpu_conv_space(wl, gfx90a());
        do s = space.sample(rng);
        while (!schedules::gpu_conv_check(wl, s, gfx90a()).ok());
      }
      ProgramRun r = run_job(qconv_job(c, w, wl, s, gfx90a(), rng, dir, JobDialect{}), dir);
      INFO(c.describe() << " " << s.to_string() << "\n" << r.output);
      CHECK(r.status == 0);  // ran, and matched the reference
      ++runs;
    }
  }
  CHECK(runs == 24);
  fs::remove_all(dir);
}

TEST_CASE("GPU int4 conv with split_c: threads sharing the input channels, staged or not, dense and grouped", "[gpu]") {
  if (!opencl_runs_here()) return;
  fs::path dir = work_dir("conv_split_c");
  std::mt19937_64 rng(20261206);
  std::vector<WeightSpec> specs = all_specs();
  int runs = 0;
  for (size_t trial = 0; trial < 8; ++trial) {
    // Dense and grouped convs, 3x3 and 1x1, stride 1 and 2.
    Case c =
        random_case(trial % 4 < 2 ? 3 : 1, trial % 4 < 2 ? 3 : 1, 1 + trial % 2, 1 + trial % 2, rng, trial % 2 ? 2 : 0);
    if (trial == 0) c.C = 64, c.M = 24, c.group = 1, c.H = c.W = 7, c.pads = {1, 1, 1, 1}, c.DH = c.DW = 1;  // 7x7
    QuantizedWeight w = random_weight(c.weight_shape(), specs[trial % specs.size()], rng);
    QConvWorkload wl = workload_of(c, w);
    if (trial % 2) wl.epilogue = OutputEpilogue{false, "Relu", {}};
    Schedule s = schedules::gpu_conv_default(wl, gfx90a());
    s.knobs["threads_m"] = int64_t(1), s.knobs["split_c"] = int64_t(trial % 3 == 2 ? 4 : 2);
    s.knobs["shared_stage"] = std::string(trial < 4 ? "w" : "none");
    s.knobs["tile_k"] = int64_t(8);
    INFO(c.describe() << " " << s.to_string());
    REQUIRE(schedules::gpu_conv_check(wl, s, gfx90a()).ok());
    Result<schedules::GpuKernels> lowered = schedules::lower_gpu_qconv(wl, s, gfx90a(), "conv");
    INFO((lowered.ok() ? "" : lowered.failure().describe()));
    REQUIRE(lowered.ok());
    // The block is split_c times the threads of its tile.
    CHECK(constant_threads_per_block(lowered.value().kernels[0]) ==
          s.get_int("tile_ow") / s.get_int("thread_ow") * s.get_int("tile_oh") * s.get_int("split_c"));
    ProgramRun r = run_job(qconv_job(c, w, wl, s, gfx90a(), rng, dir, JobDialect{}), dir);
    INFO(r.output);
    CHECK(r.status == 0);  // ran, and matched the reference
    ++runs;
  }
  CHECK(runs == 8);
  fs::remove_all(dir);
}

TEST_CASE("GPU int4 conv: code objects for every AMD arch with no spills", "[gpu]") {
  // ResNet's 3x3 64 -> 64 on 56x56, and MobileNet's depthwise 3x3 on 112x112.
  for (bool depthwise : {false, true}) {
    QConvWorkload wl;
    wl.N = 1, wl.C = wl.M = depthwise ? 32 : 64, wl.group = depthwise ? 32 : 1;
    wl.H = wl.W = wl.OH = wl.OW = depthwise ? 112 : 56;
    wl.KH = wl.KW = 3, wl.pad_top = wl.pad_left = wl.pad_bottom = wl.pad_right = 1;
    wl.format.grid = ConvInt4Format::Grid::PerAxis;
    wl.has_bias = true;
    for (const std::string& arch : amd_archs()) {
      INFO(arch << (depthwise ? " depthwise" : " dense"));
      TargetSpec target = parse_target("hip:" + arch).value();
      Schedule s = schedules::default_qconv_schedule(wl, target).value();
      CHECK(s.template_name == "gpu_int4_conv");
      Result<schedules::GpuKernels> lowered = schedules::lower_gpu_qconv(wl, s, target, "conv");
      INFO((lowered.ok() ? "" : lowered.failure().describe()));
      REQUIRE(lowered.ok());
      fs::path object = fs::temp_directory_path() / ("tetra_conv_" + arch + "_" + std::to_string(::getpid()) + ".co");
      Result<std::vector<KernelResources>> r =
          schedules::build_gpu_code_object(lowered.value().kernels, target, object.string());
      fs::remove(object);
      INFO((r.ok() ? "" : r.failure().describe()));
      REQUIRE(r.ok());
      // Dense convs default to the implicit GEMM, its weight chunk in workgroup memory.
      CHECK(s.get_string("shared_stage") == (depthwise ? "none" : "w"));
      for (const KernelResources& k : r.value()) {
        CHECK((k.lds_bytes > 0) == !depthwise);
        CHECK(k.vgpr_spills + k.sgpr_spills == 0);
        CHECK(k.scratch_bytes == 0);
        CHECK(k.waves_per_simd > 0);
      }
    }
  }
}

TEST_CASE("GPU int4 conv: the implicit GEMM's weight chunks need their barriers", "[gpu]") {
  if (!opencl_runs_here()) return;
  fs::path dir = work_dir("conv_barriers");
  std::mt19937_64 rng(20261205);
  // 20 input channels in chunks of 4 (5 chunks), and 24 output channels: a whole tile of 16 and one
  // past M, whose channels read channel M - 1.
  Case c{};
  c.N = 1, c.C = 20, c.H = 13, c.W = 15, c.M = 24, c.group = 1;
  c.KH = c.KW = 3, c.SH = c.SW = 1, c.DH = c.DW = 1;
  c.pads = {1, 1, 1, 1};
  c.bias = true;
  QuantizedWeight w = random_weight(c.weight_shape(), all_specs().front(), rng);
  QConvWorkload wl = workload_of(c, w);
  Schedule s = schedules::gpu_conv_default(wl, gfx90a());
  REQUIRE(s.get_string("shared_stage") == "w");
  s.knobs["thread_m"] = int64_t(4);  // 16 channels a block (the default takes 2 a thread on so small a map)
  REQUIRE(s.get_int("threads_m") == 4);
  s.knobs["tile_k"] = int64_t(4);
  ProgramRun good = run_job(qconv_job(c, w, wl, s, gfx90a(), rng, dir, JobDialect{}), dir);
  INFO(good.output);
  REQUIRE(good.status == 0);
  // Without them, threads read a chunk before it is written, or after the next one overwrote it.
  int removed = 0;
  auto strip = [&](std::string text) { return remove_opencl_barriers(std::move(text), &removed); };
  ProgramRun bad = run_job(qconv_job(c, w, wl, s, gfx90a(), rng, dir, JobDialect{}, strip), dir);
  REQUIRE(removed > 0);
  INFO(bad.output);
  CHECK(bad.status == 1);  // it ran, and the check failed
  CHECK_THAT(bad.output, Catch::Contains("outputs differ"));
  fs::remove_all(dir);
}

TEST_CASE("GPU int4 convs on Oclgrind: no access past a buffer, no data race, and the reference matched",
          "[gpu][oclgrind]") {
  if (!opencl_runs_here()) return;
  REQUIRE_FALSE(test::oclgrind_icd().empty());  // scripts/setup.sh installs oclgrind
  fs::path dir = work_dir("oclgrind_conv");
  std::mt19937_64 rng(20261207);
  const std::vector<WeightSpec> specs = all_specs();
  int runs = 0;
  // Dense (whose weight chunks are staged), depthwise and grouped, 3x3 and 1x1, with split_c and without.
  for (size_t trial = 0; trial < 6; ++trial) {
    const int64_t k = trial % 3 == 2 ? 1 : 3;
    Case c = random_case(k, k, 1 + trial % 2, 1 + trial % 2, rng, trial < 2 ? 2 : trial < 4 ? 1 : 0);
    // A 1x1 conv of 40 channels, staged in chunks of 32: its last chunk is partial.
    if (trial == 5) c.C = 40, c.M = 24, c.group = 1;
    QuantizedWeight w = random_weight(c.weight_shape(), specs[trial % specs.size()], rng);
    QConvWorkload wl = workload_of(c, w);
    if (trial % 2) wl.epilogue = OutputEpilogue{false, "Relu", {}};
    Schedule s = schedules::gpu_conv_default(wl, gfx90a());
    if (trial == 1 || trial == 5) {
      s.knobs["threads_m"] = int64_t(1), s.knobs["split_c"] = int64_t(2);
      s.knobs["shared_stage"] = std::string("w"), s.knobs["tile_k"] = int64_t(trial == 5 ? 32 : 8);
    }
    INFO(c.describe() << " " << s.to_string());
    REQUIRE(schedules::gpu_conv_check(wl, s, gfx90a()).ok());
    ProgramRun r = run_job_on_oclgrind(qconv_job(c, w, wl, s, gfx90a(), rng, dir, JobDialect{}), dir);
    INFO(r.output);
    CHECK(test::oclgrind_faults(r.output).empty());
    CHECK(r.status == 0);  // ran, and matched the reference
    CHECK_THAT(r.output, Catch::Contains("Oclgrind Simulator"));
    ++runs;
  }
  CHECK(runs == 6);
  fs::remove_all(dir);
}
