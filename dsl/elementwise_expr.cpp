#include "dsl/elementwise_expr.h"

#include <map>

#include "importer/error.h"

namespace tetra::dsl {
namespace {

using Halide::Expr;

Expr horner(const Expr& x, const std::vector<double>& coefficients) {  // c0 + c1 x + c2 x^2 + ...
  Expr r = static_cast<float>(coefficients.back());
  for (size_t k = coefficients.size() - 1; k-- > 0;) r = r * x + static_cast<float>(coefficients[k]);
  return r;
}

// tanh from exp: 1 - 2 / (exp(2|x|) + 1) with the sign of x, and its Taylor series below 0.5 where
// that cancels (terms through x^15; the next is < 1e-8 relative). Within 2e-7 relative of tanh.
Expr tanh_accurate(const Expr& x) {
  Expr a = abs(x), x2 = x * x;
  Expr series = x + x * x2 *
                        horner(x2, {-1.0 / 3, 2.0 / 15, -17.0 / 315, 62.0 / 2835, -1382.0 / 155925, 21844.0 / 6081075,
                                    -929569.0 / 638512875});
  Expr large = 1.0f - 2.0f / (exp(2.0f * min(a, 20.0f)) + 1.0f);  // tanh(20) is 1 in float
  return select(a < 0.5f, series, select(x < 0, -large, large));
}

// erfc, Numerical Recipes' erfcc (Chebyshev fit): relative error below 1.2e-7 for every x, so
// Gelu keeps its relative accuracy where 1 + erf(x) cancels.
Expr erfc_accurate(const Expr& x) {
  Expr z = abs(x);
  Expr t = 1.0f / (1.0f + 0.5f * z);
  Expr p = horner(t, {-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398, 1.48851587,
                      -0.82215223, 0.17087277});
  Expr r = t * exp(p - z * z);
  return select(x >= 0, r, 2.0f - r);
}

Expr powf_call(const Expr& a, const Expr& b) {
  return Halide::Internal::Call::make(Halide::Float(32), "powf", {a, b}, Halide::Internal::Call::PureExtern);
}

// A bool as the GPU kernels hold it: a float mask.
Expr mask(const Expr& condition) { return select(condition, 1.0f, 0.0f); }

// NaN wins in Min and Max, as in numpy (x86 min/max would return the second operand).
Expr nan_propagating(const Expr& a, const Expr& b, const Expr& value) {
  return select(is_nan(a) || is_nan(b), a + b, value);
}

const std::map<std::string, ElementwiseExpr>& table() {
  static const std::map<std::string, ElementwiseExpr> table = {
      // `x < 0 ? 0 : x` keeps NaN, as the reference does.
      {"Relu", [](const Exprs& x, const Exprs&) { return select(x[0] < 0, 0.0f, x[0]); }},
      {"LeakyRelu", [](const Exprs& x, const Exprs& p) { return select(x[0] >= 0, x[0], p[0] * x[0]); }},
      {"Sigmoid", [](const Exprs& x, const Exprs&) { return 1.0f / (1.0f + exp(-x[0])); }},
      {"Tanh", [](const Exprs& x, const Exprs&) { return tanh_accurate(x[0]); }},
      {"HardSigmoid", [](const Exprs& x, const Exprs& p) { return clamp(p[0] * x[0] + p[1], 0.0f, 1.0f); }},
      {"HardSwish", [](const Exprs& x, const Exprs&) { return x[0] * clamp(x[0] / 6.0f + 0.5f, 0.0f, 1.0f); }},
      // 0.5 x (1 + erf(x / sqrt 2)) = 0.5 x erfc(-x / sqrt 2), without the cancellation for x << 0.
      {"Gelu:none",
       [](const Exprs& x, const Exprs&) { return 0.5f * x[0] * erfc_accurate(x[0] * -0.70710678118654752f); }},
      // 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)), again without the cancellation.
      {"Gelu:tanh",
       [](const Exprs& x, const Exprs&) {
         Expr u = 0.79788456080286536f * (x[0] + 0.044715f * x[0] * x[0] * x[0]);
         return x[0] / (1.0f + exp(-2.0f * u));
       }},
      {"Erf", [](const Exprs& x, const Exprs&) { return erf(x[0]); }},
      {"Sqrt", [](const Exprs& x, const Exprs&) { return sqrt(x[0]); }},
      {"Exp", [](const Exprs& x, const Exprs&) { return exp(x[0]); }},
      {"Log", [](const Exprs& x, const Exprs&) { return log(x[0]); }},
      {"Neg", [](const Exprs& x, const Exprs&) { return -x[0]; }},
      {"Abs", [](const Exprs& x, const Exprs&) { return abs(x[0]); }},
      {"Reciprocal", [](const Exprs& x, const Exprs&) { return 1.0f / x[0]; }},
      // min(max(x, lo), hi), as the reference; an absent bound is left out of the code.
      {"Clip:", [](const Exprs& x, const Exprs&) { return x[0]; }},
      {"Clip:min", [](const Exprs& x, const Exprs& p) { return max(x[0], p[0]); }},
      {"Clip:max", [](const Exprs& x, const Exprs& p) { return min(x[0], p[0]); }},
      {"Clip:min,max", [](const Exprs& x, const Exprs& p) { return min(max(x[0], p[0]), p[1]); }},
      {"Add", [](const Exprs& x, const Exprs&) { return x[0] + x[1]; }},
      {"Sub", [](const Exprs& x, const Exprs&) { return x[0] - x[1]; }},
      {"Mul", [](const Exprs& x, const Exprs&) { return x[0] * x[1]; }},
      {"Div", [](const Exprs& x, const Exprs&) { return x[0] / x[1]; }},
      {"Pow", [](const Exprs& x, const Exprs&) { return powf_call(x[0], x[1]); }},
      // A constant exponent of 2: x * x is what the reference's double pow rounds to.
      {"Pow:square", [](const Exprs& x, const Exprs&) { return x[0] * x[0]; }},
      {"Min", [](const Exprs& x, const Exprs&) { return nan_propagating(x[0], x[1], min(x[0], x[1])); }},
      {"Max", [](const Exprs& x, const Exprs&) { return nan_propagating(x[0], x[1], max(x[0], x[1])); }},
      // Where with its condition as a float mask (nonzero: true), as the GPU kernels hold it.
      {"Where", [](const Exprs& x, const Exprs&) { return select(x[0] != 0.0f, x[1], x[2]); }},
      // Comparisons, logic and a Cast to bool on the GPU, whose bools are float masks (1: true, 0: false).
      {"Equal:mask", [](const Exprs& x, const Exprs&) { return mask(x[0] == x[1]); }},
      {"Less:mask", [](const Exprs& x, const Exprs&) { return mask(x[0] < x[1]); }},
      {"LessOrEqual:mask", [](const Exprs& x, const Exprs&) { return mask(x[0] <= x[1]); }},
      {"Greater:mask", [](const Exprs& x, const Exprs&) { return mask(x[0] > x[1]); }},
      {"GreaterOrEqual:mask", [](const Exprs& x, const Exprs&) { return mask(x[0] >= x[1]); }},
      {"Not:mask", [](const Exprs& x, const Exprs&) { return mask(x[0] == 0.0f); }},
      {"And:mask", [](const Exprs& x, const Exprs&) { return mask(x[0] != 0.0f && x[1] != 0.0f); }},
      {"Or:mask", [](const Exprs& x, const Exprs&) { return mask(x[0] != 0.0f || x[1] != 0.0f); }},
      {"Xor:mask", [](const Exprs& x, const Exprs&) { return mask((x[0] != 0.0f) != (x[1] != 0.0f)); }},
      {"Cast:mask", [](const Exprs& x, const Exprs&) { return mask(x[0] != 0.0f); }},
      // BatchNormalization with its parameters folded: x * s + b.
      {"BatchNorm", [](const Exprs& x, const Exprs&) { return x[0] * x[1] + x[2]; }},
  };
  return table;
}

}  // namespace

const ElementwiseExpr* find_elementwise_expr(const std::string& key) {
  auto it = table().find(key);
  return it == table().end() ? nullptr : &it->second;
}

Expr apply_output_epilogue(Expr y, const OutputEpilogue& epilogue, const Expr& residual) {
  if (epilogue.residual && !epilogue.activation_first) y += residual;
  if (!epilogue.activation.empty()) {
    const ElementwiseExpr* act = find_elementwise_expr(epilogue.activation);
    check(act != nullptr, ErrorKind::Unsupported, "no expression for the epilogue activation " + epilogue.activation);
    y = (*act)(Exprs{y}, Exprs(epilogue.params.begin(), epilogue.params.end()));
  }
  if (epilogue.residual && epilogue.activation_first) y += residual;
  return y;
}

}  // namespace tetra::dsl
