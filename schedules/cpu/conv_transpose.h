// ConvTranspose whose kernel equals its stride (the usual x2 upsampling of detectors and decoders: no
// pads, no dilation, group 1), directly on the CPU. Every output pixel then takes exactly one tap:
//
//   Y(ow, oh, m, n) = bias(m) + sum_c X(ow / KW, oh / KH, c, n) * W(c, ow % KW, oh % KH, m)
//
// Halide buffers innermost first; W is the ONNX weight [C, M, KH, KW] laid out as [M, KH, KW, C]
// (innermost C). The kernel's phases are compiled in (KH x KW); extents and strides are run-time
// values. The GEMM + col2im path (runtime/halide_conv_transpose.cpp) serves the other ConvTransposes.
#pragma once
#include "dsl/core/output_epilogue.h"
#include "dsl/jit_pipeline.h"
#include "dsl/target.h"

namespace tetra::schedules {

// Arguments in call order: X, W, bias, then the output Y. `epilogue` is an activation applied to Y in
// the output stage (dsl/elementwise_expr.h); it adds no residual.
dsl::Result<dsl::ScheduledPipeline> conv_transpose_phases_pipeline(const dsl::TargetSpec& target, int kh, int kw,
                                                                   const dsl::OutputEpilogue& epilogue = {});

}  // namespace tetra::schedules
