// The elementwise tail a QConv or QMatMul kernel applies in its output stage, compiled in:
//   y = activation(acc + bias [+ residual])
#pragma once
#include <string>
#include <vector>

namespace tetra::dsl {

// `activation` is an op key of dsl/elementwise_expr.h with one operand ("": none), `params` its float
// attributes. It is part of the code key. The tuning key leaves it out (the elementwise tail does not
// change which tiling is best, so tuned records serve kernels with any epilogue), except a QMatMul's
// lone Relu, which its keys have always named ("... relu").
struct OutputEpilogue {
  bool residual = false;  // adds a float32 tensor shaped as the output (a skip connection)
  std::string activation;
  std::vector<float> params;

  static OutputEpilogue relu() { return {false, "Relu", {}}; }
  bool empty() const { return !residual && activation.empty(); }
  bool is_lone_relu() const { return !residual && activation == "Relu" && params.empty(); }
  std::string describe() const;  // "", "+residual", "Relu", "+residual Clip:min,max(0,6)"
  bool operator==(const OutputEpilogue& o) const {
    return residual == o.residual && activation == o.activation && params == o.params;
  }
};

}  // namespace tetra::dsl
