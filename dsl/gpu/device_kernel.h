// A GPU kernel captured from a lowered Halide pipeline (dsl/gpu/capture_kernels.h): its loop nest, its
// closure and its launch extents, as expressions of the host's values. The emitter (dsl/gpu/emit_kernel.h)
// prints its body in a device dialect; the launch plan (dsl/gpu/launch_plan.h) evaluates its extents at
// run time.
#pragma once
#include <set>
#include <string>
#include <vector>

#include "Halide.h"

namespace tetra::dsl::gpu {

struct DeviceKernel {
  std::string name;  // a C identifier, unique within its pipeline
  // The block loops and everything inside them. Block and thread loop variables end in
  // ".__block_id_x" ... ".__thread_id_z" (Halide's names), and start at 0.
  Halide::Internal::Stmt body;
  // Read-only buffers among args that the kernel streams: its loads of them are nontemporal where the
  // dialect can say so (GpuKernelHints::streamed_inputs).
  std::set<std::string> streamed_buffers;
  // The closure: the buffers it reads or writes (by the name of their host pointer), then the scalars.
  std::vector<Halide::Internal::DeviceArgument> args;
  // The value of each scalar argument (undefined for buffers), and the blocks and threads per block in
  // x, y, z (1 where unused): expressions of the launch's inputs, the buffers' mins, extents and strides
  // ("A.extent.0") and the pipeline's scalar parameters.
  std::vector<Halide::Expr> arg_values;
  Halide::Expr blocks[3], threads[3];
  // The elements [min, max] of dimension `dim` of each buffer among args that the pipeline may touch, as
  // Halide's bounds inference found them (the host's checks before its launches): a launch whose buffers
  // hold less is refused.
  struct Touched {
    std::string buffer;
    int dim = 0;
    Halide::Expr min, max;
  };
  std::vector<Touched> touched;
  // Bytes of workgroup memory (GPUShared allocations), a constant: the templates keep shared sizes fixed.
  int64_t shared_bytes = 0;
};

// Threads per block when the schedule fixes them (the templates do), else 0.
inline int64_t constant_threads_per_block(const DeviceKernel& k) {
  int64_t threads = 1;
  for (const Halide::Expr& e : k.threads) {
    const int64_t* n = Halide::Internal::as_const_int(e);
    if (!n) return 0;
    threads *= *n;
  }
  return threads;
}

// The axis (0, 1, 2 for x, y, z) of a GPU loop variable, with *block saying whether it is a block id;
// -1 for any other loop.
inline int gpu_loop_axis(const std::string& name, bool* block) {
  auto ends_with = [&](const std::string& tail) {
    return name.size() >= tail.size() && name.compare(name.size() - tail.size(), tail.size(), tail) == 0;
  };
  static const char* const axes[3] = {"x", "y", "z"};
  for (int i = 0; i < 3; ++i) {
    if (ends_with(std::string(".__block_id_") + axes[i])) return *block = true, i;
    if (ends_with(std::string(".__thread_id_") + axes[i])) return *block = false, i;
  }
  return -1;
}

}  // namespace tetra::dsl::gpu
