#include "dsl/qmatmul_workload.h"

namespace tetra::dsl {

std::string activation_name(Activation act) { return act == Activation::Relu ? "relu" : "none"; }

std::string QMatMulWorkload::key() const {
  std::string s = "qmatmul m" + std::to_string(M) + " k" + std::to_string(K) + " n" + std::to_string(N) + " " +
                  format.describe();
  if (has_bias) s += " bias";
  if (activation != Activation::None) s += " " + activation_name(activation);
  return s;
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

}  // namespace tetra::dsl
