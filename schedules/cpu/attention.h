// Attention without the scores in memory (tetra.Attention), on the CPU:
//
//   O(d, m, b) = sum_n exp(S(n, m, b) - max_n S) * V(d, n, b) / sum_n exp(S(n, m, b) - max_n S)
//   S(n, m, b) = scale * sum_k A(k, m, b) * B(n, k, b)
//
// Halide buffers innermost first: A is [b, M, K], B [b, K, N] and V [b, N, D] in ONNX order. Each
// task takes a few rows of one batch index: their scores live in a buffer of rows x N floats (L1 or
// L2), never in memory as a whole tokens x tokens matrix. Every extent and stride is a run-time value:
// A, V and O need only a dense innermost dim (views into a packed QKV projection, a result written
// transposed), and B may have any strides.
#pragma once
#include "dsl/jit_pipeline.h"
#include "dsl/target.h"

namespace tetra::schedules {

// Arguments in call order: A, B, V, scale (float), then the output O.
dsl::Result<dsl::ScheduledPipeline> attention_pipeline(const dsl::TargetSpec& target);

}  // namespace tetra::schedules
