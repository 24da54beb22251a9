// Calling compiled QMatMul and QConv code: the argument order each pipeline was defined with
// (dsl/qmatmul.h, dsl/qconv.h), and the checks that keep a call from reading out of bounds. The JIT
// kernels, the kernel cache and model libraries compiled ahead of time all call through here. No
// libHalide needed.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "dsl/core/compiled_pipeline.h"
#include "dsl/core/qconv_format.h"
#include "dsl/core/qmatmul_workload.h"

namespace tetra::dsl {

// Y(n, m) = act(alpha * sum_k A(k, m) W(k, n) + beta * bias(n) [+ residual(n, m)]); A is (K, M), Y and
// residual (N, M), float32.
struct QMatMulCall {
  const halide_buffer_t* A = nullptr;
  const PackedInt4Buffers* W = nullptr;  // packed in the code's layout and format
  halide_buffer_t* Y = nullptr;
  const halide_buffer_t* bias = nullptr;      // [N]; required when the code has a bias
  const halide_buffer_t* residual = nullptr;  // (N, M); required when the code's epilogue adds one
  float alpha = 1.0f, beta = 1.0f;
};

// `compiled` is the workload the code was compiled for (its format and epilogue; shapes may differ),
// `layout` the weight layout it reads.
Status call_qmatmul(const CompiledPipeline& code, const QMatMulWorkload& compiled, const Int4Layout& layout,
                    const QMatMulCall& call);

// Y = conv(X, W) + bias for `workload`, which must have the kernel spec of `compiled`, the workload
// the code was compiled for.
// X is (W, H, C, N), Y (OW, OH, M, N), bias (M), float32.
struct QConvCall {
  const halide_buffer_t* X = nullptr;
  const ConvInt4Buffers* weight = nullptr;
  halide_buffer_t* Y = nullptr;
  const halide_buffer_t* bias = nullptr;
  const halide_buffer_t* residual = nullptr;  // (OW, OH, M, N); required when the epilogue adds one
};
Status call_qconv(const CompiledPipeline& code, const QConvWorkload& compiled, const QConvWorkload& workload,
                  const QConvCall& call);

// The ints a QConv pipeline takes after its buffers, by their parameter names (dsl/qconv.h), in call
// order, for `workload` and a weight of `weight_block` (0: not blocked).
std::vector<std::pair<std::string, int>> qconv_int_arguments(const QConvWorkload& workload, int64_t weight_block);

}  // namespace tetra::dsl
