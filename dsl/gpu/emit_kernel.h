// One emitter for device code in three dialects. A subclass of Halide's C code generator prints each
// kernel body once; everything that differs between HIP, OpenCL C and CUDA (qualifiers, block and thread
// ids, barriers, bit casts, the lanes' sums of dsl/gpu/private_arrays.h lower_lane_sums, the prelude of types and
// helpers, OpenCL C's float16 without cl_khr_fp16) comes from one table per dialect, as do the nontemporal loads of a
// kernel's streamed buffers. The sources need no device headers or libraries: HIP builds with -nogpulib -nogpuinc for
// every gfx arch, CUDA with -nocudainc -nocudalib.
#pragma once
#include <string>
#include <vector>

#include "dsl/core/result.h"
#include "dsl/gpu/device_kernel.h"
#include "dsl/target.h"

namespace tetra::dsl::gpu {

enum class Dialect { Hip, OpenCL, Cuda };
std::string dialect_name(Dialect dialect);  // "hip", "opencl", "cuda"
// The dialect a GPU target family's devices load: OpenCL C, CUDA, else HIP.
Dialect dialect_of(TargetFamily family);

// acc + the dot product of the four int8 lanes of a and of b (uint32 each, lane 0 in the low byte), as
// int32: a call that each dialect's prelude defines with its own instruction. HIP: the arch's v_dot4
// (dsl/core/amd_arch.h, chosen when the code object is built); CUDA: dp4a (sm_61 and later); OpenCL C:
// plain arithmetic. The int8-activation GPU kernels' inner step.
Halide::Expr dot4_i8(const Halide::Expr& a, const Halide::Expr& b, const Halide::Expr& acc);

// Two float16 lanes as the halves of a uint32 (lane 0 low): pack_f16x2 rounds two floats to nearest even;
// dot2_f16 is acc + a.lo * b.lo + a.hi * b.hi in float32 (HIP: v_dot2_f32_f16, which every arch tetra
// builds for has; CUDA and OpenCL C: two multiply-adds of the widened halves). The float16-activation GPU
// kernels' inner step.
Halide::Expr dot2_f16(const Halide::Expr& a, const Halide::Expr& b, const Halide::Expr& acc);
Halide::Expr pack_f16x2(const Halide::Expr& lo, const Halide::Expr& hi);

// The source of `kernels` in `dialect`: the dialect's prelude, then each kernel as an entry point named
// kernel.name whose parameters are kernel.args in order (buffers as pointers to their element type,
// scalars by value). A construct the emitter does not support (a vector type, an allocation of no
// constant size) is a Failure naming the kernel.
Result<std::string> emit_kernels(const std::vector<DeviceKernel>& kernels, Dialect dialect);

}  // namespace tetra::dsl::gpu
