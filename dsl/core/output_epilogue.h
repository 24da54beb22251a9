// The elementwise tail a QConv or QMatMul kernel applies in its output stage, compiled in:
//   y = activation(acc + bias [+ residual])       or, with activation_first,
//   y = activation(acc + bias) + residual         (a residual Add after the activation)
#pragma once
#include <cstdio>
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
  bool activation_first = false;  // the residual is added after the activation

  static OutputEpilogue relu() { return {false, "Relu", {}}; }
  bool empty() const { return !residual && activation.empty(); }
  bool is_lone_relu() const { return !residual && activation == "Relu" && params.empty(); }
  // "", "+residual", "Relu", "+residual Clip:min,max(0,6)", "Relu +residual" (activation first)
  std::string describe() const {
    std::string act = activation;
    for (size_t i = 0; i < params.size(); ++i) {
      char v[32];
      std::snprintf(v, sizeof v, "%.9g", double(params[i]));  // round-trips a float
      act += (i == 0 ? "(" : ",") + std::string(v) + (i + 1 == params.size() ? ")" : "");
    }
    if (!residual) return act;
    if (act.empty()) return "+residual";
    return activation_first ? act + " +residual" : "+residual " + act;
  }
  bool operator==(const OutputEpilogue& o) const {
    return residual == o.residual && activation == o.activation && params == o.params &&
           activation_first == o.activation_first;
  }
};

}  // namespace tetra::dsl
