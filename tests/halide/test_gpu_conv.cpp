// The GPU conv template (schedules/gpu/conv.h) end to end without a GPU: dense, grouped and depthwise
// convs with odd sizes, strides, dilations and asymmetric pads, every weight format, with a bias and ReLU
// on some, at the default and random knob points, captured, emitted as OpenCL C, run on pocl by
// tetra-device and checked against conv_reference; and the default kernel built for every AMD arch with
// no spills and no scratch.
#include <catch2/catch.hpp>
#include <fstream>
#include <random>

#include "dsl/gpu/capture_kernels.h"
#include "dsl/gpu/code_object.h"
#include "dsl/gpu/emit_kernel.h"
#include "dsl/gpu/launch_plan_of.h"
#include "schedules/gpu/build.h"
#include "schedules/gpu/conv.h"
#include "tests/halide/gpu_device_job.h"
#include "tests/halide/qconv_cases.h"

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

std::string type_name(const Halide::Runtime::Buffer<>& b) {
  const halide_type_t t = b.type();
  if (t.code == halide_type_float) return t.bits == 16 ? "f16" : "f32";
  return t.code == halide_type_int ? "i8" : "u8";
}

// Runs `s` for the case on the device and compares with the reference; "" when they agree.
std::string run_case(const Case& c, const QuantizedWeight& w, QConvWorkload wl, const Schedule& s, std::mt19937_64& rng,
                     const fs::path& dir) {
  INFO(c.describe() << "\nweight " << wl.format.describe() << " block " << wl.block << "\nschedule " << s.to_string()
                    << (wl.epilogue.empty() ? "" : " " + wl.epilogue.describe()));
  REQUIRE(schedules::check_qconv_schedule(wl, s, gfx90a()).ok());
  QConvDef q = define_qconv(wl);
  REQUIRE(schedules::apply_gpu_conv(q, s, gfx90a()).ok());
  Result<CapturedPipeline> captured = capture_kernels({q.def.output}, q.def.arguments, "conv");
  INFO((captured.ok() ? "" : captured.failure().describe()));
  REQUIRE(captured.ok());
  Result<std::string> source = emit_kernels(captured.value().kernels, Dialect::OpenCL);
  INFO((source.ok() ? "" : source.failure().describe()));
  REQUIRE(source.ok());
  write_bytes(dir / "kernels.cl", source.value().data(), source.value().size());

  ConvBuffers b = random_buffers(c, wl, rng);
  Result<ConvInt4Buffers> packed = pack_conv_weight(w);
  REQUIRE(packed.ok());
  const ConvInt4Buffers& p = packed.value();
  nlohmann::json job = {{"source", (dir / "kernels.cl").string()},
                        {"kernels", nlohmann::json::array()},
                        {"scalars",
                         {{"Cg", wl.Cg()},
                          {"Mg", wl.Mg()},
                          {"pad_top", wl.pad_top},
                          {"pad_left", wl.pad_left},
                          {"dil_h", wl.DH},
                          {"dil_w", wl.DW},
                          {"block", wl.block > 0 ? wl.block : 1}}}};
  for (const DeviceKernel& k : captured.value().kernels) {
    Result<LaunchPlan> plan = launch_plan_of(k);
    REQUIRE(plan.ok());
    job["kernels"].push_back(plan.value().to_json());
  }
  job["buffers"]["X"] = buffer_entry(dir, "X", b.X, "f32");
  job["buffers"]["W_packed"] = buffer_entry(dir, "W_packed", p.packed, type_name(p.packed));
  if (p.scale.data()) job["buffers"]["W_scale"] = buffer_entry(dir, "W_scale", p.scale, type_name(p.scale));
  if (p.zero.data()) job["buffers"]["W_zero"] = buffer_entry(dir, "W_zero", p.zero, "i8");
  if (c.bias) job["buffers"]["bias"] = buffer_entry(dir, "bias", b.B, "f32");
  job["buffers"]["qconv"] = {
      {"type", "f32"}, {"extents", {wl.OW, wl.OH, wl.M, wl.N}}, {"output", (dir / "Y.bin").string()}};
  ProgramRun r = run_job(job, dir);
  INFO(r.output);
  REQUIRE(r.ok());
  std::ifstream in(dir / "Y.bin", std::ios::binary);
  in.read(reinterpret_cast<char*>(b.Y.data()), std::streamsize(b.Y.size_in_bytes()));
  REQUIRE(bool(in));
  return compare_with_reference(c, w, b, wl.epilogue);
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
    if (trial % 2) wl.epilogue = ConvEpilogue{false, "Relu", {}};
    // The default, then a random legal point.
    Schedule s = schedules::gpu_conv_default(wl, gfx90a());
    for (int i = 0; i < 2; ++i) {
      if (i == 1) {
        dsl::KnobSpace space = schedules::gpu_conv_space(wl, gfx90a());
        do s = space.sample(rng);
        while (!schedules::gpu_conv_check(wl, s, gfx90a()).ok());
      }
      std::string mismatches = run_case(c, w, wl, s, rng, dir);
      INFO(c.describe() << " " << s.to_string() << "\n" << mismatches);
      CHECK(mismatches.empty());
      ++runs;
    }
  }
  CHECK(runs == 24);
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
      for (const KernelResources& k : r.value()) {
        CHECK(k.vgpr_spills + k.sgpr_spills == 0);
        CHECK(k.scratch_bytes == 0);
        CHECK(k.waves_per_simd > 0);
      }
    }
  }
}
