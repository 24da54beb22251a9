// Activation x activation MatMul (attention's Q·Kᵀ and P·V), batched, on the CPU:
//
//   Y(n, m, b) = sum_k A(k, m, b) * B(n, k, b)        float32; Halide buffers innermost first
//
// A is [b, M, K] and B [b, K, N] in ONNX order. Every extent and stride is a run-time value, so one
// compile serves every shape; a batch dimension that broadcasts is a stride of 0. The node kernel
// (runtime/halide_matmul.cpp) maps ONNX's numpy-style batch broadcasting onto this.
#pragma once
#include "dsl/jit_pipeline.h"
#include "dsl/target.h"

namespace tetra::schedules {

// Arguments in call order: A, B, then the output Y.
dsl::Result<dsl::ScheduledPipeline> batch_matmul_pipeline(const dsl::TargetSpec& target);

}  // namespace tetra::schedules
