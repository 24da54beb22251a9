// Targets: what tetra compiles for, named the way the tuning database keys its records.
//
// Halide 14's get_host_target() must not be used for the CPU: it turns on avx512_sapphirerapids for
// any CPU with AVX512-VNNI and AVX512-BF16, so on AMD Zen 4 (which lacks AVX512-FP16) LLVM is told
// "sapphirerapids" and the JIT code dies with SIGILL on vmovsh. detect_cpu_features() reads CPUID and
// XCR0 itself, and halide_target_for() only sets sapphirerapids when AVX512-FP16 is really there.
//
// Canonical names (database keys; they leave out the OS, which does not change a schedule):
//   x86-64, x86-64-sse41, x86-64-avx, x86-64-avx2          (AVX2 implies FMA and F16C here)
//   x86-64-avx512        F, CD, VL, BW, DQ                  (Skylake-SP)          Halide avx512_skylake
//   x86-64-avx512-vnni   + IFMA, VBMI, VNNI                 (Ice Lake, Zen 4)     Halide avx512_cannonlake
//   x86-64-avx512-fp16   + BF16, FP16                       (Sapphire Rapids)     Halide avx512_sapphirerapids
//   arm-64[-dotprod][-fp16][-sve2]
//   hip-gfx90a, hip-gfx1100, ...   (AMD GPUs; wavefront 64 on gfx9 CDNA/GCN, 32 on gfx10+ RDNA)
//   cuda-sm80, ...
//   opencl-DEVICE        an OpenCL device, named by its device name ("opencl-pthread-haswell-amd-epyc" for
//                        pocl on this CPU): `tune --target opencl` measures the GPU templates on it
// parse_target(name) gives back the same name for every canonical name.
#pragma once
#include <string>

#include "Halide.h"
#include "dsl/core/result.h"

namespace tetra::dsl {

enum class TargetFamily { Cpu, Hip, Cuda, OpenCL };
std::string family_name(TargetFamily family);  // "cpu", "hip", "cuda", "opencl"

// Whether a template of `template_family` serves targets of `target_family`. The GPU templates are
// written once, registered as hip, and emitted in each GPU family's dialect (dsl/gpu/emit_kernel.h).
bool templates_serve(TargetFamily template_family, TargetFamily target_family);

// The x86 features that change code generation, as CPUID and the OS (XCR0) report them.
struct CpuFeatures {
  bool sse41 = false, avx = false, avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512cd = false, avx512vl = false, avx512bw = false, avx512dq = false;
  bool avx512ifma = false, avx512vbmi = false, avx512vnni = false, avx512bf16 = false, avx512fp16 = false;
  std::string vendor;  // "GenuineIntel", "AuthenticAMD"; empty off x86

  std::string describe() const;  // "avx avx2 fma ... avx512fp16"
};

// Reads CPUID; features the OS has not enabled in XCR0 (AVX, AVX-512 state) count as absent.
// Returns all-false features on a non-x86 host.
CpuFeatures detect_cpu_features();

// The x86-64 Halide target for a CPU with these features, on `os`.
Halide::Target halide_target_for(const CpuFeatures& features, Halide::Target::OS os = Halide::Target::Linux);

struct TargetSpec {
  TargetFamily family = TargetFamily::Cpu;
  Halide::Target halide;  // the CPU code's target; for hip/cuda, the host side's
  std::string name;       // canonical, the tuning database key: "x86-64-avx512-vnni", "hip-gfx90a"
  std::string gpu_arch;   // "gfx90a", "sm_80"; empty for cpu
  int wavefront = 0;      // threads per wavefront/warp on a GPU; 0 for cpu

  bool is_cpu() const { return family == TargetFamily::Cpu; }
  // SIMD lanes of `type` in one native vector (16 fp32 lanes with AVX-512); 1 for GPUs.
  int natural_lanes(Halide::Type type = Halide::Float(32)) const;
  // Architectural SIMD registers: 32 with AVX-512 or on 64-bit Arm, 16 with AVX2; 0 for GPUs. Register
  // tiles (accumulators plus the operands of one step) are sized from it.
  int vector_registers() const;
  // 4-way int8 dot products into int32, what the int8-activation kernels need: AVX512-VNNI on a CPU;
  // every GPU target, whose kernels choose their instruction per arch (dsl/gpu/emit_kernel.h dot4_i8).
  bool has_int8_dot() const;
};

// The Halide target of the int8-activation kernels. Halide 14 emits vpdpbusd only for
// avx512_sapphirerapids, so they are compiled with it even on a VNNI CPU without AVX512-FP16 (Zen 4,
// Ice Lake). That is safe for these kernels alone: they hold no float16 values (their scales are
// float32), so LLVM has no use for FP16 instructions, and their dot products are 512-bit, the EVEX
// form every VNNI CPU has (not AVX-VNNI's VEX form). tests/halide/test_qmatmul_int8.cpp checks the
// assembly. Runtimes compiled for kernels leave the feature out (strip_kernel_only_features).
Halide::Target int8_dot_target(const TargetSpec& target);
// The Halide runtime's target for kernels of `kernel_target`: without sapphirerapids, which only
// int8-dot kernels may use on this CPU.
Halide::Target strip_kernel_only_features(const Halide::Target& kernel_target);

// This machine, from CPUID (never from get_host_target on x86).
const TargetSpec& host_target();

// Whether this machine can execute code compiled for `target`: a CPU target of the host's
// architecture whose features the host has (x86-64-avx2 runs on an AVX-512 machine; arm-64, a GPU, or
// x86-64-avx512-fp16 on a CPU without AVX512-FP16 do not), else why not. Tuning, running and compiling a
// model library need it.
Status runs_on_host(const TargetSpec& target);

// The target of an OpenCL device by its name: "opencl-" and the name in lower case, each run of
// other characters than letters and digits one '-' ("pthread-haswell-AMD EPYC" ->
// "opencl-pthread-haswell-amd-epyc"). Its kernels use 32-wide waves (dsl/target.cpp says why).
std::string opencl_target_name(const std::string& device_name);

// parse_target(text), refused unless it runs_on_host: the targets `tune` and `run` take.
Result<TargetSpec> parse_runnable_target(const std::string& text);

// "host", a canonical name above, "hip:gfx90a" / "cuda:sm_80" (colon or dash), "opencl-DEVICE" (an
// opencl_target_name; plain "opencl" is the generic OpenCL target), or a Halide target
// string such as "x86-64-linux-avx2-fma" or "arm-64-linux" (named by its tier).
Result<TargetSpec> parse_target(const std::string& text);

// The canonical name of a CPU Halide target (its x86 tier or arm features).
std::string canonical_cpu_name(const Halide::Target& target);

// Identifies the code generator for the tuning database key: "halide-14.0.0".
std::string toolchain_id();

}  // namespace tetra::dsl
