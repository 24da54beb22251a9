// Round-to-nearest int4 quantization of one weight tensor, and MatMulNBits' layout of the result.
//
// Ranges (round half to even):
//   symmetric:  int4, scale = c * max|w| / 7, codes in [-8, 7]; with the search on, also
//               scale = c * |min w| / 8 when the block's extreme is negative (16 levels, not 15).
//   asymmetric: uint4 + zero point, scale = c * (max - min) / 15 over a range widened to include 0
//               (so 0 is exact and the zero point fits in [0, 15]).
// The clip ratio c is 1 (plain max-abs) or, with the search on, the one of kClipRatios that gives
// the block the smallest squared reconstruction error: clipping a few outliers buys a finer grid for
// all other weights, as llama.cpp's and AWQ-style quantizers do.
#pragma once
#include <string>

#include "importer/graph.h"

namespace tetra::quantize {

struct WeightQuantOptions {
  bool asymmetric = false;
  bool search_clip = true;
};

// Quantizes `w` with one scale per block of `block` along `axis`, or per index along `axis` when
// `block` is 0. The result is laid out as DequantizeLinear's inputs; scales keep w's float type.
QuantizedWeight quantize_weight(const Tensor& w, const std::string& name, int64_t axis, int64_t block,
                                const WeightQuantOptions& options);

struct ErrorStats {
  double max_abs = 0, rel_rms = 0;
};
// How far the dequantized `q` is from `w`.
ErrorStats measure(const QuantizedWeight& q, const Tensor& w);

// MatMulNBits' layout of a weight quantized as [N, K] in blocks along K: B [N, blocks, block/2] uint8
// (the padding past K holds the zero point, i.e. the value 0), scales [N * blocks], zero points
// packed two per byte per row. Symmetric int4 codes become uint4 around the default zero point 8.
struct NBitsWeight {
  Tensor b, scales, zero_points;
};
NBitsWeight to_matmul_nbits(const QuantizedWeight& q);

Tensor transpose_2d(const Tensor& t);

}  // namespace tetra::quantize
