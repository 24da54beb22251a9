// Fuses the elementwise work after each int4 GEMM/conv into it, so that a backend can run it in the
// kernel's epilogue instead of another pass over memory:
//   tetra.QConv -> BatchNormalization   folded into the weight's scales and the bias (stays int4)
//   -> Add(constant per output column/channel)   becomes the bias
//   -> Add(residual of the output's shape)       an epilogue step
//   -> Relu, LeakyRelu, Clip, Sigmoid, Tanh, HardSigmoid, HardSwish, Gelu   an epilogue step
// A float ConvTranspose takes such an activation as its epilogue step too (nothing else).
// Runs on a graph whose shapes are inferred (it checks residual shapes); re-infer afterwards.
#pragma once
#include "importer/graph.h"

namespace tetra {

void fuse_epilogues(Graph& graph);

// Attention's scores, MatMul(Q, Kᵀ) * c (or / c) with c a constant scalar, scale the smaller operand
// instead: MatMul(Q * c, Kᵀ). The product is the same up to rounding and the scaling pass reads and
// writes one operand (tokens x head size) instead of the scores (tokens x tokens). Returns the number
// of MatMuls rewritten; re-infer shapes afterwards.
int hoist_matmul_scales(Graph& graph);

// A BatchNormalization after a ConvTranspose (group 1, constant float weight and bias, a detector
// head's upsampling) folds into that weight and bias: y * a + b per output channel, a = gamma /
// sqrt(var + eps), b = beta - mean * a. Returns the number folded; re-infer shapes afterwards.
int fold_conv_transpose_batchnorms(Graph& graph);

// A zero constant Pad of the spatial dims before a Conv (tf2onnx and paddle2onnx write SAME padding
// so) becomes the conv's own pads: no padded copy of the activation. Returns the number folded.
int fold_pads_into_convs(Graph& graph);

// Attention written out, MatMul(A, B) -> Softmax over the last axis -> MatMul(P, V), with float32
// inputs whose batch dims are the same, becomes one tetra.Attention(A, B, V): a kernel that never
// stores the scores (tokens x tokens per head) in memory. Run hoist_matmul_scales first, so that a
// scale of the scores has moved onto A. Returns the number fused; re-infer shapes afterwards.
int fuse_attention(Graph& graph);

// tetra.Attention reads each operand reached through Transpose and single-index Gather nodes (Q, K and
// V taken from one packed QKV projection) as a strided view of the tensor those nodes copy from, and
// writes its result already transposed when a Transpose (keeping the innermost dim) is its only
// reader: attributes of runtime/ops/attention_layout.h. A and V keep a dense innermost dim; B may be any
// view (the kernel stages it). Copies no other node reads are removed. Returns the number of copy
// nodes removed; re-infer shapes afterwards.
int fold_attention_layouts(Graph& graph);

}  // namespace tetra
