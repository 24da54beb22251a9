#include "schedules/gpu/conv.h"

#include <algorithm>
#include <set>

#include "schedules/gpu/templates.h"

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

namespace {
// A block's staged weight chunk: `channels` output channels x tile_k input channels x every tap, float32.
int64_t staged_weight_bytes(const QConvWorkload& w, int64_t tile_k, int64_t channels) {
  return w.KH * w.KW * tile_k * channels * 4;
}
}  // namespace

KnobSpace gpu_conv_space(const QConvWorkload&, const TargetSpec& target) {
  KnobSpace s;
  s.template_name = kName;
  s.family = target.family;
  s.knobs = {
      {"tile_ow", dsl::int_values({8, 16, 32, 64})},
      {"tile_oh", dsl::int_values({1, 2, 4, 8})},
      {"thread_m", dsl::int_values({1, 2, 4, 8})},
      // Output columns a thread computes: each weight it reads then feeds thread_ow multiply-adds.
      {"thread_ow", dsl::int_values({1, 2, 4})},
      // Threads across output channels in a block (z): the block computes threads_m * thread_m channels,
      // and its threads of one pixel share each input value through the cache.
      {"threads_m", dsl::int_values({1, 2, 4, 8}), dsl::KnobValue(int64_t(1))},
      // "w": the block dequantizes each chunk of its weight tile (tile_k input channels, every tap) once
      // into workgroup memory, and its threads read it from there; "none": each thread dequantizes the
      // weights it uses.
      {"shared_stage", dsl::string_values({"none", "w"}), dsl::KnobValue(std::string("none"))},
      {"tile_k", dsl::int_values({4, 8, 16, 32}), dsl::KnobValue(int64_t(8))},
      // Threads per output tile over the input channels (in z, so threads_m 1): each sums a share of
      // every chunk (or every split_c-th input channel) into partial outputs in its registers, added in
      // workgroup memory. More waves for the same tiles, where small maps leave a GPU's SIMDs idle.
      {"split_c", dsl::int_values({1, 2, 4}), dsl::KnobValue(int64_t(1))},
  };
  return s;
}

Schedule gpu_conv_default(const QConvWorkload& w, const TargetSpec& target) {
  const int64_t wave = wave_of(target);
  Schedule s;
  s.template_name = kName;
  if (w.depthwise()) {
    // Depthwise convs (whose channels read different inputs, and have few taps): one channel and column
    // a thread, reading its weights directly; a block of about two waves.
    const int64_t tile_ow = w.OW >= 16 ? 16 : 8;
    s.knobs = {{"tile_ow", tile_ow},      {"tile_oh", std::min<int64_t>(8, 2 * wave / tile_ow)},
               {"thread_m", int64_t(1)},  {"thread_ow", int64_t(1)},
               {"threads_m", int64_t(1)}, {"shared_stage", std::string("none")},
               {"tile_k", int64_t(8)}};
    return s;
  }
  // Dense and grouped convs as an implicit GEMM: a block of about two waves of pixels (2 columns a thread)
  // times up to 4 threads of 4 channels, its weight tile dequantized into workgroup memory once per
  // chunk of input channels, so a thread's inner loop is 2 input loads, one 16-byte LDS read and 8
  // multiply-adds per tap. On small maps (ResNet's 14x14 and 7x7) that grid leaves most of a large GPU
  // idle, so a thread takes 2 channels instead of 4 when the outputs would give the arch's reference GPU
  // less than a wave per SIMD: by the static estimate 2x faster at 7x7 x 512 channels on MI300X and RX
  // 7900 XTX. Not 1: a thread would then load 4 inputs per 6 multiply-adds, and by the estimate its loads
  // bound it (14x14 x 256 channels on MI210: 27 us against 23); only on 7x7 maps of CDNA's many CUs, which
  // neither fills, does 1 come out ahead, where split_c is the better remedy.
  // (Blocks of two waves in all, one thread across channels, read the weight by four times as many pixel
  // tiles, and spill 2 SGPRs on gfx942.)
  const int64_t thread_ow = 2;
  const double outputs = double(w.N) * double(w.M) * double(w.OH) * double(w.OW);
  const bool fills = outputs / double(thread_ow * 4) >= double(reference_simds(target) * wave);
  const int64_t thread_m = fills ? 4 : 2;
  // Columns a block: whole waves of threads where the map is wide, else the map's width rounded up.
  const int64_t tile_ow = w.OW >= 32 ? 32 : w.OW > 8 ? 16 : 8;
  int64_t threads_m = 1;
  while (threads_m < 4 && threads_m * thread_m < w.M) threads_m *= 2;
  int64_t tile_oh = std::min<int64_t>(8, 2 * wave * thread_ow / tile_ow);
  // Where the blocks crowd the reference GPU's CUs (crowds_cus: a batch-1 56x56 map on MI300X makes 112
  // blocks of 8 waves for 304 CUs), fewer threads across channels, then fewer rows, make smaller blocks and
  // more of them, down to 4 waves a block (by the estimate 10.3 -> 5.2 us there). Smaller still gains no
  // SIMDs, and the channel tiles read the input again.
  auto tiles = [](int64_t extent, int64_t tile) { return (extent + tile - 1) / tile; };
  auto crowded = [&] {
    return crowds_cus(target, tiles(w.OW, tile_ow) * tiles(w.OH, tile_oh) * tiles(w.M, threads_m * thread_m),
                      tile_ow / thread_ow * tile_oh * threads_m);
  };
  while (crowded() && threads_m > 1) threads_m /= 2;
  while (crowded() && tile_oh > 1) tile_oh /= 2;
  s.knobs = {{"tile_ow", tile_ow},     {"tile_oh", tile_oh},     {"thread_m", thread_m},
             {"thread_ow", thread_ow}, {"threads_m", threads_m}, {"shared_stage", std::string("w")},
             {"tile_k", int64_t(4)}};
  // The largest chunk of input channels that the channels need and that keeps the stage within 16 KiB.
  for (int64_t k : {8, 16, 32}) {
    if (k / 2 >= w.Cg() || staged_weight_bytes(w, k, threads_m * thread_m) > 16 * 1024) break;
    s.knobs["tile_k"] = k;
  }
  return s;
}

