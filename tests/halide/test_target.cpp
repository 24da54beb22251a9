// Target detection and target strings.
#include <catch2/catch.hpp>

#include "dsl/target.h"

using namespace tetra::dsl;
using HT = Halide::Target;

namespace {

CpuFeatures zen4() {
  CpuFeatures f;
  f.sse41 = f.avx = f.avx2 = f.fma = f.f16c = true;
  f.avx512f = f.avx512cd = f.avx512vl = f.avx512bw = f.avx512dq = true;
  f.avx512ifma = f.avx512vbmi = f.avx512vnni = f.avx512bf16 = true;
  f.avx512fp16 = false;
  return f;
}

}  // namespace

TEST_CASE("Zen 4 features give avx512_cannonlake, never sapphirerapids", "[target]") {
  HT t = halide_target_for(zen4());
  CHECK(t.has_feature(HT::AVX512_Skylake));
  CHECK(t.has_feature(HT::AVX512_Cannonlake));
  CHECK_FALSE(t.has_feature(HT::AVX512_SapphireRapids));
  CHECK(canonical_cpu_name(t) == "x86-64-avx512-vnni");

  CpuFeatures spr = zen4();
  spr.avx512fp16 = true;
  CHECK(halide_target_for(spr).has_feature(HT::AVX512_SapphireRapids));
  CHECK(canonical_cpu_name(halide_target_for(spr)) == "x86-64-avx512-fp16");

  CpuFeatures skx = zen4();
  skx.avx512ifma = skx.avx512vbmi = skx.avx512vnni = skx.avx512bf16 = false;
  CHECK(canonical_cpu_name(halide_target_for(skx)) == "x86-64-avx512");

  CpuFeatures no_os_avx512 = zen4();  // what detect_cpu_features reports when XCR0 lacks ZMM state
  no_os_avx512.avx512f = no_os_avx512.avx512cd = no_os_avx512.avx512vl = false;
  no_os_avx512.avx512bw = no_os_avx512.avx512dq = false;
  CHECK(canonical_cpu_name(halide_target_for(no_os_avx512)) == "x86-64-avx2");
  CHECK(canonical_cpu_name(halide_target_for(CpuFeatures{})) == "x86-64");
}

TEST_CASE("the host target follows CPUID", "[target]") {
  CpuFeatures f = detect_cpu_features();
  const TargetSpec& host = host_target();
  INFO("CPU " << f.vendor << ": " << f.describe() << "\nHalide target " << host.halide.to_string() << ", name "
              << host.name);
  CHECK(host.is_cpu());
  CHECK(host.halide.has_feature(HT::AVX512_SapphireRapids) == f.avx512fp16);
  CHECK(host.halide.has_feature(HT::AVX2) == f.avx2);
  CHECK(parse_target("host").value().name == host.name);
}

TEST_CASE("a target runs on this machine when the host has its architecture and features", "[target]") {
  CpuFeatures f = detect_cpu_features();
  CHECK(runs_on_host(host_target()).ok());
  CHECK(runs_on_host(parse_target("x86-64-avx2").value()).ok() == f.avx2);
  CHECK(runs_on_host(parse_target("x86-64-avx512-fp16").value()).ok() == f.avx512fp16);
  for (const char* elsewhere : {"arm-64", "hip:gfx90a"}) {
    Status st = runs_on_host(parse_target(elsewhere).value());
    REQUIRE_FALSE(st.ok());
    CHECK_THAT(st.failure().describe(), Catch::Contains("cannot run code for it"));
  }
  CHECK_FALSE(parse_runnable_target("arm-64").ok());
  CHECK(parse_runnable_target("host").value().name == host_target().name);
}

TEST_CASE("a vectorised pipeline JIT-compiled for the host target runs", "[target]") {
  // With a target that claims instructions the CPU lacks, this dies with SIGILL.
  Halide::Func f("f");
  Halide::Var x("x");
  Halide::Expr h = Halide::cast<Halide::float16_t>(Halide::cast<float>(x) * 0.5f);  // F16C / AVX512-FP16 paths
  f(x) = Halide::cast<float>(h) * 3.0f + Halide::sqrt(Halide::cast<float>(x));
  f.vectorize(x, 32);
  Halide::Buffer<float> out(1000);
  f.realize(out, host_target().halide);
  for (int i = 0; i < 1000; ++i) {
    float want = float(Halide::float16_t(float(i) * 0.5f)) * 3.0f + std::sqrt(float(i));
    REQUIRE(out(i) == Approx(want).epsilon(1e-6));
  }
}

