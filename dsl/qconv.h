// The compute definition of a dense, grouped or depthwise 2-D tetra.QConv with a packed int4 weight, over
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
// An unquantized float weight (ConvInt4Format::is_float) is read as it is: W(m, c, i, j) = float(w[e]).
// exactly as QuantizedWeight::value(). Scales and zero points sit in a 4-D grid scale(j', i', c', m')
// shaped like DequantizeLinear's: all 1 (per tensor), the weight's extent on the quantized axis (per
// axis), or the weight's shape with the blocked axis divided by the block size (blocked).
//
// What is compiled in: the kernel size and strides (constant loop bounds, dense or strided vector
// loads), the weight format and whether there is a bias. Everything else is read at run time
// (buffer extents, pads, dilations, Cg, Mg, the block size), so one compile serves many shapes.
//
// Algorithm (stage names in quotes, as schedules refer to them):
//   "x"(x, y, ch, n)    = X with zeros outside [0, W) x [0, H)   (inline or staged; see InputPadding)
//   "w"(kw, kh, c, m)   = W(min(m, M - 1), c, kh, kw), dequantized (inline, or staged per channel or tile)
//   "acc"(ow, oh, m, n) = bias(m) + sum over the reduction "taps" (rkw, rkh, rc) of x * w
//   output(ow, oh, m, n) = activation(acc(ow, oh, m, n) [+ residual(ow, oh, m, n)])   (the OutputEpilogue)
#pragma once
#include <cstdint>
#include <string>

#include "dsl/compute.h"
#include "dsl/jit_pipeline.h"
#include "dsl/core/qconv_format.h"
#include "dsl/core/result.h"
#include "importer/graph.h"

namespace tetra::dsl {

struct QConvDef {
  ComputeDef def;
  QConvWorkload workload;  // the one it was defined for; the parts its kernel spec names are compiled in
  Halide::ImageParam X{Halide::Float(32), 4, "X"};
  Halide::ImageParam packed;  // the int4 bytes, or the float weight's values
  Halide::ImageParam scale, zero{Halide::Int(8), 4, "W_zero"};
  Halide::ImageParam bias{Halide::Float(32), 1, "bias"};
  Halide::ImageParam residual{Halide::Float(32), 4, "residual"};  // (OW, OH, M, N), when the epilogue adds one
  Halide::Param<int> Cg{"Cg"}, Mg{"Mg"}, pad_top{"pad_top"}, pad_left{"pad_left"};
  Halide::Param<int> dil_h{"dil_h"}, dil_w{"dil_w"}, block{"block"};
  Halide::RDom taps;      // taps.x = kw, taps.y = kh, taps.z = c
  Halide::RDom interior;  // InputPadding::ZeroFillThenCopy: the input, [0, W) x [0, H)

  explicit QConvDef(const ConvInt4Format& format)
      : packed(format.is_float() ? Halide::Float(format.float_bits) : Halide::UInt(8), 1, "W_packed"),
        scale(format.f16_scale ? Halide::Float(16) : Halide::Float(32), 4, "W_scale") {}

  // The pipeline's arguments in call order (dsl::call_qconv's): X, the weight's packed data (then scale
  // and zero as its format has them), bias and residual where the workload has them, then the ints.
  std::vector<PipelineParam> params() const;
};

// How "x" gets its zeros outside the input.
enum class InputPadding {
  // A boundary condition, x = select(in bounds, X(clamped), 0): works inlined and staged per tile, but
  // a vector straddling the border reads X at clamped lanes, a gather; on 7x7 to 14x14 maps nearly
  // every vector of a staged plane straddles it.
  Select,
  // x = 0, then an update copies the input (`interior`), dense vectors both ways. Only for an "x"
  // staged as whole planes that cover the input (a strided conv may leave its last rows unread).
  // A conv with stride SW > 1 then reads x through the stage "x_phases", x's columns split by their
  // remainder mod SW: x_phases(i, r, ...) = x(i * SW + r, ...). Each tap reads one phase at
  // consecutive i, dense vectors, where x itself would be read at every SW-th column.
  ZeroFillThenCopy,
};

// How the weight "w" is read at input channel c of a group.
enum class WeightChannels {
  Exact,  // at c itself: each tap's own channel (the CPU schedules)
  // At min(c, Cg - 1): a GPU schedule stages whole chunks of tile_k channels, and in the last chunk the
  // channels past Cg read the last one, so that the weight is never read past its end.
  Clamped,
};

// The algorithm for workloads with `workload`'s kernel spec (dsl/core/kernel_spec.h); no schedule applied.
QConvDef define_qconv(const QConvWorkload& workload, InputPadding padding = InputPadding::Select,
                      WeightChannels channels = WeightChannels::Exact);

}  // namespace tetra::dsl
