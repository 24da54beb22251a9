// What a tetra.QMatMul kernel is compiled and tuned for (no libHalide needed; the compute definition
// is in dsl/qmatmul.h).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "dsl/core/int4_format.h"
#include "dsl/core/output_epilogue.h"
#include "dsl/core/result.h"
#include "importer/graph.h"

namespace tetra::dsl {

// What a QMatMul kernel is compiled and tuned for. The shapes key the tuning database; the
// generated code depends only on the format and the epilogue.
struct QMatMulWorkload {
  int64_t M = 1, K = 0, N = 0;
  Int4Format format;
  bool has_bias = false;
  OutputEpilogue epilogue;  // its residual is a float32 [M, N] input after the bias
  // Opt-in int8 activations (ONNX Runtime's MatMulNBits accuracy_level 4): each row of A is quantized
  // to int8 per k-block of activation_block() values (symmetric, scale = max|a| / 127, round to
  // nearest even), the block's integer dot product with the int4 codes is exact in int32, and
  //   Y[m, n] = sum over blocks g of a_scale(m, g) * w_scale(n, g) * sum_k a_q(m, k) * (q(k, n) - zp)
  // Scales are float32 (float16 scales are widened: int8_kernel_format). Key suffix " a8".
  // Set on a request, this asks for int8 activations; schedules::resolve_qmatmul decides what a
  // target runs, and only a resolved workload is compiled, tuned or keyed in the database.
  bool int8_activations = false;
  // A holds float16 values: the model's activations at this MatMul are float16. A kernel may then read
  // them as float16 (exact) and multiply them as float16 pairs with float32 sums (v_dot2_f32_f16 on AMD
  // GPUs: gpu_int4_gemv_h2 and gpu_int4_gemm_h2 in schedules/gpu/). Key suffix " a16". Set from the model; targets
  // without such kernels resolve it away (dsl/spec_resolve.h), since float32 arithmetic is exact on it.
  bool f16_activations = false;
  // The k-block A is quantized in: the weight's k_group when it has one, else 32.
  int64_t activation_block() const { return format.k_group > 0 ? format.k_group : 32; }

  // "qmatmul m1 k4096 n4096 int4 blocked(k,32) f32 bias": the database's workload key. Of the
  // epilogue it names a lone Relu only (" relu"; see OutputEpilogue).
  std::string key() const;
  // The workload as tuned and keyed: the epilogue kept only where it is a lone Relu.
  QMatMulWorkload for_tuning() const;
};

// Why `w` cannot take int8 activations, or ok: the activation block must be a multiple of 8 (the
// kernels read the codes 8 k at a time).
Status int8_activations_supported(const QMatMulWorkload& w);

// Why `w` cannot take float16 activations, or ok: an int4 weight (not float) whose k-blocks, if any,
// are a multiple of 8 (the kernels read a word of 8 codes, all of one block).
Status f16_activations_supported(const QMatMulWorkload& w);

// The int8-activation arithmetic in plain C++, the reference the kernels are checked against: A
// ([M, K] row-major) is quantized here exactly as the kernels quantize it (same float32 operations),
// and value() sums the exact products in double.
class Int8ActivationReference {
 public:
  Int8ActivationReference(const float* a, int64_t M, int64_t K, int64_t block);
  // Y[m, n] before bias and activation; `magnitude` (when given) gets the sum of |terms|.
  double value(const QuantizedWeight& w, bool trans_b, int64_t m, int64_t n, double* magnitude = nullptr) const;
  int8_t q(int64_t m, int64_t k) const { return q_[size_t(m * K_ + k)]; }
  float scale(int64_t m, int64_t g) const { return scale_[size_t(m * groups_ + g)]; }

 private:
  int64_t K_, block_, groups_;
  std::vector<int8_t> q_;
  std::vector<float> scale_;
};

// The workload of a QMatMul node's weight for `M` rows.
Result<QMatMulWorkload> qmatmul_workload(const QuantizedWeight& weight, bool trans_b, int64_t M, bool has_bias);

}  // namespace tetra::dsl
