// The compute definition of a grouped or depthwise 2-D tetra.QConv with a packed int4 weight, over
// NCHW float32 input:
//
//   Y[n, m, oh, ow] = bias[m] + sum_{c < Cg, i < KH, j < KW}
//                     X[n, (m / Mg) * Cg + c, oh*SH - PT + i*DH, ow*SW - PL + j*DW] * W(m, c, i, j)
//
// (Cg = C / group input channels and Mg = M / group output channels per group; taps outside the
// input read 0.) Halide buffers are innermost-first: X(w, h, ch, n), Y(ow, oh, m, n), bias(m).
//
// The weight stays 4-bit: the kernel reads the model's own packed bytes (ONNX order, element
// e = ((m*Cg + c)*KH + i)*KW + j in nibble e % 2 of byte e / 2) and dequantizes in the loop nest:
//   W(m, c, i, j) = float(q - zp) * scale         (rounded to float16 for float16 scales)
// exactly as QuantizedWeight::value(). Scales and zero points sit in a 4-D grid scale(j', i', c', m')
// shaped like DequantizeLinear's: all 1 (per tensor), the weight's extent on the quantized axis (per
// axis), or the weight's shape with the blocked axis divided by the block size (blocked).
//
// What is compiled in: the kernel size and strides (constant loop bounds, dense or strided vector
// loads), the weight format and whether there is a bias. Everything else is read at run time
// (buffer extents, pads, dilations, Cg, Mg, the block size), so one compile serves many shapes.
//
// Algorithm (stage names in quotes, as schedules refer to them):
//   "x"(x, y, ch, n)    = X with zeros outside [0, W) x [0, H)   (a boundary condition; inline or staged)
//   "w"(kw, kh, c, m)   = W(m, c, kh, kw), dequantized            (inline or staged per channel)
//   "acc"(ow, oh, m, n) = bias(m) + sum over the reduction "taps" (rkw, rkh, rc) of x * w
//   output(ow, oh, m, n) = acc(ow, oh, m, n)
#pragma once
#include <cstdint>
#include <string>

#include "dsl/compute.h"
#include "dsl/result.h"
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

  // "int4 per-axis(0) f32", "uint4 blocked(1) zp f16": part of workload and cache keys.
  std::string describe() const;
  bool operator==(const ConvInt4Format& o) const {
    return is_signed == o.is_signed && has_zero_point == o.has_zero_point && f16_scale == o.f16_scale &&
           grid == o.grid && axis == o.axis;
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

  int64_t Cg() const { return C / group; }  // input channels per group (1: depthwise)
  int64_t Mg() const { return M / group; }  // output channels per group
  bool depthwise() const { return Cg() == 1; }

  // "qconv n1 c64 h56 w56 m64 g64 k3x3 s1x1 d1x1 p1,1,1,1 int4 per-axis(0) f32 bias": the tuning key.
  std::string key() const;
  // The part of the workload the generated code depends on: "k3x3 s1x1 int4 per-axis(0) f32 bias".
  std::string code_key() const;
};

// The weight as kernel inputs: the packed bytes as they are, and the scale / zero-point grids.
struct ConvInt4Buffers {
  ConvInt4Format format;
  int64_t M = 0, Cg = 0, KH = 0, KW = 0, block = 0;
  Halide::Buffer<uint8_t> packed;  // ceil(M*Cg*KH*KW / 2) bytes, ONNX nibble order
  Halide::Buffer<> scale;          // (KW', KH', Cg', M'), float32 or float16
  Halide::Buffer<int8_t> zero;     // shaped as scale; undefined without zero points

  int64_t bytes() const;
};

// Copies `weight` (a 4-D tetra.QConv weight) into kernel buffers; zero points are widened to int8.
Result<ConvInt4Buffers> pack_conv_weight(const QuantizedWeight& weight);

struct QConvDef {
  ComputeDef def;
  QConvWorkload workload;  // the one it was defined for; its code_key() parts are compiled in
  Halide::ImageParam X{Halide::Float(32), 4, "X"};
  Halide::ImageParam packed{Halide::UInt(8), 1, "W_packed"};
  Halide::ImageParam scale, zero{Halide::Int(8), 4, "W_zero"};
  Halide::ImageParam bias{Halide::Float(32), 1, "bias"};
  Halide::Param<int> Cg{"Cg"}, Mg{"Mg"}, pad_top{"pad_top"}, pad_left{"pad_left"};
  Halide::Param<int> dil_h{"dil_h"}, dil_w{"dil_w"}, block{"block"};
  Halide::RDom taps;  // taps.x = kw, taps.y = kh, taps.z = c

  explicit QConvDef(const ConvInt4Format& format)
      : scale(format.f16_scale ? Halide::Float(16) : Halide::Float(32), 4, "W_scale") {}

  // Binds a workload's run-time values and the weight's buffers (which must have this format).
  Status bind(Halide::ParamMap& params, const QConvWorkload& workload, const ConvInt4Buffers& weight,
              const Halide::Buffer<float>* bias_values) const;
};

// The algorithm for workloads with `workload`'s code_key(); no schedule applied.
QConvDef define_qconv(const QConvWorkload& workload);

}  // namespace tetra::dsl
