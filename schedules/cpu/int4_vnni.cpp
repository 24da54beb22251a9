#include "schedules/cpu/int4_vnni.h"

#include <algorithm>

#include "schedules/cpu/common.h"

namespace tetra::schedules {

using namespace Halide;
using dsl::Failure;
using dsl::FailureKind;
using dsl::KnobSpace;

static const char* kName = "cpu_int4_vnni";
static const int kLanes = 16;  // int32 lanes of one 512-bit vpdpbusd

KnobSpace cpu_int4_vnni_space(const QMatMulWorkload& w, const TargetSpec& target) {
  std::vector<int64_t> tile_m;
  for (int64_t t : {1, 2, 4, 6, 8})
    if (t == 1 || t / 2 < w.M) tile_m.push_back(t);
  std::vector<int64_t> unroll;
  for (int64_t u : {1, 2, 4})
    if ((w.activation_block() / 8) % u == 0) unroll.push_back(u);
  KnobSpace s;
  s.template_name = kName;
  s.family = dsl::TargetFamily::Cpu;
  s.knobs = {
      {"tile_n", dsl::int_values(panel_widths(w.N, {16, 32, 64, 128}))},
      {"tile_m", dsl::int_values(tile_m)},
      {"unroll_k", dsl::int_values(unroll)},
      {"parallel", dsl::string_values({"n", "m"})},
      // Fixed by the workload (the k-block A is quantized in); recorded so the layout follows from
      // the schedule alone.
      {"block", dsl::int_values({w.activation_block()})},
  };
  return s;
}

Schedule cpu_int4_vnni_default(const QMatMulWorkload& w, const TargetSpec& target) {
  // Wide panels, not unrolled, for one row (the weight stream); a 4 x 32 register tile for many rows.
  // 1x8192x16384 b32, tuner runs (weights from DRAM, 2 threads, Zen 4 VM): 128 columns with unroll_k 1
  // 1.61 ms, 64 with unroll_k 4 (the first default) 2.57 ms; 1x4096x4096: 0.36 against 0.40 ms.
  bool gemv = w.M <= 2;
  int64_t tile_n = gemv ? largest_panel(w.N, {128, 64, 32, 16}, kLanes) : largest_panel(w.N, {32, 16}, kLanes);
  int64_t tile_m = gemv ? w.M : 4;
  int64_t panels = (w.N + tile_n - 1) / tile_n;
  Schedule s;
  s.template_name = kName;
  s.knobs = {{"tile_n", tile_n},
             {"tile_m", tile_m},
             {"unroll_k", gemv ? int64_t(1) : std::min<int64_t>(4, w.activation_block() / 8)},
             {"parallel", std::string(panels >= 4 || w.M <= tile_m ? "n" : "m")},
             {"block", w.activation_block()}};
  return s;
}

Status cpu_int4_vnni_check(const QMatMulWorkload& w, const Schedule& s, const TargetSpec& target) {
  if (s.get_int("tile_n") % kLanes != 0)
    return Failure{FailureKind::KnobConflict, "tile_n", "must be a multiple of " + std::to_string(kLanes)};
  if ((s.get_int("block") / 8) % s.get_int("unroll_k") != 0)
    return Failure{FailureKind::KnobConflict, "unroll_k", "must divide the block's 8-k rows"};
  return dsl::ok_status();
}

dsl::Int4Layout cpu_int4_vnni_layout(const Schedule& s) {
  return {int(s.get_int("tile_n")), int(s.get_int("block")), /*vnni=*/true};
}

Status apply_cpu_int4_vnni(QMatMulDef& q, const Schedule& s, const TargetSpec& target) {
  const int P = int(s.get_int("tile_n")), TM = int(s.get_int("tile_m")), U = int(s.get_int("unroll_k"));
  const bool parallel_m = s.get_string("parallel") == "m";
  const dsl::ComputeDef& d = q.def;
  Func out = d.output, acc = d.stage("acc"), dot = d.stage("dot");
  Var n = d.var("n"), m = d.var("m"), j = d.var("j"), p = d.var("p"), k = d.var("k"), g = d.var("g");
  RVar blocks = d.reduce("k").rvar();
  const RDom& r = d.reduce("r").dom;

  // Quantizing A: once per call for all rows, a row per task.
  Func a_max = d.stage("a_max"), a_q = d.stage("a_q"), a_sum = d.stage("a_sum"), a_pairs = d.stage("a_pairs");
  Var b = d.var("b"), h = d.var("h"), kq = d.var("kq");
  // The block maxima as vector reductions over the block: a scalar loop of selects took as long as the
  // GEMM itself at 640 rows. (The int8 sums stay scalar: as vector reductions they took twice as long.)
  a_max.compute_root().parallel(m);
  a_max.update().atomic().vectorize(d.reduce("in_block").rvar(), kLanes).parallel(m);
  a_q.compute_root().vectorize(k, kLanes).parallel(m);
  a_sum.compute_root().parallel(m);
  a_sum.update().parallel(m);
  a_pairs.compute_root().reorder(b, h, kq, m).vectorize(b).unroll(h).parallel(m);

  // Panels of P columns and tiles of TM rows; the last of each is guarded.
  Var no("no"), ni("ni"), mo("mo"), mi("mi");
  out.split(n, no, ni, P, TailStrategy::GuardWithIf).split(m, mo, mi, TM, TailStrategy::GuardWithIf);
  out.vectorize(ni, kLanes);
  if (parallel_m) out.reorder(ni, mi, no, mo).parallel(mo);
  else out.reorder(ni, mi, mo, no).parallel(no);

  // The tile's float accumulators, then per block its int32 dot products in registers.
  acc.compute_at(out, parallel_m ? no : mo).bound_extent(j, P).bound_extent(p, 1).bound_extent(m, TM);
  acc.vectorize(j, kLanes).unroll(j).unroll(m);
  acc.update().reorder(j, m, blocks, p).vectorize(j, kLanes).unroll(j).unroll(m);
  dot.compute_at(acc, blocks).vectorize(j, kLanes).unroll(j).unroll(m);
  // b (4 k of one 32-bit lane) innermost and vectorized with j: the 4-way dot products.
  RVar kqo("kqo"), kqi("kqi");
  dot.update()
      .split(r.z, kqo, kqi, U)
      .reorder(r.x, j, m, r.y, kqi, kqo, g, p)
      .atomic()
      .vectorize(r.x)
      .vectorize(j, kLanes)
      .unroll(j)
      .unroll(m)
      .unroll(r.y)
      .unroll(kqi);
  return dsl::ok_status();
}

}  // namespace tetra::schedules
