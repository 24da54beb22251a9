#include "schedules/gpu/conv.h"

#include <algorithm>

namespace tetra::schedules {

using dsl::Failure;
using dsl::FailureKind;
using dsl::KnobSpace;
using namespace Halide;

namespace {
constexpr const char* kName = "gpu_int4_conv";
}  // namespace

const std::vector<QConvTemplate>& gpu_qconv_templates() {
  static const std::vector<QConvTemplate> templates = {
      {kName, dsl::TargetFamily::Hip, gpu_conv_space, gpu_conv_default, gpu_conv_check, apply_gpu_conv},
  };
  return templates;
}

const char* gpu_qconv_template_for(const QConvWorkload&) { return kName; }

KnobSpace gpu_conv_space(const QConvWorkload&, const TargetSpec& target) {
  KnobSpace s;
  s.template_name = kName;
  s.family = target.family;
  s.knobs = {
      {"tile_ow", dsl::int_values({8, 16, 32, 64})},
      {"tile_oh", dsl::int_values({1, 2, 4, 8})},
      {"thread_m", dsl::int_values({1, 2, 4, 8})},
      // Output columns a thread computes: each dequantized weight then feeds thread_ow multiply-adds.
      {"thread_ow", dsl::int_values({1, 2, 4})},
  };
  return s;
}

Schedule gpu_conv_default(const QConvWorkload& w, const TargetSpec& target) {
  const int64_t wave = target.wavefront > 0 ? target.wavefront : 64;
  // A block of about two waves. Dense and grouped convs: 2 columns a thread, so each dequantized weight
  // feeds 2 multiply-adds, and 4 channels (2 on gfx9, whose 102 SGPRs the channels' uniform weight
  // values would overflow); depthwise convs (whose channels read different inputs): one channel and
  // column a thread.
  const int64_t thread_ow = w.depthwise() ? 1 : 2;
  const int64_t thread_m = w.depthwise() ? 1 : wave == 64 ? 2 : 4;
  const int64_t tile_ow = w.OW >= 16 * thread_ow ? 16 * thread_ow : 8 * thread_ow;
  Schedule s;
  s.template_name = kName;
  s.knobs = {{"tile_ow", tile_ow},
             {"tile_oh", std::min<int64_t>(8, 2 * wave * thread_ow / tile_ow)},
             {"thread_m", thread_m},
             {"thread_ow", thread_ow}};
  return s;
}

Status gpu_conv_check(const QConvWorkload&, const Schedule& s, const TargetSpec&) {
  if (s.get_int("tile_ow") % s.get_int("thread_ow"))
    return Failure{FailureKind::KnobConflict, "thread_ow", "tile_ow must be a multiple of thread_ow"};
  if (s.get_int("tile_ow") / s.get_int("thread_ow") * s.get_int("tile_oh") > 1024)
    return Failure{FailureKind::KnobConflict, "tile_oh", "more than 1024 threads per block"};
  return dsl::ok_status();
}

Status apply_gpu_conv(QConvDef& q, const Schedule& s, const TargetSpec&) {
  const int TW = int(s.get_int("tile_ow")), TH = int(s.get_int("tile_oh")), TM = int(s.get_int("thread_m"));
  const int VW = int(s.get_int("thread_ow"));
  const dsl::ComputeDef& d = q.def;
  Func out = d.output, acc = d.stage("acc");
  Var ow = d.var("ow"), oh = d.var("oh"), m = d.var("m"), n = d.var("n");
  const dsl::ReduceAxis& taps = d.reduce("taps");
  RVar rkw = taps.dom.x, rkh = taps.dom.y, rc = taps.dom.z;

  // Blocks over (column tile, row tile, channel tile), each walking the batch; a thread per thread_ow
  // columns of a row of the tile. (Fusing the batch into a block dimension hides the tile bounds from
  // Halide.)
  Var owo("owo"), owi("owi"), owt("owt"), owv("owv"), oho("oho"), ohi("ohi"), mo("mo"), mi("mi");
  out.split(ow, owo, owi, TW, TailStrategy::GuardWithIf)
      .split(oh, oho, ohi, TH, TailStrategy::GuardWithIf)
      .split(m, mo, mi, TM, TailStrategy::GuardWithIf)
      .split(owi, owt, owv, VW)
      .reorder(mi, owv, owt, ohi, n, owo, oho, mo)
      .gpu_blocks(owo, oho, mo)
      .gpu_threads(owt, ohi)
      .unroll(mi)
      .unroll(owv);
  // acc: the block's, each thread's thread_m channels in its registers (dsl/gpu/private_arrays.h).
  // Channels past M read channel M - 1 (dsl/qconv.h), so whole channel tiles are computed.
  Var at("at"), av("av");
  acc.compute_at(out, n)
      .store_in(MemoryType::Register)
      .bound_extent(ow, TW)
      .bound_extent(oh, TH)
      .bound_extent(m, TM)
      .bound_extent(n, 1)
      .split(ow, at, av, VW)
      .reorder(m, av, at, oh, n)
      .gpu_threads(at, oh)
      .unroll(m)
      .unroll(av);
  acc.update()
      .split(ow, at, av, VW)
      .reorder(m, av, rkw, rkh, rc, at, oh, n)
      .gpu_threads(at, oh)
      .unroll(m)
      .unroll(av)
      .unroll(rkw);
  return dsl::ok_status();
}

dsl::KernelTraffic gpu_conv_traffic(const QConvWorkload& w, const Schedule& s) {
  // Every channel tile reads its group's input once (neighbouring taps from cache); every pixel tile
  // reads the weight; each thread dequantizes its channels' taps once for its thread_ow columns; a
  // multiply-add per tap and output.
  const int64_t TW = s.get_int("tile_ow"), TH = s.get_int("tile_oh"), TM = s.get_int("thread_m");
  const double VW = double(s.get_int("thread_ow"));
  const double taps = double(w.Cg() * w.KH * w.KW);
  const double outputs = double(w.N * w.M * w.OH * w.OW);
  const double pixel_tiles = double((w.OW + TW - 1) / TW * ((w.OH + TH - 1) / TH));
  const double channel_tiles = double((w.M + TM - 1) / TM);
  const double weight_bytes = double(w.M) * taps / 2;
  dsl::KernelTraffic t;
  t.global_bytes = channel_tiles * double(w.N * w.Cg() * w.H * w.W) * 4 + double(w.N) * pixel_tiles * weight_bytes +
                   outputs * 4 + (w.has_bias ? double(w.M) * 4 : 0);
  t.valu_ops = outputs * taps * (1 + 4 / VW);
  t.blocks = int64_t(pixel_tiles * channel_tiles);
  t.threads_per_block = TW / int64_t(VW) * TH;
  return t;
}

}  // namespace tetra::schedules
