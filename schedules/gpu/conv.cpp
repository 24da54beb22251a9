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
  };
  return s;
}

Schedule gpu_conv_default(const QConvWorkload& w, const TargetSpec& target) {
  const int64_t wave = target.wavefront > 0 ? target.wavefront : 64;
  // A block of two waves: 16 columns (8 for narrow maps) by the rows that fill them; 4 channels a
  // thread (one for depthwise convs, whose channels read different inputs).
  const int64_t tile_ow = w.OW >= 16 ? 16 : 8;
  Schedule s;
  s.template_name = kName;
  s.knobs = {{"tile_ow", tile_ow},
             {"tile_oh", std::min<int64_t>(8, 2 * wave / tile_ow)},
             {"thread_m", int64_t(w.depthwise() ? 1 : 4)}};
  return s;
}

Status gpu_conv_check(const QConvWorkload&, const Schedule& s, const TargetSpec&) {
  if (s.get_int("tile_ow") * s.get_int("tile_oh") > 1024)
    return Failure{FailureKind::KnobConflict, "tile_oh", "tile_ow x tile_oh threads exceed 1024 per block"};
  return dsl::ok_status();
}

Status apply_gpu_conv(QConvDef& q, const Schedule& s, const TargetSpec&) {
  const int TW = int(s.get_int("tile_ow")), TH = int(s.get_int("tile_oh")), TM = int(s.get_int("thread_m"));
  const dsl::ComputeDef& d = q.def;
  Func out = d.output, acc = d.stage("acc");
  Var ow = d.var("ow"), oh = d.var("oh"), m = d.var("m"), n = d.var("n");
  const dsl::ReduceAxis& taps = d.reduce("taps");
  RVar rkw = taps.dom.x, rkh = taps.dom.y, rc = taps.dom.z;

  // Blocks over (column tile, row tile, channel tile), each walking the batch; a thread per output pixel
  // of the tile. (Fusing the batch into a block dimension hides the tile bounds from Halide.)
  Var owo("owo"), owi("owi"), oho("oho"), ohi("ohi"), mo("mo"), mi("mi");
  out.split(ow, owo, owi, TW, TailStrategy::GuardWithIf)
      .split(oh, oho, ohi, TH, TailStrategy::GuardWithIf)
      .split(m, mo, mi, TM, TailStrategy::GuardWithIf)
      .reorder(mi, owi, ohi, n, owo, oho, mo)
      .gpu_blocks(owo, oho, mo)
      .gpu_threads(owi, ohi)
      .unroll(mi);
  // acc: the block's, each thread's thread_m channels in its registers (dsl/gpu/private_arrays.h).
  // Channels past M read channel M - 1 (dsl/qconv.h), so whole channel tiles are computed.
  acc.compute_at(out, n)
      .store_in(MemoryType::Register)
      .bound_extent(ow, TW)
      .bound_extent(oh, TH)
      .bound_extent(m, TM)
      .bound_extent(n, 1)
      .reorder(m, ow, oh, n)
      .gpu_threads(ow, oh)
      .unroll(m);
  acc.update().reorder(m, rkw, rkh, rc, ow, oh, n).gpu_threads(ow, oh).unroll(m).unroll(rkw);
  return dsl::ok_status();
}

dsl::KernelTraffic gpu_conv_traffic(const QConvWorkload& w, const Schedule& s) {
  // Every channel tile reads its group's input once (neighbouring taps from cache); every pixel tile
  // reads the weight; each thread dequantizes its channels' taps; a multiply-add per tap and output.
  const int64_t TW = s.get_int("tile_ow"), TH = s.get_int("tile_oh"), TM = s.get_int("thread_m");
  const double taps = double(w.Cg() * w.KH * w.KW);
  const double outputs = double(w.N * w.M * w.OH * w.OW);
  const double pixel_tiles = double((w.OW + TW - 1) / TW * ((w.OH + TH - 1) / TH));
  const double channel_tiles = double((w.M + TM - 1) / TM);
  const double weight_bytes = double(w.M) * taps / 2;
  dsl::KernelTraffic t;
  t.global_bytes = channel_tiles * double(w.N * w.Cg() * w.H * w.W) * 4 + double(w.N) * pixel_tiles * weight_bytes +
                   outputs * 4 + (w.has_bias ? double(w.M) * 4 : 0);
  t.valu_ops = outputs * taps * 5;  // dequantized per thread, then a multiply-add
  t.blocks = int64_t(pixel_tiles * channel_tiles);
  t.threads_per_block = TW * TH;
  return t;
}

}  // namespace tetra::schedules
