#include "schedules/cpu/batch_matmul.h"

namespace tetra::schedules {

dsl::Result<dsl::ScheduledPipeline> batch_matmul_pipeline(const dsl::TargetSpec& target) {
  using namespace Halide;
  ImageParam A(Float(32), 3, "A"), B(Float(32), 3, "B");
  Var n("n"), m("m"), b("b"), no("no"), mo("mo"), ni("ni"), mi("mi"), task("task");
  RDom k(0, A.dim(0).extent(), "k");

  // Algorithm. The register tiles below cover whole tiles of n and m, past N and M at the edges (the
  // stores there are guarded): the operands repeat their last column and row, so those reads stay in
  // bounds. Halide splits the loops so that only edge tiles pay for the clamp.
  Func a = BoundaryConditions::repeat_edge(A, {Range(), Range(0, A.dim(1).extent()), Range()});
  Func bt = BoundaryConditions::repeat_edge(B, {Range(0, B.dim(0).extent()), Range(), Range()});
  // Two register-tile shapes (below), each with its own accumulator Func: a tile's accumulators are
  // sized for the whole tile, so that they stay in registers with no per-row guard.
  auto product = [&](const std::string& name) {
    Func acc(name);
    acc(n, m, b) = 0.0f;
    acc(n, m, b) += a(k, m, b) * bt(n, k, b);
    return acc;
  };
  Func tall = product("acc_tall"), low = product("acc_low"), Y("batch_matmul");
  Expr many_rows = A.dim(1).extent() >= 8;
  Y(n, m, b) = select(many_rows, tall(n, m, b), low(n, m, b));

  // Schedule: register tiles of 2 vectors x `rows` rows, k innermost over the tile (every A value feeds
  // 2 FMAs, every B vector `rows`); tiles of all batches are spread over the threads. 14 rows keep 28 of
  // AVX-512's 32 registers accumulating (6 rows, 12 of AVX2's 16), which attention's shapes (hundreds
  // of rows) fill; a few rows (decoding one token) take 4-row tiles instead of computing mostly
  // clamped rows. Tails are guarded, since attention's head size and sequence length are often not
  // multiples of the tile.
  const int V = target.halide.natural_vector_size<float>();
  const int kTallRows = (target.vector_registers() - 4) / 2;  // 4 registers for a B row and the A value
  auto tile = [&](Stage y, Func acc, int rows) {
    y.tile(n, m, no, mo, ni, mi, 2 * V, rows, TailStrategy::GuardWithIf)
        .fuse(mo, b, task)
        .reorder(ni, mi, no, task)
        .parallel(task)
        .vectorize(ni, V)
        .unroll(ni)
        .unroll(mi);
    // The whole tile, past N and M at the edges (the operands' edges repeat there): without these
    // bounds the accumulators follow the guarded stores, and sit in memory behind a test per row
    // (the recognizer's Q·Kᵀ took 2.00 ms in the model before these bounds and the 14-row tiles,
    // 0.78 ms after; docs/benchmarks.md).
    acc.compute_at(Y, no).bound_extent(n, 2 * V).bound_extent(m, rows).vectorize(n, V).unroll(n).unroll(m);
    acc.update().reorder(n, m, k).vectorize(n, V).unroll(n).unroll(m);
  };
  tile(Y.specialize(many_rows), tall, kTallRows);
  tile(Y.specialize(!many_rows), low, 4);
  Y.specialize_fail("unreachable: the two cases above cover every row count");

  // Rows are dense (Halide's default stride-1 innermost dim: vector loads); the other strides are
  // free, so a broadcast batch is a stride of 0. Every buffer starts at 0.
  for (ImageParam* p : {&A, &B})
    for (int d = 0; d < 3; ++d) p->dim(d).set_min(0);
  B.dim(1).set_extent(A.dim(0).extent());
  for (int d = 0; d < 3; ++d) Y.output_buffer().dim(d).set_min(0);
  return dsl::ScheduledPipeline{Pipeline(Y), {A, B}};
}

}  // namespace tetra::schedules
