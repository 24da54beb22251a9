#include "schedules/cpu/int4_gemm.h"

#include <algorithm>

#include "schedules/cpu/common.h"

namespace tetra::schedules {

using namespace Halide;
using dsl::Failure;
using dsl::FailureKind;
using dsl::KnobSpace;

static const char* kName = "cpu_int4_gemm";

KnobSpace cpu_int4_gemm_space(const QMatMulWorkload& w, const TargetSpec& target) {
  std::vector<int64_t> tile_m;
  for (int64_t t : {1, 2, 4, 6, 8, 12, 16})
    if (t <= 4 || t / 2 < w.M) tile_m.push_back(t);
  KnobSpace s;
  s.template_name = kName;
  s.family = dsl::TargetFamily::Cpu;
  s.knobs = {
      {"tile_n", dsl::int_values(panel_widths(w.N, {8, 16, 32, 48, 64, 96, 128}))},
      {"tile_m", dsl::int_values(tile_m)},
      {"tile_k", dsl::int_values({64, 128, 256, 512})},
      {"vector_width", dsl::int_values(vector_widths(target))},
      {"unroll_k", dsl::int_values({1, 2, 4})},
      {"w_stage", dsl::string_values({"panel", "kblock"})},
      {"a_stage", dsl::string_values({"inline", "packed"})},
      {"parallel", dsl::string_values({"n", "m"})},
  };
  return s;
}

Schedule cpu_int4_gemm_default(const QMatMulWorkload& w, const TargetSpec& target) {
  int lanes = std::max(4, target.natural_lanes());
  // A register tile of tile_m x tile_n fp32 accumulators: at most 12 rows of 2 vectors with AVX-512
  // (24 of its 32 registers), 6 rows with AVX2's 16.
  int64_t tile_n = largest_panel(w.N, {std::max<int64_t>(8, 2 * lanes), std::max<int64_t>(8, lanes)}, lanes);
  // The row tile that pads M the least (the largest on a tie): 3136 and 128 rows take 8, which ran
  // 128x4096x4096 in 14.6 ms against 16.7 ms with 12 (quiet 2-core host, 2 threads).
  int64_t tile_m = 1;
  for (int64_t t : {12, 8, 6, 4, 2}) {
    if (t > (lanes >= 16 ? 12 : 6) || t > w.M) continue;
    auto padded = [&](int64_t tm) { return (w.M + tm - 1) / tm * tm; };
    if (tile_m == 1 || padded(t) < padded(tile_m)) tile_m = t;
  }
  Schedule s;
  s.template_name = kName;
  s.knobs = {{"tile_n", tile_n},
             {"tile_m", tile_m},
             {"tile_k", int64_t(128)},  // 128 and 256 measured within 1%; 128 wastes less on short K
             {"vector_width", int64_t(lanes)},
             {"unroll_k", int64_t(2)},
             {"w_stage", std::string("panel")},
             // A read in place beat packing it on a quiet run of the 2-core host: 128x4096x4096
             // 16.4 ms inline vs 19.8 packed, 1024^3 7.8 vs 12.3, the 3x3 64->64 56x56 conv's
             // 3136x576x64 0.87 vs 3.87. "packed" stays in the space for the tuner.
             {"a_stage", std::string("inline")},
             {"parallel", std::string("n")}};
  return s;
}

Status cpu_int4_gemm_check(const QMatMulWorkload& w, const Schedule& s, const TargetSpec& target) {
  if (Status st = check_tile_vector(s); !st) return st;
  if (s.get_string("w_stage") == "kblock" && s.get_int("tile_k") % s.get_int("unroll_k") != 0)
    return Failure{FailureKind::KnobConflict, "unroll_k",
                   "must divide tile_k (" + std::to_string(s.get_int("tile_k")) + ") when w_stage is kblock"};
  return dsl::ok_status();
}

dsl::Int4Layout cpu_int4_gemm_layout(const Schedule& s) {
  // kblock stages whole blocks of tile_k rows: the packed rows are padded to a multiple of it.
  int k_align = s.get_string("w_stage") == "kblock" ? int(s.get_int("tile_k")) : 2;
  return {int(s.get_int("tile_n")), k_align};
}

Status apply_cpu_int4_gemm(QMatMulDef& q, const Schedule& s, const TargetSpec& target) {
  const int P = int(s.get_int("tile_n")), MT = int(s.get_int("tile_m")), KB = int(s.get_int("tile_k"));
  const int V = int(s.get_int("vector_width")), U = int(s.get_int("unroll_k"));
  const bool kblock = s.get_string("w_stage") == "kblock";
  const bool pack_a = s.get_string("a_stage") == "packed";
  const bool parallel_m = s.get_string("parallel") == "m";
  const dsl::ComputeDef& d = q.def;
  Func out = d.output, acc = d.stage("acc"), w = d.stage("w"), a = d.stage("a");
  Var n = d.var("n"), m = d.var("m"), j = d.var("j"), p = d.var("p"), kv = d.var("k");
  RVar k = d.reduce("k").rvar();

  // Tiles of tile_m x tile_n outputs; ragged edges are guarded, so no shape needs padding.
  Var no("no"), ni("ni"), mo("mo"), mi("mi");
  out.split(n, no, ni, P, TailStrategy::GuardWithIf)
      .split(m, mo, mi, MT, TailStrategy::GuardWithIf)
      .reorder(ni, mi, mo, no)
      .vectorize(ni, V);
  out.parallel(parallel_m ? mo : no);

  // The dequantized weight, one panel at a time: k is unrolled by 2 so that each packed byte's
  // nibble is a constant shift. Constant extents (one panel of P columns) let LLVM keep the
  // accumulator tiles below in registers.
  Var wko("wko"), wki("wki");
  w.bound_extent(j, P)
      .bound_extent(p, 1)
      .split(kv, wko, wki, 2, TailStrategy::RoundUp)
      .reorder(j, wki, wko, p)
      .vectorize(j, V)
      .unroll(j)
      .unroll(wki);

  // packed A: copied once per call, transposed, so that the tile_m rows of a register tile are
  // adjacent (one pointer for all broadcasts instead of tile_m row pointers). 128x4096x4096 on the
  // 2-core host: 34.4 ms inline, 20.0 ms packed.
  if (pack_a) {
    Var ako("ako"), aki("aki");
    a.compute_root()
        .reorder_storage(m, kv)
        .split(kv, ako, aki, 64, TailStrategy::GuardWithIf)
        .reorder(aki, m, ako)
        .parallel(ako);
  }

  RVar rko("rko"), rki("rki");
  if (!kblock) {
    // w for the whole panel; acc is one register tile, reduced over all of k.
    w.compute_at(out, no);
    acc.compute_at(out, mo).bound_extent(j, P).bound_extent(p, 1).bound_extent(m, MT);
    acc.vectorize(j, V).unroll(j).unroll(m);
    acc.update()
        .reorder(j, m, k)
        .split(k, rko, rki, U, TailStrategy::GuardWithIf)
        .vectorize(j, V)
        .unroll(j)
        .unroll(m)
        .unroll(rki);
    return dsl::ok_status();
  }

  // kblock: acc covers the whole panel column and persists across k blocks; w holds one block.
  RVar rkb("rkb"), rkr("rkr");
  Var mto("mto"), mti("mti");
  acc.compute_at(out, no).bound_extent(j, P).bound_extent(p, 1).vectorize(j, V);
  acc.update()
      .split(k, rko, rki, KB, TailStrategy::GuardWithIf)
      .split(m, mto, mti, MT, TailStrategy::RoundUp)
      .split(rki, rkb, rkr, U, TailStrategy::GuardWithIf)
      .reorder(j, mti, rkr, rkb, mto, rko)
      .vectorize(j, V)
      .unroll(j)
      .unroll(mti)
      .unroll(rkr);
  w.compute_at(acc, rko);
  return dsl::ok_status();
}

}  // namespace tetra::schedules