Status gpu_conv_check(const QConvWorkload& w, const Schedule& s, const TargetSpec&) {
  const int64_t S = s.get_int("split_c", 1), channels = s.get_int("threads_m", 1) * s.get_int("thread_m");
  const bool stage_w = s.get_string("shared_stage", "none") == "w";
  if (s.get_int("tile_ow") % s.get_int("thread_ow"))
    return Failure{FailureKind::KnobConflict, "thread_ow", "tile_ow must be a multiple of thread_ow"};
  if (s.get_int("tile_ow") / s.get_int("thread_ow") * s.get_int("tile_oh") * s.get_int("threads_m", 1) * S > 1024)
    return Failure{FailureKind::KnobConflict, "tile_oh", "more than 1024 threads per block"};
  if (S > 1 && s.get_int("threads_m", 1) != 1)
    return Failure{FailureKind::KnobConflict, "split_c", "split_c takes the threads in z: threads_m must be 1"};
  // Workgroup memory: the staged weight chunk, and with split_c the block's partial outputs.
  const int64_t staged = (stage_w ? staged_weight_bytes(w, s.get_int("tile_k", 8), channels) : 0) +
                         (S > 1 ? s.get_int("tile_ow") * s.get_int("tile_oh") * channels * S * 4 : 0);
  return check_staged_bytes(staged, stage_w ? "tile_k" : "split_c", "the staged weight chunk and partial outputs");
}

