#include "dsl/core/kernel_calls.h"

#include <vector>

#include "dsl/core/kernel_spec.h"

namespace tetra::dsl {
namespace {

int64_t extent(const halide_buffer_t* b, int d) { return b->dim[d].extent; }

}  // namespace

Status call_qmatmul(const CompiledPipeline& code, const QMatMulWorkload& compiled, const Int4Layout& layout,
                    const QMatMulCall& c) {
  auto bad = [](const std::string& why) { return Failure{FailureKind::Run, "qmatmul", why}; };
  if (!c.A || !c.W || !c.Y) return bad("A, W and Y are required");
  const PackedInt4Buffers& W = *c.W;
  if (c.A->dimensions != 2 || c.Y->dimensions != 2) return bad("A and Y must be 2-D buffers (K, M) and (N, M)");
  if (extent(c.A, 0) != W.K)
    return bad("A has K = " + std::to_string(extent(c.A, 0)) + ", the weight " + std::to_string(W.K));
  if (extent(c.Y, 0) != W.N || extent(c.Y, 1) != extent(c.A, 1))
    return bad("Y must be (N = " + std::to_string(W.N) + ", M = " + std::to_string(extent(c.A, 1)) + ")");
  if (W.layout.panel != layout.panel || W.layout.vnni != layout.vnni ||
      W.layout.panel_pad_bytes != layout.panel_pad_bytes)
    return bad("the weight is packed as " + W.layout.describe() + ", the kernel reads " + layout.describe() +
               " (repack it for this kernel)");
  if (layout.vnni != compiled.int8_activations)
    return bad("the kernel of " + compiled.key() + " cannot read the layout " + layout.describe());
  if (W.layout.k_align % layout.k_align != 0)
    return bad("the weight's rows are padded to a multiple of " + std::to_string(W.layout.k_align) +
               ", this kernel reads blocks of " + std::to_string(layout.k_align) + " (repack it for this kernel)");
  if (!(W.format == compiled.format))
    return bad("the weight is " + W.format.describe() + ", the kernel was compiled for " + compiled.format.describe());
  if (compiled.has_bias && (!c.bias || c.bias->dimensions != 1 || extent(c.bias, 0) != W.N))
    return bad("this kernel needs a bias of N = " + std::to_string(W.N) + " values");
  if (compiled.epilogue.residual && (!c.residual || c.residual->dimensions != 2 || extent(c.residual, 0) != W.N ||
                                     extent(c.residual, 1) != extent(c.A, 1)))
    return bad("this kernel adds a residual of (N = " + std::to_string(W.N) +
               ", M = " + std::to_string(extent(c.A, 1)) + ")");

  float alpha = c.alpha, beta = c.beta;
  std::vector<void*> argv = {const_cast<halide_buffer_t*>(c.A), const_cast<halide_buffer_t*>(W.packed.raw_buffer())};
  if (!compiled.format.is_float()) argv.push_back(const_cast<halide_buffer_t*>(W.scale.raw_buffer()));
  if (compiled.format.has_zero_point) argv.push_back(const_cast<halide_buffer_t*>(W.zero.raw_buffer()));
  if (compiled.has_bias) argv.push_back(const_cast<halide_buffer_t*>(c.bias));
  if (compiled.epilogue.residual) argv.push_back(const_cast<halide_buffer_t*>(c.residual));
  argv.push_back(&alpha);
  argv.push_back(&beta);
  argv.push_back(c.Y);
  return call_pipeline(code, argv.data(), "qmatmul");
}

Status call_qconv(const CompiledPipeline& code, const QConvWorkload& compiled, const QConvWorkload& wl,
                  const QConvCall& c) {
  auto bad = [](const std::string& why) { return Failure{FailureKind::Run, "qconv", why}; };
  if (!c.X || !c.weight || !c.Y) return bad("X, W and Y are required");
  const std::string compiled_key = kernel_spec(compiled, "").key(), key = kernel_spec(wl, "").key();
  if (key != compiled_key) return bad("this kernel is compiled for " + compiled_key + ", not " + key);
  // The output size must be the one the pads, strides and dilations give (the kernel reads no pad_end).
  auto out_size = [](int64_t in, int64_t pb, int64_t pe, int64_t k, int64_t s, int64_t d) {
    return (in + pb + pe - (k - 1) * d - 1) / s + 1;
  };
  if (out_size(wl.H, wl.pad_top, wl.pad_bottom, wl.KH, wl.SH, wl.DH) != wl.OH ||
      out_size(wl.W, wl.pad_left, wl.pad_right, wl.KW, wl.SW, wl.DW) != wl.OW)
    return bad("OH and OW do not follow from the pads, strides and dilations of " + wl.key());
  const ConvInt4Buffers& w = *c.weight;
  if (!(w.format == wl.format))
    return bad("the weight is " + w.format.describe() + ", the kernel was compiled for " + wl.format.describe());
  if (w.M != wl.M || w.Cg != wl.Cg() || w.KH != wl.KH || w.KW != wl.KW)
    return bad("the weight's shape does not match the workload " + wl.key());
  if (wl.group <= 0 || wl.C % wl.group != 0 || wl.M % wl.group != 0)
    return bad("group " + std::to_string(wl.group) + " must divide C and M");
  if (wl.has_bias && (!c.bias || c.bias->dimensions != 1 || extent(c.bias, 0) != wl.M))
    return bad("this kernel needs a bias of M = " + std::to_string(wl.M) + " values");
  if (c.X->dimensions != 4 || extent(c.X, 0) != wl.W || extent(c.X, 1) != wl.H || extent(c.X, 2) != wl.C ||
      extent(c.X, 3) != wl.N)
    return bad("X must be (W, H, C, N) of the workload " + wl.key());
  if (c.Y->dimensions != 4 || extent(c.Y, 0) != wl.OW || extent(c.Y, 1) != wl.OH || extent(c.Y, 2) != wl.M ||
      extent(c.Y, 3) != wl.N)
    return bad("Y must be (OW, OH, M, N) of the workload " + wl.key());
  if (wl.epilogue.residual) {
    if (!c.residual || c.residual->dimensions != 4) return bad("this kernel adds a residual of the output's shape");
    for (int d = 0; d < 4; ++d)
      if (extent(c.residual, d) != extent(c.Y, d)) return bad("the residual must have the output's shape");
  }

  std::vector<std::pair<std::string, int>> ints = qconv_int_arguments(wl, w.block);
  std::vector<void*> argv = {const_cast<halide_buffer_t*>(c.X), const_cast<halide_buffer_t*>(w.packed.raw_buffer())};
  if (!wl.format.is_float()) argv.push_back(const_cast<halide_buffer_t*>(w.scale.raw_buffer()));
  if (wl.format.has_zero_point) argv.push_back(const_cast<halide_buffer_t*>(w.zero.raw_buffer()));
  if (wl.has_bias) argv.push_back(const_cast<halide_buffer_t*>(c.bias));
  if (wl.epilogue.residual) argv.push_back(const_cast<halide_buffer_t*>(c.residual));
  for (auto& [name, value] : ints) argv.push_back(&value);
  argv.push_back(c.Y);
  return call_pipeline(code, argv.data(), "qconv");
}

std::vector<std::pair<std::string, int>> qconv_int_arguments(const QConvWorkload& wl, int64_t weight_block) {
  return {{"Cg", int(wl.Cg())},
          {"Mg", int(wl.Mg())},
          {"pad_top", int(wl.pad_top)},
          {"pad_left", int(wl.pad_left)},
          {"dil_h", int(wl.DH)},
          {"dil_w", int(wl.DW)},
          {"block", int(weight_block > 0 ? weight_block : 1)}};
}

}  // namespace tetra::dsl
