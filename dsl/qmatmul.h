// The compute definition of tetra.QMatMul with a packed int4 weight:
//   Y[m, n] = act(alpha * sum_k A[m, k] * W(k, n) + beta * bias[n] [+ residual[m, n]])
// A is float32 [M, K] (Halide buffer A(k, m)), Y float32 [M, N] (Y(n, m)), bias float32 [N].
// M, K and N are read from the buffers at run time, so one compiled kernel serves every shape of its
// format. Leading batch dimensions of A are folded into M by the caller; trans_a is not handled.
//
// Algorithm (stage names in quotes, as schedules refer to them):
//   "a"(k, m)      = A(k, clamp(m, 0, M - 1))       rows past M repeat row M-1, so any m tiling is legal
//   "w"(j, k, p)   = W.panel(j, k, p)                the dequantized weight; inline unless staged
//   "acc"(j, p, m) = sum_k "a"(k, m) * "w"(j, k, p)  fp32 accumulation, reduction axis "k"
//   output(n, m)   = act(alpha * acc(n % P, n / P, m) + beta * bias(n) [+ residual(n, m)])
//                    (the workload's OutputEpilogue, dsl/elementwise_expr.h)
// Axes: n, m (output), j, p (panel column and panel of acc and w), k (w's pure k).
#pragma once
#include <cstdint>
#include <string>

#include "dsl/compute.h"
#include "dsl/core/qmatmul_workload.h"
#include "dsl/core/result.h"
#include "dsl/int4.h"
#include "dsl/jit_pipeline.h"
#include "importer/graph.h"

namespace tetra::dsl {

struct QMatMulDef {
  ComputeDef def;
  Halide::ImageParam A{Halide::Float(32), 2, "A"};
  PackedInt4 W;
  Halide::ImageParam bias{Halide::Float(32), 1, "bias"};
  Halide::ImageParam residual{Halide::Float(32), 2, "residual"};  // (N, M), when the epilogue adds one
  Halide::Param<float> alpha{"alpha", 1.0f};
  Halide::Param<float> beta{"beta", 1.0f};
  int panel = 0;
  QMatMulWorkload workload;  // what it was defined for

  QMatMulDef(const QMatMulWorkload& wl, const Int4Layout& layout)
      : W("W", wl.format, layout), panel(layout.panel), workload(wl) {}

  // The pipeline's inputs in dsl::call_qmatmul's order: A, the weight's buffers, bias and residual
  // where the workload has them, alpha, beta.
  std::vector<PipelineParam> params() const;
};

// The algorithm for `workload` with the weight in panels of `panel` columns; no schedule applied.
// With `block_sums` (for k-blocked scales of an even block size; see block_sums_apply; the weight must
// be packed with k_align = the block size) the scale leaves the inner loop:
//   "partial"(j, g, p, m) = sum over "r" < G of "a"(g*G + r, m) * "w"(j, g*G + r, p), w = q - zp
//   "acc"(j, p, m)       = sum over the groups "k" of partial(j, k, p, m) * scale(j, k, p)
// (one multiply per group instead of one per weight; fp32 sums in another order than DequantizeLinear
// followed by MatMul, within the usual fp32 tolerance).
// BlockSums::ZeroPointPerBlock also takes the zero point out of the inner loop: with the unsigned
// code u = q - zp + offset in [0, 15] (one mask or shift per nibble, PackedInt4::offset_code),
//   "partial"(j, g, p, m) = sum over "r" of "a"(g*G + r, m) * u       (a is 0 past K)
//   "a_sum"(g, m)         = sum over "r" of "a"(g*G + r, m)
//   "acc"(j, p, m)       += (partial - offset(j, g, p) * a_sum) * scale(j, g, p)
enum class BlockSums { Off, ZeroPointPerWeight, ZeroPointPerBlock };
QMatMulDef define_qmatmul(const QMatMulWorkload& workload, int panel, BlockSums block_sums = BlockSums::Off);
// The same for a weight packed as `layout` (its panel, and Int4Layout::words).
QMatMulDef define_qmatmul(const QMatMulWorkload& workload, const Int4Layout& layout,
                          BlockSums block_sums = BlockSums::Off);
bool block_sums_apply(const QMatMulWorkload& workload);

// The int8-activation algorithm (workload.int8_activations; the weight in the vnni packing of
// dsl/core/int4_format.h, k_align a multiple of the activation block B). Stages:
//   "a"(k, m)          = A(k, clamp(m)) for k < K, else 0
//   "a_max"(g, m)      = max over the block of |a|             a_scale = a_max / 127
//   "a_q"(k, m)        = int8(round_even(a * 127 / a_max))       0 where a_max is 0
//   "a_pairs"(b, h, kq, m) = a_q(8kq + 2b + h, m)             a_q in the order of the packed codes
//   "a_sum"(g, m)      = sum over the block of a_q               (int32)
//   "dot"(j, g, p, m)  = sum over "r" = (b, h, kq in the block) of u(...) * a_pairs(...)   (int32,
//                        4-way u8 x s8 dot products once b is vectorized innermost)
//   "acc"(j, p, m)     = sum over the blocks "k" of float(dot - offset * a_sum) * a_scale * w_scale
QMatMulDef define_qmatmul_int8(const QMatMulWorkload& workload, int panel);
// The same for `layout` (vnni). With layout.words, the GPU form: the weight read a word (8 codes) at a
// time and A's int8 values packed the same way,
//   "a_words"(h, kq, m) = a_q(8kq + h), a_q(8kq + 2 + h), ... as the 4 bytes of a uint32
//   "dot"(j, g, p, m)   = over the block's words "r": dot4_i8(low nibbles of the word, a_words(0, ..)) +
//                         dot4_i8(high nibbles, a_words(1, ..))    (dsl/gpu/emit_kernel.h)
QMatMulDef define_qmatmul_int8(const QMatMulWorkload& workload, const Int4Layout& layout);

// The float16-activation algorithm (workload.f16_activations; the weight in words, k_align a multiple of
// the block B = activation_block(), which is the weight's k-block when it has one). Stages:
//   "a"(k, m)           = A(k, clamp(m)) for k < K, else 0
//   "a_pairs"(t, kw, m) = pack_f16x2(a(8kw + t, m), a(8kw + t + 4, m))   t < 4: float16 pairs in the order
//                         of a code word's nibble pairs (t, t + 4)
//   "a_sum"(g, m)       = sum over the block of float16(a)
//   "w_pairs"(t, j, kw, p) = the float16 pair (16 + u, 16 + u') of word kw's nibbles t and t + 4 (uint32)
//   "dot"(j, g, p, m)   = sum over the block's words "r" and t of dot2_f16(w_pairs(t, ..), a_pairs(t, ..))
//   "acc"(j, p, m)      = sum over the blocks "k" of (dot - (16 + offset) * a_sum) * scale
// A word's nibbles t and t + 4 become the float16 pair (16 + u) by two integer operations: shifted into
// mantissa bits 6..9, ORed with the bits of 16.0 (ulp 1/64). Every product and the subtraction of the
// block's offset term are float32; the float16 products are exact, so the result is within float32
// rounding of sum_k float16(a) * (q - zp) * scale.
QMatMulDef define_qmatmul_f16(const QMatMulWorkload& workload, const Int4Layout& layout);

}  // namespace tetra::dsl
