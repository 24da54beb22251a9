// Capturing the GPU kernels of a pipeline scheduled for a GPU. Halide 14 lowers the schedule with a
// stand-in GPU feature (OpenCL); a custom lowering pass then takes each outermost block loop nest as a
// DeviceKernel, before Halide's own device code generation would see it. What Halide validated (loop
// nests, bounds, GPUShared allocations, barriers) is kept; the device code is tetra's
// (dsl/gpu/emit_kernel.h).
#pragma once
#include <string>
#include <vector>

#include "dsl/compute.h"
#include "dsl/core/result.h"
#include "dsl/gpu/device_kernel.h"

namespace tetra::dsl::gpu {

struct CapturedPipeline {
  std::vector<DeviceKernel> kernels;  // in the order the host launches them
  Halide::Internal::Stmt host;        // the lowered host statement, kernels included
  // What the pipeline touches of each of its buffers, by Halide's bounds inference; each kernel keeps
  // the ranges of its own buffers (DeviceKernel::touched).
  std::vector<DeviceKernel::Touched> touched;
};

// Lowers `outputs` (scheduled with gpu_blocks / gpu_threads) for `args` and captures its kernels, named
// `name`_k0, `name`_k1, ... A pipeline with no GPU loop, or whose shared allocations have no constant
// size, is a Failure. `hints` apply: each kernel streams the buffers of hints.streamed_inputs it reads
// (DeviceKernel::streamed_buffers); the register Funcs of hints.lane_sums are added up across lanes
// (dsl/gpu/private_arrays.h lower_lane_sums); the loops of hints.double_buffered are double-buffered
// (dsl/gpu/double_buffer.h), and one that no kernel has is a Failure.
Result<CapturedPipeline> capture_kernels(const std::vector<Halide::Func>& outputs,
                                         const std::vector<Halide::Argument>& args, const std::string& name,
                                         const GpuKernelHints& hints = {});

}  // namespace tetra::dsl::gpu
