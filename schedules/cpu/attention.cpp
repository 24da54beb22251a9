#include "schedules/cpu/attention.h"

#include <algorithm>

namespace tetra::schedules {

dsl::Result<dsl::ScheduledPipeline> attention_pipeline(const dsl::TargetSpec& target) {
  using namespace Halide;
  const int V = target.halide.natural_vector_size<float>();
  ImageParam A(Float(32), 3, "A"), B(Float(32), 3, "B"), Vals(Float(32), 3, "V");
  Param<float> scale("scale");
  Var n("n"), m("m"), b("b"), d("d"), l("l");
  Expr N = B.dim(0).extent(), K = A.dim(0).extent(), M = A.dim(1).extent(), D = Vals.dim(0).extent();
  RDom k(0, K, "k"), rn(0, N, "rn"), rj(0, (N + V - 1) / V, "rj");

  // Algorithm. Register tiles cover whole tiles past M, N and D at the edges (the stores there are
  // guarded): the operands repeat their last row or column, so those reads stay in bounds; scores
  // past N are duplicates (harmless to the max) and their exps are 0.
  // B is staged dense per call: its view may have any strides (a K read in place from a packed QKV
  // projection walks the tokens with a stride of the projection's row).
  Func b_dense("b_dense");
  b_dense(n, d, b) = B(n, d, b);  // d: any pure Var for the k dim (k is the reduction)
  Func a = BoundaryConditions::repeat_edge(A, {Range(), Range(0, M), Range()});
  Func bt = BoundaryConditions::repeat_edge(b_dense, {Range(0, N), Range(), Range()});
  Func v = BoundaryConditions::repeat_edge(Vals, {Range(0, D), Range(), Range()});
  Func score_tile("score_tile"), scores("scores"), top_lanes("top_lanes"), top("top"), e("e");
  Func sum_lanes("sum_lanes"), sum("sum"), weighted("weighted"), O("attention");
  score_tile(n, m, b) = 0.0f;
  score_tile(n, m, b) += a(k, m, b) * bt(n, k, b);
  scores(n, m, b) = score_tile(n, m, b) * scale;
  // Row max and row sum as V lanes each, then across the lanes: no loop-carried chain per element.
  top_lanes(l, m, b) = -INFINITY;
  top_lanes(l, m, b) = max(top_lanes(l, m, b), scores(rj * V + l, m, b));
  Expr t = top_lanes(0, m, b);
  for (int i = 1; i < V; ++i) t = max(t, top_lanes(i, m, b));
  top(m, b) = t;
  e(n, m, b) = select(n < N, exp(scores(n, m, b) - top(m, b)), 0.0f);
  sum_lanes(l, m, b) = 0.0f;
  sum_lanes(l, m, b) += e(rj * V + l, m, b);
  Expr s = sum_lanes(0, m, b);
  for (int i = 1; i < V; ++i) s = s + sum_lanes(i, m, b);
  sum(m, b) = s;
  weighted(d, m, b) = 0.0f;
  weighted(d, m, b) += e(rn, m, b) * v(d, rn, b);
  O(d, m, b) = weighted(d, m, b) / sum(m, b);

  // Schedule: tasks of R rows of one batch index (8 with AVX-512). Their scores are 2-vector x R-row
  // register tiles over k, then exps, sums and the weighted sum of V as 2-vector x R-row tiles over n
  // (2R registers accumulate). In the exported recognizer (4 heads of 640 tokens x 32, `tetra bench
  // --json`, Zen 4 VM, 2 threads): 0.88 ms a block, against 2.03 ms for the two MatMuls and the
  // softmax as separate kernels (docs/benchmarks.md). With AVX2's 16 registers, 8 rows spill: 3.1 ms a
  // block against 2.0 for 6 rows (an AVX2-only EPYC VM).
  const int R = std::min(8, (target.vector_registers() - 4) / 2);
  Var mo("mo"), mi("mi"), task("task"), no("no"), ni("ni"), dO("dO"), di("di");
  O.split(m, mo, mi, R, TailStrategy::GuardWithIf)
      .fuse(mo, b, task)
      .parallel(task)
      .split(d, dO, di, 2 * V, TailStrategy::GuardWithIf)
      .reorder(di, mi, dO, task)
      .vectorize(di, V)
      .unroll(mi);
  scores.compute_at(O, task)
      .bound_extent(m, R)
      .split(n, no, ni, 2 * V, TailStrategy::RoundUp)
      .reorder(ni, m, no)
      .vectorize(ni, V)
      .unroll(m);
  score_tile.compute_at(scores, no).bound_extent(n, 2 * V).bound_extent(m, R).vectorize(n, V).unroll(n).unroll(m);
  score_tile.update().reorder(n, m, k).vectorize(n, V).unroll(n).unroll(m);
  top_lanes.compute_at(O, task).vectorize(l).unroll(m);
  top_lanes.update().reorder(l, m, rj).vectorize(l).unroll(m);
  top.compute_at(O, task);
  e.compute_at(O, task).bound_extent(m, R).vectorize(n, V, TailStrategy::RoundUp).unroll(m);
  sum_lanes.compute_at(O, task).vectorize(l).unroll(m);
  sum_lanes.update().reorder(l, m, rj).vectorize(l).unroll(m);
  sum.compute_at(O, task);
  weighted.compute_at(O, dO).bound_extent(d, 2 * V).bound_extent(m, R).vectorize(d, V).unroll(d).unroll(m);
  weighted.update().reorder(d, m, rn).vectorize(d, V).unroll(d).unroll(m);
  // A dense B is copied by vectors, a strided one by gathers: the recognizer's K (4 heads x 640 x 32
  // read in place) takes 1.3-1.6% of that model's time in a profile (perf, Zen 4 VM).
  b_dense.compute_root().parallel(b).vectorize(n, V, TailStrategy::GuardWithIf);
  b_dense.specialize(B.dim(0).stride() == 1);

  // A, V and the result have dense rows (Halide's default stride-1 innermost dim), B any strides;
  // every buffer starts at 0.
  B.dim(0).set_stride(Expr());
  for (ImageParam* p : {&A, &B, &Vals})
    for (int dim = 0; dim < 3; ++dim) p->dim(dim).set_min(0);
  B.dim(1).set_extent(K);
  Vals.dim(1).set_extent(N);
  for (int dim = 0; dim < 3; ++dim) O.output_buffer().dim(dim).set_min(0);
  return dsl::ScheduledPipeline{Pipeline(O), {A, B, Vals, scale}};
}

}  // namespace tetra::schedules