Status apply_gpu_conv(QConvDef& q, const Schedule& s, const TargetSpec&) {
  const int TW = int(s.get_int("tile_ow")), TH = int(s.get_int("tile_oh")), TM = int(s.get_int("thread_m"));
  const int VW = int(s.get_int("thread_ow")), MT = int(s.get_int("threads_m", 1));
  const bool stage_w = s.get_string("shared_stage", "none") == "w";
  const int C = int(s.get_int("tile_k", 8));
  const int S = int(s.get_int("split_c", 1));
  const int channels = MT * TM;  // per block
  const dsl::ComputeDef& d = q.def;
  Func out = d.output, acc = d.stage("acc"), w = d.stage("w");
  Var ow = d.var("ow"), oh = d.var("oh"), m = d.var("m"), n = d.var("n");
  const dsl::ReduceAxis& taps = d.reduce("taps");
  RVar rkw = taps.dom.x, rkh = taps.dom.y, rc = taps.dom.z;

  // Blocks over (column tile, row tile, channel tile), each walking the batch; a thread per thread_ow
  // columns of a row of the tile and thread_m channels. (Fusing the batch into a block dimension hides
  // the tile bounds from Halide.)
  Var owo("owo"), owi("owi"), owt("owt"), owv("owv"), oho("oho"), ohi("ohi"), mo("mo"), mi("mi"), mt("mt"), mv("mv");
  out.split(ow, owo, owi, TW, TailStrategy::GuardWithIf)
      .split(oh, oho, ohi, TH, TailStrategy::GuardWithIf)
      .split(m, mo, mi, channels, TailStrategy::GuardWithIf)
      .split(owi, owt, owv, VW)
      .split(mi, mt, mv, TM)
      .reorder(mv, owv, owt, ohi, mt, n, owo, oho, mo)
      .gpu_blocks(owo, oho, mo)
      .gpu_threads(owt, ohi, mt)
      .unroll(mv)
      .unroll(owv);
  // acc: the block's, each thread's thread_ow x thread_m outputs in its registers
  // (dsl/gpu/private_arrays.h). Channels past M read channel M - 1 (dsl/qconv.h), so whole channel tiles
  // are computed.
  Var at("at"), av("av"), amt("amt"), amv("amv"), u("u");
  // A Func of the block's outputs (acc; with split_c also its factor and the factor's copy in workgroup
  // memory, each with its part u) at the batch loop: a thread per thread_ow columns, row and, in z, the
  // thread_m channels or the part; its outputs unrolled.
  auto place_in_block = [&](Func f, bool with_parts) {
    f.compute_at(out, n).bound_extent(ow, TW).bound_extent(oh, TH).bound_extent(m, channels).bound_extent(n, 1);
    f.split(ow, at, av, VW).split(m, amt, amv, TM).unroll(amv).unroll(av);
    if (!with_parts) {
      f.reorder(amv, av, at, oh, amt).gpu_threads(at, oh, amt);
      return;
    }
    f.bound_extent(u, S).reorder(amv, av, at, oh, amt, u).gpu_threads(at, oh, u);
  };
  place_in_block(acc, false);
  acc.store_in(MemoryType::Register);
  // The input channels: in chunks of tile_k when the weight is staged, split_c threads taking a
  // contiguous share of each; else every split_c-th channel a thread.
  RVar kc("kc"), kci("kci"), ku("ku"), kr("kr");
  if (stage_w && S > 1)
    acc.update()
        .split(rc, kc, kci, C, TailStrategy::GuardWithIf)
        .split(kci, ku, kci, C / S);  // every tile_k divides by every split_c
  else if (stage_w)
    acc.update().split(rc, kc, kci, C, TailStrategy::GuardWithIf);
  else if (S > 1)
    acc.update().split(rc, kr, ku, S, TailStrategy::GuardWithIf);
  // The Func that sums the taps: acc, or with split_c its factor part(ow, oh, m, n, u), thread (at, oh,
  // u)'s partial outputs in its registers as acc's are in its threads'; each thread writes them to
  // workgroup memory once, and after a barrier acc adds each output's split_c parts.
  Func sum = acc;
  if (S > 1) {
    sum = acc.update().rfactor(ku, u);
    acc.update().split(ow, at, av, VW).split(m, amt, amv, TM).gpu_threads(at, oh, amt).unroll(amv).unroll(av);
    Func shared = sum.in(acc);
    place_in_block(sum, true);
    place_in_block(shared, true);
    sum.store_in(MemoryType::Register);
    shared.store_in(MemoryType::GPUShared);
  }
  Stage update = sum.update();
  update.split(ow, at, av, VW).split(m, amt, amv, TM);
  const Var z = S > 1 ? u : amt;  // the threads in z: the split_c thread, else the channel thread
  if (stage_w)
    update.reorder(amv, av, rkw, rkh, kci, at, oh, z, kc);
  else if (S > 1)
    update.reorder(amv, av, rkw, rkh, kr, at, oh, z);
  else
    update.reorder(amv, av, rkw, rkh, rc, at, oh, z);
  update.gpu_threads(at, oh, z).unroll(amv).unroll(av).unroll(rkw);
  if (stage_w) {
    // The block's channels x (tile_k input channels x every tap) of dequantized weight, computed by all
    // its threads together (the taps and channels of input spread over x and y, the output channels over
    // z), stored with a thread's thread_m channels adjacent for one wide read.
    Var wkw = w.args()[0], wkh = w.args()[1], wc = w.args()[2], wm = w.args()[3];
    Var wt("wt"), wf("wf"), wfo("wfo"), wfi("wfi"), wfy("wfy"), wfx("wfx"), wmo("wmo"), wmi("wmi");
    const int X = TW / VW, Y = TH;
    w.compute_at(sum, kc)
        .store_in(MemoryType::GPUShared)
        .bound_extent(wm, channels)
        .reorder_storage(wm, wkw, wkh, wc)
        .fuse(wkw, wkh, wt)
        .fuse(wt, wc, wf)
        .split(wf, wfo, wfi, X * Y, TailStrategy::GuardWithIf)
        .split(wfi, wfy, wfx, X)
        .split(wm, wmo, wmi, TM)
        .reorder(wmi, wfx, wfy, wmo, wfo)
        .gpu_threads(wfx, wfy, wmo)
        .unroll(wmi);
  }
  return dsl::ok_status();
}

