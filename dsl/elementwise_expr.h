// The Halide expression of each elementwise op tetra compiles, by op key: the op type, then after a ':'
// the attribute choices that change the code ("Relu", "Clip:min,max", "Gelu:tanh", "Pow:square"). One
// table for the elementwise kernels (runtime/elementwise_pipelines.cpp) and for the epilogues that
// conv and matmul kernels apply in their output stage (dsl/qconv.h, dsl/qmatmul.h). The arities are
// runtime/halide_backend.h's elementwise_ops().
//
// Numerics: exp, log and erf are Halide's vectorized versions; tanh is built on exp (libm's tanhf
// runs scalar, 12x slower); Pow calls libm's powf (Halide's pow loses up to ~1e-6 relative).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "Halide.h"
#include "dsl/core/output_epilogue.h"

namespace tetra::dsl {

// x: the operands; p: the float attributes (alpha, clip bounds, ...).
using Exprs = std::vector<Halide::Expr>;
using ElementwiseExpr = std::function<Halide::Expr(const Exprs& x, const Exprs& p)>;

// nullptr when there is no expression for `key`.
const ElementwiseExpr* find_elementwise_expr(const std::string& key);

// activation(y [+ residual]), or activation(y) + residual, as `epilogue` says; `residual` is read only
// where it has one. Fails with
// ErrorKind::Unsupported for an activation with no expression.
Halide::Expr apply_output_epilogue(Halide::Expr y, const OutputEpilogue& epilogue, const Halide::Expr& residual);

}  // namespace tetra::dsl
