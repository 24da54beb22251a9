// Recognises int4 weight patterns and rewrites them into nodes that keep the weight packed:
//   DequantizeLinear(int4/uint4 const) [-> Transpose/Reshape] -> MatMul/Gemm/Conv
//   com.microsoft.MatMulNBits (bits=4)
//   QuantizeLinear(fp const) -> Clip(int4 range) -> DequantizeLinear   (older fake-quant form)
// The fused nodes are tetra.QMatMul (Y = A x W, or A x W^T with trans_b) and tetra.QConv.
#pragma once
#include "importer/graph.h"

namespace tetra {

// Rewrites `graph` in place; nodes whose weights feed anything else are left as they are.
void fuse_int4_weights(Graph& graph);

// MatMul, Gemm and Conv whose weight (input 1) is a float32/float16 constant become tetra.QMatMul /
// tetra.QConv with the weight unquantized (QuantizedWeight::is_float): float models run on the same
// kernels and epilogue fusion as int4 ones, with the weight format compiled in. Run after
// fuse_int4_weights, which claims the int4 patterns first.
void fuse_float_weights(Graph& graph);

}  // namespace tetra