TEST_CASE("target strings parse to canonical names that parse back", "[target]") {
  for (const char* name : {"x86-64", "x86-64-sse41", "x86-64-avx", "x86-64-avx2", "x86-64-avx512",
                           "x86-64-avx512-vnni", "x86-64-avx512-fp16", "arm-64", "arm-64-dotprod", "hip-gfx90a",
                           "hip-gfx1100", "cuda-sm80"}) {
    Result<TargetSpec> t = parse_target(name);
    INFO(name);
    REQUIRE(t.ok());
    CHECK(t.value().name == name);
    CHECK(parse_target(t.value().name).value().name == name);
  }
  CHECK(parse_target("x86-64-linux-avx2").value().name == "x86-64-avx2");
  CHECK(parse_target("X86-64-AVX512").value().name == "x86-64-avx512");
  CHECK(parse_target("x86-64-linux-sse41-avx-avx2-fma-f16c").value().name == "x86-64-avx2");
  CHECK(parse_target("arm-64-linux").value().name == "arm-64");
  CHECK(parse_target("arm-64-linux").value().halide.arch == HT::ARM);

  TargetSpec avx512 = parse_target("x86-64-avx512").value();
  CHECK(avx512.natural_lanes() == 16);
  CHECK(parse_target("x86-64-avx2").value().natural_lanes() == 8);
  CHECK_FALSE(avx512.halide.has_feature(HT::AVX512_Cannonlake));
}

TEST_CASE("GPU targets carry the architecture and wavefront", "[target]") {
  TargetSpec mi200 = parse_target("hip:gfx90a").value();
  CHECK(mi200.family == TargetFamily::Hip);
  CHECK(mi200.gpu_arch == "gfx90a");
  CHECK(mi200.wavefront == 64);
  CHECK(mi200.name == "hip-gfx90a");
  CHECK(parse_target("hip:gfx942").value().wavefront == 64);
  CHECK(parse_target("hip:gfx1100").value().wavefront == 32);
  TargetSpec a100 = parse_target("cuda:sm_80").value();
  CHECK(a100.family == TargetFamily::Cuda);
  CHECK(a100.wavefront == 32);
  CHECK(a100.halide.has_feature(HT::CUDACapability80));
  // Hopper: tetra emits its own kernels, so archs newer than Halide 14's list are targets too, with the
  // newest Halide capability below them.
  TargetSpec h200 = parse_target("cuda:sm_90").value();
  CHECK(h200.gpu_arch == "sm_90");
  CHECK(h200.name == "cuda-sm90");
  CHECK(h200.halide.has_feature(HT::CUDACapability86));
}

TEST_CASE("an OpenCL target is named after its device and parses back", "[target]") {
  CHECK(opencl_target_name("pthread-haswell-AMD EPYC") == "opencl-pthread-haswell-amd-epyc");
  CHECK(opencl_target_name("  gfx1100 (Navi 31) ") == "opencl-gfx1100-navi-31");
  CHECK(opencl_target_name("") == "opencl");
  TargetSpec pocl = parse_target("opencl-pthread-haswell-amd-epyc").value();
  CHECK(pocl.family == TargetFamily::OpenCL);
  CHECK(pocl.name == "opencl-pthread-haswell-amd-epyc");
  CHECK(pocl.wavefront == 32);
  CHECK(pocl.gpu_arch.empty());
  CHECK(parse_target("opencl").value().name == "opencl");
  CHECK_FALSE(runs_on_host(pocl).ok());  // a device's code, not the host's
  // The GPU templates serve every GPU family, the CPU ones only CPUs.
  CHECK(templates_serve(TargetFamily::Hip, TargetFamily::OpenCL));
  CHECK(templates_serve(TargetFamily::Hip, TargetFamily::Cuda));
  CHECK_FALSE(templates_serve(TargetFamily::Hip, TargetFamily::Cpu));
  CHECK_FALSE(templates_serve(TargetFamily::Cpu, TargetFamily::OpenCL));
}

TEST_CASE("bad target strings are rejected with a reason", "[target]") {
  for (const char* bad :
       {"", "x86-64-avx9000", "hip:", "hip:sm_80", "hip:gfx", "cuda:sm_99", "cuda:sm_8", "cuda:gfx90a", "arm-64-neon2",
        "riscv-banana", "x86-64-linux-cuda", "opencl-", "opencl-AMD EPYC", "opencl-a--b", "opencl:gfx90a"}) {
    Result<TargetSpec> t = parse_target(bad);
    INFO("'" << bad << "'");
    REQUIRE_FALSE(t.ok());
    CHECK(t.failure().kind == FailureKind::BadTarget);
    CHECK_FALSE(t.failure().message.empty());
  }
  CHECK_THROWS_AS(parse_target("nope").value(), tetra::Error);
}

TEST_CASE("the toolchain id names Halide's version", "[target]") {
  CHECK(toolchain_id().rfind("halide-14", 0) == 0);
}
