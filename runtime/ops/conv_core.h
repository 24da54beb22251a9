// The one reference convolution, shared by Conv, ConvInteger, QLinearConv and tetra.QConv:
// attribute handling (auto_pad, pads, strides, dilations, group) and the plain loop nest.
#pragma once
#include <functional>
#include <vector>

#include "runtime/ops/op_util.h"

namespace tetra {

struct ConvParams {
  int64_t spatial_rank = 0;  // 1 or 2 (and 3 where it falls out of the same loops)
  int64_t batch = 0, in_channels = 0, out_channels = 0, group = 1;
  Shape in_spatial, kernel, out_spatial;
  std::vector<int64_t> strides, dilations, pads_begin, pads_end;
};

// A 1-D or 2-D conv's geometry as 2-D, for kernels written for 2-D: a 1-D conv is a 2-D conv of height 1.
// H, W: the conv's input (in_spatial); OH, OW: its output (out_spatial); PT, PL: pads at the start.
struct Conv2d {
  int64_t H, W, OH, OW, KH, KW, SH, SW, DH, DW, PT, PL;
  static Conv2d of(const ConvParams& p);  // p.spatial_rank must be 1 or 2
};

// Resolves a Conv node's attributes against input shape x [N, C, ...] and weight shape
// w [M, C/group, k...]; validates every constraint with an error naming the node.
ConvParams conv_params(const Node& node, const Shape& x, const Shape& w);
// The same for static inference with partially known shapes: returns the output shape.
SymbolicShape conv_output_shape(const Node& node, const SymbolicShape& x, const SymbolicShape& w);

// A ConvTranspose node's geometry as the Conv it is the adjoint of: x [N, C, ...] and w [C, M/group, k...]
// give in_spatial = the ConvTranspose's output size, out_spatial = its input size, out_channels = C,
// in_channels = M, and the pads (pads_end negative where output_shape extends the output).
ConvParams conv_transpose_params(const Node& node, const Shape& x, const Shape& w);

// y[n, m, o...] = sum_{c in group, k...} x(n, c, i...) * w(m, c, k...) (+ bias[m]), accumulated in double.
// x and w are read through the accessors so that callers can subtract zero points or dequantize
// int4 on the fly; padding positions contribute nothing. Returns y flat, shape [N, M, out_spatial...].
std::vector<double> conv_reference(const ConvParams& p, const std::function<double(int64_t)>& x,
                                   const std::function<double(int64_t)>& w, const std::vector<double>* bias);

// C[b..., m, n] = sum_k A[b..., m, k] * B[b..., k, n] with ONNX MatMul broadcasting and 1-D rules.
// Returns the flat result and its shape; the accessors read A and B by flat index.
struct MatMulResult {
  std::vector<double> values;
  Shape shape;
};
MatMulResult matmul_reference(const Node& node, const Shape& a_shape, const std::function<double(int64_t)>& a,
                              const Shape& b_shape, const std::function<double(int64_t)>& b);
SymbolicShape matmul_output_shape(const Node& node, const SymbolicShape& a, const SymbolicShape& b);

}  // namespace tetra
