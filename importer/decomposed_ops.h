// Recognises operators that exporters write out op by op and puts the operator back, so that a backend
// runs one kernel (and epilogue fusion can take it into a conv or GEMM) instead of a chain of
// elementwise passes over memory:
//   HardSwish    x * Clip(x + 3, 0, 6) / 6            (Div by 6 or Mul by 1/6, in either nesting)
//   HardSigmoid  Clip(x + 3, 0, 6) / 6                 -> HardSigmoid(alpha = 1/6, beta = 0.5)
//   Gelu         x * 0.5 * (1 + Erf(x / sqrt(2)))      (Div by sqrt 2 or Mul by 1/sqrt 2; the 0.5 on
//                                                       either side)
//   LayerNormalization over the last axis:
//     d = x - ReduceMean(x); y = d / Sqrt(ReduceMean(d^2) + eps) [* gamma] [+ beta]
//     (d^2 as Pow(d, 2) or d * d; ReduceMean's axes as an attribute or an input)
// Only chains whose intermediate values have no other reader are rewritten; the last node of a chain
// becomes the operator, keeping its output name. Constants must match to float32 precision.
#pragma once
#include "importer/graph.h"

namespace tetra {

// Rewrites `graph` in place; returns how many operators it recognised.
int recognise_decomposed_ops(Graph& graph);

}  // namespace tetra
