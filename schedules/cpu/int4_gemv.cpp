#include "schedules/cpu/int4_gemv.h"

#include <algorithm>

#include "schedules/cpu/common.h"

namespace tetra::schedules {

using namespace Halide;
using dsl::Failure;
using dsl::FailureKind;
using dsl::KnobSpace;

static const char* kName = "cpu_int4_gemv";

KnobSpace cpu_int4_gemv_space(const QMatMulWorkload& w, const TargetSpec& target) {
  KnobSpace s;
  s.template_name = kName;
  s.family = dsl::TargetFamily::Cpu;
  s.knobs = {
      {"tile_n", dsl::int_values(panel_widths(w.N, {8, 16, 32, 64, 128, 256}))},
      {"vector_width", dsl::int_values(vector_widths(target))},
      {"unroll_k", dsl::int_values({1, 2, 4, 8, 16})},
      {"split_k", dsl::int_values(w.K >= 256 ? std::vector<int64_t>{1, 2, 4} : std::vector<int64_t>{1})},
      {"parallel", dsl::string_values({"n", "none"})},
      // The k-block size: sum each block's a * (q - zp), then multiply its scale once (dsl/qmatmul.h);
      // 0: per weight. Absent from schedules stored before it existed (then 0).
      {"block_sums",
       dsl::int_values(dsl::block_sums_apply(w) ? std::vector<int64_t>{0, w.format.k_group} : std::vector<int64_t>{0}),
       int64_t(0)},
      // With block sums: q - zp per weight, or an unsigned code per weight and the zero point once per
      // block (dsl/qmatmul.h). Absent from older schedules (then per_weight).
      {"zero_point", dsl::string_values({"per_weight", "per_block"}), std::string("per_weight")},
  };
  return s;
}

Schedule cpu_int4_gemv_default(const QMatMulWorkload& w, const TargetSpec& target) {
  int lanes = std::max(4, target.natural_lanes());
  // Wide panels: 256 columns keep 16 accumulators busy and stream 128 bytes per k pair. Measured on
  // the 2-core host (x86-64-avx512-fp16, 2 threads, cold weights), 1x8192x16384 int4 b32:
  //   tile_n 64: 12.4 ms, 128: 5.2 ms, 256: 4.7 ms (unroll_k 8); 1x4096x4096: 256/8 0.65 ms, 128/4 0.79 ms.
  int64_t tile_n = largest_panel(w.N, {256, 128, 64, 32, 16}, lanes);
  int64_t panels = (w.N + tile_n - 1) / tile_n;
  // Too few panels for the threads: split the reduction instead.
  int64_t split_k = panels >= 4 ? 1 : (w.K >= 256 ? 2 : 1);
  Schedule s;
  s.template_name = kName;
  s.knobs = {{"tile_n", tile_n},
             {"vector_width", int64_t(lanes)},
             {"unroll_k", int64_t(8)},
             {"split_k", split_k},
             {"parallel", std::string("n")}};
  // One scale multiply per block instead of per weight: 1x8192x16384 b32 went from 5.5 to 3.0-3.6 ms
  // (2 threads, weights streamed from DRAM; `tetra tune-worker` on the bench model, Zen 4 VM).
  s.knobs["block_sums"] = split_k == 1 && dsl::block_sums_apply(w) ? w.format.k_group : 0;
  // And the zero point once per block, not per weight: 1x4096x4096 uint4 b32 with zero points, weights
  // cache-resident, 0.26-0.27 ms against 0.34-0.40 (tetra_bench_kernels --case gemv --zero-points --hot,
  // 2 threads, Zen 4 VM).
  s.knobs["zero_point"] = std::string(s.get_int("block_sums") > 0 ? "per_block" : "per_weight");
  return s;
}

Status cpu_int4_gemv_check(const QMatMulWorkload& w, const Schedule& s, const TargetSpec& target) {
  if (s.get_int("block_sums", 0) > 0 && s.get_int("split_k") != 1)
    return Failure{FailureKind::KnobConflict, "block_sums", "block sums are scheduled without split_k"};
  if (s.get_int("block_sums", 0) == 0 && s.get_string("zero_point", "per_weight") != "per_weight")
    return Failure{FailureKind::KnobConflict, "zero_point", "per_block needs block sums"};
  return check_tile_vector(s);
}

// Block sums read whole k-blocks: the packed rows are padded to one.
dsl::Int4Layout cpu_int4_gemv_layout(const Schedule& s) {
  return {int(s.get_int("tile_n")), int(std::max<int64_t>(2, s.get_int("block_sums", 0)))};
}

Status apply_cpu_int4_gemv(QMatMulDef& q, const Schedule& s, const TargetSpec& target) {
  const int P = int(s.get_int("tile_n")), V = int(s.get_int("vector_width"));
  const int U = int(s.get_int("unroll_k")), S = int(s.get_int("split_k"));
  const bool parallel = s.get_string("parallel") == "n";
  const dsl::ComputeDef& d = q.def;
  Func out = d.output, acc = d.stage("acc");
  Var n = d.var("n"), m = d.var("m"), j = d.var("j"), p = d.var("p");
  RVar k = d.reduce("k").rvar();

  // One panel of outputs per task; the last panel is guarded, so N needs no padding.
  Var no("no"), ni("ni");
  out.split(n, no, ni, P, TailStrategy::GuardWithIf).vectorize(ni, V).reorder(ni, m, no);
  if (parallel) out.parallel(no);

  // Constant extents (one panel of P columns) let LLVM keep the accumulators in registers.
  acc.compute_at(out, no).bound_extent(j, P).bound_extent(p, 1).vectorize(j, V);
  RVar ko("ko"), ki("ki");
  if (s.get_int("block_sums", 0) > 0) {
    // Per k-block: the panel's P partial sums in registers over the block's rows, then one
    // multiply-add by the block's scales into the panel's accumulators.
    Func partial = d.stage("partial");
    RVar r = d.reduce("r").rvar();
    if (d.stages.count("a_sum")) {
      // Each row's block sums of A: once per call, shared by every panel.
      Func a_sum = d.stage("a_sum");
      a_sum.compute_root();
    }
    acc.update().reorder(j, k, m, p).vectorize(j, V).unroll(j);
    partial.compute_at(acc, k).vectorize(j, V).unroll(j);
    partial.update().split(r, ko, ki, U, TailStrategy::GuardWithIf).reorder(j, ki, ko).vectorize(j, V).unroll(j).unroll(ki);
    return dsl::ok_status();
  }
  if (S == 1) {
    // Rows outermost: a row's accumulators stay in registers for the whole reduction.
    acc.update()
        .split(k, ko, ki, U, TailStrategy::GuardWithIf)
        .reorder(j, ki, ko, m, p)
        .vectorize(j, V)
        .unroll(j)
        .unroll(ki);
    return dsl::ok_status();
  }

  // split_k: part(j, p, m, u) sums the u-th of S even-length chunks of k, for every panel at once.
  Expr K = d.extent("K");
  Expr chunk = ((K + 2 * S - 1) / (2 * S)) * 2;
  Var u("u");
  RVar kio("kio"), kii("kii");
  acc.update().split(k, ko, ki, chunk, TailStrategy::GuardWithIf);
  Func part = acc.update().rfactor(ko, u);
  part.compute_root().vectorize(j, V);
  part.update()
      .split(ki, kio, kii, U, TailStrategy::GuardWithIf)
      .reorder(j, kii, kio, m, p, u)
      .vectorize(j, V)
      .unroll(j)
      .unroll(kii)
      .parallel(u);
  acc.update().vectorize(j, V);
  return dsl::ok_status();
}

}  // namespace tetra::schedules
