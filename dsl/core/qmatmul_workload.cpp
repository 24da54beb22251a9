#include "dsl/core/qmatmul_workload.h"

#include <cmath>

namespace tetra::dsl {

std::string QMatMulWorkload::key() const {
  std::string s = "qmatmul m" + std::to_string(M) + " k" + std::to_string(K) + " n" + std::to_string(N) + " " +
                  format.describe();
  if (has_bias) s += " bias";
  if (epilogue.is_lone_relu()) s += " relu";
  if (int8_activations) s += " a8";
  if (f16_activations) s += " a16";
  return s;
}

QMatMulWorkload QMatMulWorkload::for_tuning() const {
  QMatMulWorkload w = *this;
  if (!w.epilogue.is_lone_relu()) w.epilogue = {};
  return w;
}

Status f16_activations_supported(const QMatMulWorkload& w) {
  if (w.format.is_float())
    return Failure{FailureKind::Unsupported, w.key(), "float16 activations pair with int4 weights, this one is float"};
  if (w.format.k_group > 0 && w.format.k_group % 8 != 0)
    return Failure{FailureKind::Unsupported, w.key(),
                   "float16 activations need k-blocks of a multiple of 8, not " + std::to_string(w.format.k_group)};
  return ok_status();
}

Status int8_activations_supported(const QMatMulWorkload& w) {
  if (w.format.is_float())
    return Failure{FailureKind::Unsupported, w.key(), "int8 activations pair with int4 weights, this one is float"};
  if (w.activation_block() % 8 != 0)
    return Failure{FailureKind::Unsupported, w.key(),
                   "int8 activations need k-blocks of a multiple of 8, not " + std::to_string(w.activation_block())};
  return ok_status();
}

Result<QMatMulWorkload> qmatmul_workload(const QuantizedWeight& weight, bool trans_b, int64_t M, bool has_bias) {
  Result<Int4Format> format = int4_format_of(weight, trans_b);
  if (!format) return format.failure();
  QMatMulWorkload w;
  w.M = M;
  w.K = trans_b ? weight.shape()[1] : weight.shape()[0];
  w.N = trans_b ? weight.shape()[0] : weight.shape()[1];
  w.format = format.value();
  w.has_bias = has_bias;
  return w;
}

Int8ActivationReference::Int8ActivationReference(const float* a, int64_t M, int64_t K, int64_t block)
    : K_(K), block_(block), groups_((K + block - 1) / block) {
  q_.resize(size_t(M * K));
  scale_.resize(size_t(M * groups_));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t g = 0; g < groups_; ++g) {
      int64_t end = std::min(K, (g + 1) * block);
      float amax = 0.0f;
      for (int64_t k = g * block; k < end; ++k) amax = std::max(amax, std::fabs(a[m * K + k]));
      float inverse = amax > 0.0f ? 127.0f / amax : 0.0f;
      for (int64_t k = g * block; k < end; ++k) {
        float r = std::nearbyint(a[m * K + k] * inverse);  // round half to even, as the kernels do
        q_[size_t(m * K + k)] = int8_t(std::min(127.0f, std::max(-127.0f, r)));
      }
      scale_[size_t(m * groups_ + g)] = amax / 127.0f;
    }
}

double Int8ActivationReference::value(const QuantizedWeight& w, bool trans_b, int64_t m, int64_t n,
                                      double* magnitude) const {
  const int64_t N = trans_b ? w.shape()[0] : w.shape()[1];
  bool is_signed = w.data.dtype() == DType::Int4;
  double sum = 0, size = 0;
  for (int64_t k = 0; k < K_; ++k) {
    int64_t i = trans_b ? n * K_ + k : k * N + n;
    int64_t p = w.param_index(i);
    int code = unpack_nibble(w.data.bytes(), i, is_signed);
    int zp = w.zero_point.empty() ? 0 : int(w.zero_point.get_int(p));
    double term = double(scale(m, k / block_)) * q(m, k) * double(code - zp) * w.scale.get(p);
    sum += term;
    size += std::fabs(term);
  }
  if (magnitude) *magnitude = size;
  return sum;
}

}  // namespace tetra::dsl
