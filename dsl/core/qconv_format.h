// A grouped or depthwise 2-D tetra.QConv as a kernel sees it: the weight's int4 format, the
// workload (shapes and attributes, resolved) and the weight's kernel buffers. No libHalide needed:
// the compute definition is in dsl/qconv.h.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "HalideBuffer.h"
#include "dsl/core/int4_format.h"
#include "dsl/core/output_epilogue.h"
#include "dsl/core/result.h"
#include "importer/graph.h"

namespace tetra::dsl {

// How a conv weight [M, Cg, KH, KW] is quantized: what the generated code depends on.
struct ConvInt4Format {
  enum class Grid { PerTensor, PerAxis, Blocked };
  bool is_signed = true;        // int4 or uint4
  bool has_zero_point = false;  // a zero-point grid is read; otherwise zp = 0
  bool f16_scale = false;       // float16 scales; every dequantized value is rounded to float16
  Grid grid = Grid::PerTensor;
  int axis = 0;  // the weight axis of PerAxis / Blocked: 0 (m), 1 (c), 2 (kh), 3 (kw)
  // 32 or 16: an unquantized float32 / float16 weight (QuantizedWeight::is_float), read as it is; the
  // fields above do not apply. 0: int4 / uint4 codes.
  int float_bits = 0;

  bool is_float() const { return float_bits != 0; }

  // "int4 per-axis(0) f32", "uint4 blocked(1) zp f16": part of workload and cache keys.
  std::string describe() const;
  bool operator==(const ConvInt4Format& o) const {
    return is_signed == o.is_signed && has_zero_point == o.has_zero_point && f16_scale == o.f16_scale &&
           grid == o.grid && axis == o.axis && float_bits == o.float_bits;
  }
};

// The format of a tetra.QConv weight, or why it has none (not 4-D, not int4, odd scale types).
Result<ConvInt4Format> conv_int4_format_of(const QuantizedWeight& weight);

// One conv's shapes and attributes, resolved (see runtime/ops/conv_core.h's conv_params).
struct QConvWorkload {
  int64_t N = 1, C = 0, H = 0, W = 0;  // input
  int64_t M = 0, group = 1;            // output channels
  int64_t KH = 0, KW = 0;              // kernel
  int64_t SH = 1, SW = 1, DH = 1, DW = 1;
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  int64_t OH = 0, OW = 0;  // output
  ConvInt4Format format;
  int64_t block = 0;  // the block size of a Blocked format (a run-time value)
  bool has_bias = false;
  OutputEpilogue epilogue;

  int64_t Cg() const { return C / group; }  // input channels per group (1: depthwise)
  int64_t Mg() const { return M / group; }  // output channels per group
  bool depthwise() const { return Cg() == 1; }

  // "qconv n1 c64 h56 w56 m64 g64 k3x3 s1x1 d1x1 p1,1,1,1 int4 per-axis(0) f32 bias": the tuning key.
  std::string key() const;
};

// The weight as kernel inputs: the packed bytes as they are, and the scale / zero-point grids.
struct ConvInt4Buffers {
  ConvInt4Format format;
  int64_t M = 0, Cg = 0, KH = 0, KW = 0, block = 0;
  Halide::Runtime::Buffer<> packed;      // uint8: ceil(M*Cg*KH*KW / 2) bytes, ONNX nibble order; a float
                                         // weight: its M*Cg*KH*KW values in ONNX order
  Halide::Runtime::Buffer<> scale;       // (KW', KH', Cg', M'), float32 or float16; undefined if float
  Halide::Runtime::Buffer<int8_t> zero;  // shaped as scale; undefined without zero points

  int64_t bytes() const;
};

// Copies `weight` (a 4-D tetra.QConv weight) into kernel buffers; zero points are widened to int8.
Result<ConvInt4Buffers> pack_conv_weight(const QuantizedWeight& weight);

}  // namespace tetra::dsl