dsl::KernelTraffic gpu_conv_traffic(const QConvWorkload& w, const Schedule& s) {
  // Every channel tile reads its group's input once (neighbouring taps and channels from cache); every
  // pixel tile reads the weight. Unstaged, each thread dequantizes its channels' taps once for its
  // thread_ow columns; staged, each block dequantizes its weight tile once into workgroup memory, where
  // each thread reads a weight per channel and tap. A multiply-add per tap and output.
  const int64_t TW = s.get_int("tile_ow"), TH = s.get_int("tile_oh"), TM = s.get_int("thread_m");
  const int64_t MT = s.get_int("threads_m", 1);
  const bool stage_w = s.get_string("shared_stage", "none") == "w";
  const double VW = double(s.get_int("thread_ow"));
  const double taps = double(w.Cg() * w.KH * w.KW);
  const double outputs = double(w.N * w.M * w.OH * w.OW);
  const double pixel_tiles = double((w.OW + TW - 1) / TW * ((w.OH + TH - 1) / TH));
  const double channel_tiles = double((w.M + TM * MT - 1) / (TM * MT));
  const double weight_bytes = double(w.M) * taps / 2;
  // The input once from memory, and the rest of what the channel tiles read again; the weight likewise.
  const double input_reads = channel_tiles * double(w.N * w.Cg() * w.H * w.W) * 4;
  const double input_bytes = std::min(input_reads, double(w.N * w.C * w.H * w.W) * 4);
  const double weight_reads = double(w.N) * pixel_tiles;
  dsl::KernelTraffic t;
  t.global_bytes = input_bytes + weight_bytes + outputs * 4 + (w.has_bias ? double(w.M) * 4 : 0);
  t.rereads = {{input_reads - input_bytes, input_bytes}, {(weight_reads - 1) * weight_bytes, weight_bytes}};
  // Every thread loads its own inputs: per input channel and kernel row, the columns its thread_ow outputs'
  // taps read (a column that two unrolled taps share is one load); and, unstaged, its channels' weights of
  // every tap. Past the reads counted above, the vector cache serves them again.
  const double threads = outputs / (VW * double(TM));
  std::set<int64_t> columns;
  for (int64_t v = 0; v < int64_t(VW); ++v)
    for (int64_t k = 0; k < w.KW; ++k) columns.insert(v * w.SW + k * w.DW);
  const double input_loads = threads * double(w.Cg() * w.KH) * double(columns.size()) * 4;
  t.repeated_loads = std::max(0.0, input_loads - input_reads);
  if (!stage_w) t.repeated_loads += std::max(0.0, threads * double(TM) * taps / 2 - weight_reads * weight_bytes);
  const double dequantized = stage_w ? double(w.N) * pixel_tiles * double(w.M) * taps : outputs * taps / VW;
  t.valu_ops = outputs * taps + dequantized * 4;
  if (stage_w) t.lds_bytes = dequantized * 4 + outputs * taps / VW * 4;
  t.blocks = int64_t(pixel_tiles * channel_tiles);
  t.threads_per_block = TW / int64_t(VW) * TH * MT;
  // split_c: as many times the threads, and each output's split_c partial sums through LDS and added.
  if (const int64_t S = s.get_int("split_c", 1); S > 1) {
    t.threads_per_block *= S;
    t.lds_bytes += outputs * double(S) * 4 * 2;
    t.valu_ops += outputs * double(S);
  }
  // Columns past the map idle lanes of every row's waves; rows and channels past it, whole waves.
  t.lanes_busy = double(w.OW) / (double((w.OW + TW - 1) / TW) * double(TW));
  t.busy = double(w.OH) / (double((w.OH + TH - 1) / TH) * double(TH)) * double(w.M) / (channel_tiles * double(TM * MT));
  return t;
}

}  // namespace tetra::schedules
