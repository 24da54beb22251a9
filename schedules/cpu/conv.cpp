#include "schedules/cpu/conv.h"

#include <algorithm>

#include "dsl/core/kernel_spec.h"
#include "dsl/object_cache.h"
#include "schedules/cpu/common.h"

namespace tetra::schedules {

using namespace Halide;
using dsl::Failure;
using dsl::FailureKind;
using dsl::KnobSpace;

static const char* kDepthwise = "cpu_int4_depthwise_conv";
static const char* kGrouped = "cpu_int4_grouped_conv";
static const char* kDense = "cpu_int4_dense_conv";

static const char* template_name_for(const QConvWorkload& w) {
  return w.depthwise() ? kDepthwise : w.group == 1 ? kDense : kGrouped;
}

const std::vector<QConvTemplate>& cpu_qconv_templates() {
  static const std::vector<QConvTemplate> templates = {
      {kDepthwise, dsl::TargetFamily::Cpu, cpu_conv_space, cpu_conv_default, cpu_conv_check, apply_cpu_conv},
      {kGrouped, dsl::TargetFamily::Cpu, cpu_conv_space, cpu_conv_default, cpu_conv_check, apply_cpu_conv},
      {kDense, dsl::TargetFamily::Cpu, cpu_conv_space, cpu_conv_default, cpu_conv_check, apply_cpu_conv},
  };
  return templates;
}

const char* cpu_qconv_template_for(const QConvWorkload& w) { return template_name_for(w); }

KnobSpace cpu_conv_space(const QConvWorkload& w, const TargetSpec& target) {
  KnobSpace s;
  s.template_name = template_name_for(w);
  s.family = dsl::TargetFamily::Cpu;
  std::vector<int64_t> rows = {1, 2, 4};
  if (w.OH > 4) rows.push_back(8);
  s.knobs = {
      {"vector_width", dsl::int_values(vector_widths(target))},
      {"tile_ow", dsl::int_values(panel_widths(w.OW, {8, 16, 32, 64}))},
      {"tile_oh", dsl::int_values(rows)},
      {"parallel", dsl::string_values({"m", "oh", "none"})},
      {"w_stage", dsl::string_values({"inline", "channel"})},
      {"x_stage", dsl::string_values({"inline", "plane", "tile", "root"})},
  };
  // Dense convs compute tile_m output channels at once, so every input vector feeds tile_m FMAs.
  if (w.group == 1) s.knobs.push_back({"tile_m", dsl::int_values({1, 2, 4, 8})});
  return s;
}

Schedule cpu_conv_default(const QConvWorkload& w, const TargetSpec& target) {
  // 256-bit vectors even with AVX-512, and about 16 accumulators: one row of up to 64 columns
  // (the smallest power of two covering OW), rows stacked for the rest. The input planes are staged
  // with their zero padding, so the inner loop has no border tests (inline borders gather: 7x slower
  // at 56x56). Measured on the 2-core host (x86-64-avx512-fp16, 1 thread), depthwise 3x3 s1 p1
  // 1x64x56x56 int4 per channel, plane staging: vector 8, 2x64 tile 0.146 ms (0.080 ms on 2 threads);
  // 4x32 0.160 ms; vector 16, 4x32 0.198 ms, and with x_stage inline 1.17 ms (tetra_halide_tests
  // "[.bench]"; this shared machine has slow phases, so compare within one run).
  int64_t lanes = std::min<int64_t>(8, std::max(4, target.natural_lanes()));
  int64_t tile_ow = 8;
  while (tile_ow < w.OW && tile_ow < 64) tile_ow *= 2;
  int64_t tile_oh = std::clamp<int64_t>(16 * lanes / tile_ow, 1, w.OH > 4 ? 8 : 4);
  // Enough (n, m) planes for every thread: one plane per task; else split the rows.
  bool planes = w.N * w.M >= 8;
  Schedule s;
  s.template_name = template_name_for(w);
  if (w.group == 1) {
    // Half the vector registers accumulate (16 with AVX-512, 8 with AVX2): tile_m = 4 channels x 4 (2)
    // vectors of output pixels, along a row when OW allows; the padded input staged once for all
    // channels (per-task planes would stage every channel again for each task). Measured on the Zen 4
    // VM, 2 threads, 3x3 64->64 56x56 int4 per channel: 64x1 tiles 0.90 ms, 16x4 0.89, 32x2 1.05;
    // tile_m 8 (32 accumulators) 1.09-1.36; tile_m 1 2.2-2.7; im2col + GEMM, the path before this
    // template, 2.2-2.8 in the same minutes. On an AVX2-only EPYC VM (the recognizer's 3x3 64->128
    // conv, 80 columns, 2 threads), 4 channels x 8-wide vectors: 2 vectors (8 accumulators) 1.35-1.47
    // ms, 1 vector 1.42, 4 vectors 1.70, 8 vectors (the AVX-512 tile, 16-wide) 2.50.
    const int64_t tile_m = 4;
    int64_t v = w.OW >= 16 && target.natural_lanes() >= 16 ? 16 : 8;
    int64_t registers_per_vector = std::max<int64_t>(1, v / target.natural_lanes());     // 2 for 8 lanes of NEON
    int64_t pixels = target.vector_registers() / 2 / tile_m / registers_per_vector * v;  // per channel
    // The tile shape that computes the fewest outputs past the edges (guarded, but each tile still runs
    // its whole register block), the widest among equals. On the Zen 4 VM, the recognizer's 3x3
    // 64->128 conv at 8x80 outputs: 64x1 tiles (80 columns as 64 + 64) 0.71-0.79 ms, 32x2 0.60-0.66,
    // 16x4 0.52-0.59 (interleaved whole-model runs, per-kernel minimum and median).
    const int64_t rows_cap = w.OH > 4 ? 8 : 4;
    int64_t tile = v, tile_rows = 1, computed = INT64_MAX;
    for (int64_t tw = v; tw <= pixels && tw < 2 * std::max<int64_t>(w.OW, v); tw *= 2) {
      const int64_t th = std::min(pixels / tw, rows_cap);
      const int64_t c = (w.OW + tw - 1) / tw * tw * ((w.OH + th - 1) / th * th);
      if (c <= computed) computed = c, tile = tw, tile_rows = th;
    }
    s.knobs = {{"vector_width", v},
               {"tile_ow", tile},
               {"tile_oh", tile_rows},
               {"tile_m", tile_m},
               {"parallel", std::string(w.N * w.M >= 16 ? "m" : "oh")},
               {"w_stage", std::string("channel")},
               {"x_stage", std::string("root")}};
    return s;
  }
  s.knobs = {{"vector_width", lanes},
             {"tile_ow", tile_ow},
             {"tile_oh", tile_oh},
             {"parallel", std::string(planes ? "m" : "oh")},
             {"w_stage", std::string("channel")},
             {"x_stage", std::string("plane")}};
  return s;
}

Status cpu_conv_check(const QConvWorkload& w, const Schedule& s, const TargetSpec& target) {
  int64_t tile = s.get_int("tile_ow"), v = s.get_int("vector_width");
  if (tile % v != 0)
    return Failure{FailureKind::KnobConflict, "tile_ow",
                   std::to_string(tile) + " is not a multiple of vector_width " + std::to_string(v)};
  return dsl::ok_status();
}

Status apply_cpu_conv(QConvDef& q, const Schedule& s, const TargetSpec& target) {
  const int V = int(s.get_int("vector_width")), TW = int(s.get_int("tile_ow")), TH = int(s.get_int("tile_oh"));
  const std::string& parallel = s.get_string("parallel");
  const std::string& w_stage = s.get_string("w_stage");
  const std::string& x_stage = s.get_string("x_stage");
  const int MT = int(s.get_int("tile_m", 1));
  const dsl::ComputeDef& d = q.def;
  Func out = d.output, acc = d.stage("acc"), w = d.stage("w"), x = d.stage("x");
  Var ow = d.var("ow"), oh = d.var("oh"), m = d.var("m"), n = d.var("n"), xv = d.var("x");
  RVar rkw = q.taps.x, rkh = q.taps.y, rc = q.taps.z;

  // Output tiles; the last ones in each direction are guarded, so any OH and OW work.
  Var owo("owo"), owi("owi"), oho("oho"), ohi("ohi"), mo("mo"), mi("mi"), mn("mn");
  out.split(ow, owo, owi, TW, TailStrategy::GuardWithIf)
      .split(oh, oho, ohi, TH, TailStrategy::GuardWithIf)
      .split(m, mo, mi, MT, TailStrategy::GuardWithIf)
      .reorder(owi, ohi, mi, owo, oho, mo, n)
      .fuse(mo, n, mn)
      .vectorize(owi, V);
  if (parallel == "m") out.parallel(mn);
  else if (parallel == "oh") out.parallel(oho);

  // One tile of accumulators, a constant size so that LLVM keeps it in registers; every tap adds
  // one broadcast weight times a vector of inputs to each of them.
  Var owv("owv"), owl("owl");
  acc.compute_at(out, owo).bound_extent(ow, TW).bound_extent(oh, TH).bound_extent(m, MT);
  acc.split(ow, owv, owl, V).vectorize(owl).unroll(owv).unroll(oh).unroll(m);
  acc.update()
      .split(ow, owv, owl, V)
      .reorder(owl, owv, oh, m, rkw, rkh, rc, n)
      .vectorize(owl)
      .unroll(owv)
      .unroll(oh)
      .unroll(m)
      .unroll(rkw);
  // Rows of taps stay a loop: unrolled too, a 5x5 depthwise tile was 400 FMAs in three copies (the
  // border variants), 48 KB of code per kernel, and its kernels ran 1.35x slower (the classifier's
  // depthwise convs 1.28-1.49 -> 0.84-0.89 ms, 1 thread).

  if (w_stage == "channel") w.compute_at(out, mn);  // KH*KW*Cg dequantized values per output channel (x tile_m)

  // A staged input must cover the windows of whole tiles: acc computes its last tiles in full (the
  // output only stores their valid part), but bounds inference sizes x for the valid part alone, and
  // the rest would be uninitialised memory (harmless values, but denormal garbage is 7x slower).
  const dsl::QConvWorkload& wl = q.workload;
  auto window = [](const Expr& outputs, int64_t stride, int64_t k, const Expr& dilation) {
    return (outputs - 1) * int(stride) + int(k - 1) * dilation + 1;
  };
  Expr OW = d.extent("OW"), OH = d.extent("OH");
  Expr cols = window((OW + TW - 1) / TW * TW, wl.SW, wl.KW, q.dil_w);
  // Whole planes also cover the input, which their zero-fill-then-copy definition writes in full.
  auto plane = [&](Expr extent, Expr pad, const char* input) { return max(extent, pad + d.extent(input)); };
  // The zero-fill-then-copy planes' copy: dense vectors along each input row, the last one guarded.
  auto vectorized_copy = [&]() {
    RVar rxo("rxo"), rxi("rxi");
    return x.update().split(q.interior.x, rxo, rxi, V, TailStrategy::GuardWithIf).vectorize(rxi);
  };
  // A strided conv reads x through x_phases (dsl/qconv.h), staged beside it: then acc reads x_phases,
  // x_phases sizes x, and its whole tiles read no uninitialised x. The recognizer's 3x3 64->128 conv
  // of stride 2 (8x80 outputs), AVX2-only EPYC VM, 2 threads: 0.97-1.01 ms, against 1.35 reading x
  // at every second column.
  auto phases = d.stages.find("x_phases");
  bool phased = phases != d.stages.end();
  auto stage_columns = [&](Func f) {
    if (!phased) f.bound_extent(xv, plane(cols, q.pad_left, "W"));
    return f;
  };
  if (x_stage == "plane") {
    Expr rows = window((OH + TH - 1) / TH * TH, wl.SH, wl.KH, q.dil_h);
    stage_columns(x).compute_at(out, mn).bound_extent(d.var("y"), plane(rows, q.pad_top, "H")).vectorize(xv, V);
    vectorized_copy();
    if (phased) {
      Func p = phases->second;
      p.compute_at(out, mn).vectorize(p.args()[0], V);
    }
  } else if (x_stage == "root") {
    Expr rows = window((OH + TH - 1) / TH * TH, wl.SH, wl.KH, q.dil_h);
    stage_columns(x)
        .compute_root()
        .bound_extent(d.var("y"), plane(rows, q.pad_top, "H"))
        .vectorize(xv, V)
        .parallel(d.var("ch"));
    vectorized_copy().parallel(d.var("ch"));
    if (phased) {
      Func p = phases->second;
      p.compute_root().vectorize(p.args()[0], V).parallel(d.var("ch"));
    }
  } else if (x_stage == "tile") {
    Expr rows = window(TH, wl.SH, wl.KH, q.dil_h);
    x.compute_at(out, oho).bound_extent(xv, cols).bound_extent(d.var("y"), rows).vectorize(xv, V);
  }
  return dsl::ok_status();
}

dsl::Result<dsl::ScheduledPipeline> schedule_qconv(const QConvWorkload& workload, const Schedule& schedule,
                                                   const TargetSpec& target) {
  if (Status st = check_qconv_schedule(workload, schedule, target); !st) return st.failure();
  const QConvTemplate* t = find_qconv_template(schedule.template_name);
  // Whole staged planes take their zero padding as a fill and a dense copy (dsl/qconv.h).
  const std::string& x_stage = schedule.get_string("x_stage");
  auto padding =
      x_stage == "plane" || x_stage == "root" ? dsl::InputPadding::ZeroFillThenCopy : dsl::InputPadding::Select;
  auto q = std::make_shared<QConvDef>(dsl::define_qconv(workload, padding));
  try {
    if (Status st = t->apply(*q, schedule, target); !st) return st.failure();
  } catch (const Halide::Error& e) {
    return Failure{FailureKind::Compile, schedule.to_string(), e.what()};
  }
  return dsl::ScheduledPipeline{Pipeline(q->def.output), q->params()};
}

std::string qconv_code_key(const QConvWorkload& workload, const Schedule& schedule, const TargetSpec& target) {
  return dsl::code_key(dsl::kernel_spec(workload, target.name).key() + " " + schedule.to_string(), target.halide);
}

dsl::Result<QConvKernel> compile_qconv(const QConvWorkload& workload, const Schedule& schedule,
                                       const TargetSpec& target, const std::string& cache_dir) {
  auto scheduled = schedule_qconv(workload, schedule, target);
  if (!scheduled) return scheduled.failure();
  QConvKernel k;
  k.workload_ = workload;
  k.schedule_ = schedule;
  k.target_ = target;
  k.scheduled_ = scheduled.value();
  auto built = dsl::build_kernel(cache_dir, qconv_code_key(workload, schedule, target), k.scheduled_, target.halide);
  if (!built) return built.failure();
  k.code_ = built.value().code;
  return k;
}

Status QConvKernel::run(const QConvWorkload& wl, const Buffer<float>& X, const dsl::ConvInt4Buffers& weight,
                        Buffer<float>& Y, const Buffer<float>* bias, const Buffer<float>* residual) const {
  return dsl::call_qconv(*code_, workload_, wl,
                         {X.raw_buffer(), &weight, Y.raw_buffer(), bias ? bias->raw_buffer() : nullptr,
                          residual ? residual->raw_buffer() : nullptr});
}

void QConvKernel::write_lowered_stmt(const std::string& path) const {
  Pipeline pipeline = scheduled_.pipeline;
  pipeline.compile_to_lowered_stmt(path, scheduled_.arguments(), Halide::Text, target_.halide);
}

void QConvKernel::write_assembly(const std::string& path) const {
  Pipeline pipeline = scheduled_.pipeline;
  pipeline.compile_to_assembly(path, scheduled_.arguments(), "qconv", target_.halide);
}

}  // namespace tetra::schedules
