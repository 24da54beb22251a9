// The reference a tuning candidate is checked against: one output at a time, in double precision over
// the dequantized weight, on the worker's random data. The CPU and the GPU measurements share it.
#pragma once
#include <cstdint>
#include <optional>
#include <random>
#include <vector>

#include "dsl/core/qconv_format.h"
#include "dsl/core/qmatmul_workload.h"
#include "importer/graph.h"

namespace tetra::tuner {

struct ReferenceValue {
  double value = 0;
  double magnitude = 0;  // the sum of the terms' magnitudes, which the rounding error grows with

  // How far a kernel's result may be from it, relative to (1 + magnitude): 1e-5 for float32 arithmetic,
  // 1e-3 where a float16-activation kernel scales a block's sum that float16 scales would round term by term.
  double relative = 1e-5;
  double tolerance() const { return relative * (1 + magnitude); }
  // Whether a float32 kernel's `got` is this value, within the tolerance. NaN never is.
  bool accepts(double got) const;
};

// Y[m, n] = act(A W + bias) of a QMatMul workload; `a` is [M, K], the weight [K, N] (trans_b 0), `bias`
// [N] when the workload has one; `int8` the quantized activations when the workload has int8 ones.
ReferenceValue qmatmul_reference(const dsl::QMatMulWorkload& wl, const QuantizedWeight& w, const float* a,
                                 const float* bias, const dsl::Int8ActivationReference* int8, int64_t m, int64_t n);

// Y(ow, oh, m, n) = conv(X, W) + bias of a QConv workload without epilogue; `x` is (W, H, C, N) dense,
// innermost first, the weight [M, C/group, KH, KW], `bias` [M] when the workload has one.
ReferenceValue qconv_reference(const dsl::QConvWorkload& wl, const QuantizedWeight& w, const float* x,
                               const float* bias, int64_t n, int64_t m, int64_t oh, int64_t ow);

// The flat output indices a check looks at: every one of `count` up to `every_up_to`, else `samples`
// random ones.
std::vector<int64_t> checked_outputs(int64_t count, int64_t every_up_to, int samples, std::mt19937& rng);

}  // namespace tetra::tuner
