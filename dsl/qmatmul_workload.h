// What a tetra.QMatMul kernel is compiled and tuned for (no libHalide needed; the compute definition
// is in dsl/qmatmul.h).
#pragma once
#include <cstdint>
#include <string>

#include "dsl/int4_format.h"
#include "dsl/result.h"
#include "importer/graph.h"

namespace tetra::dsl {

enum class Activation { None, Relu };
std::string activation_name(Activation act);

// What a QMatMul kernel is compiled and tuned for. The shapes key the tuning database; the
// generated code depends only on the format and the epilogue.
struct QMatMulWorkload {
  int64_t M = 1, K = 0, N = 0;
  Int4Format format;
  bool has_bias = false;
  Activation activation = Activation::None;

  // "qmatmul m1 k4096 n4096 int4 blocked(k,32) f32 bias": the database's workload key.
  std::string key() const;
};

// The workload of a QMatMul node's weight for `M` rows.
Result<QMatMulWorkload> qmatmul_workload(const QuantizedWeight& weight, bool trans_b, int64_t M, bool has_bias);

}  // namespace tetra::dsl
