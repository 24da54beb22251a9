#include "schedules/cpu_batch_matmul.h"

namespace tetra::schedules {

dsl::Result<dsl::ScheduledPipeline> batch_matmul_pipeline(const dsl::TargetSpec& target) {
  using namespace Halide;
  ImageParam A(Float(32), 3, "A"), B(Float(32), 3, "B");
  Var n("n"), m("m"), b("b"), no("no"), mo("mo"), ni("ni"), mi("mi"), tile("tile");
  RDom k(0, A.dim(0).extent(), "k");

  // Algorithm. The register tiles below cover whole tiles of n and m, past N and M at the edges (the
  // stores there are guarded): the operands repeat their last column and row, so those reads stay in
  // bounds. Halide splits the loops so that only edge tiles pay for the clamp.
  Func a = BoundaryConditions::repeat_edge(A, {Range(), Range(0, A.dim(1).extent()), Range()});
  Func bt = BoundaryConditions::repeat_edge(B, {Range(0, B.dim(0).extent()), Range(), Range()});
  Func acc("acc"), Y("batch_matmul");
  acc(n, m, b) = 0.0f;
  acc(n, m, b) += a(k, m, b) * bt(n, k, b);
  Y(n, m, b) = acc(n, m, b);

  // Schedule: register tiles of 2 vectors x 4 rows, k innermost over the tile (every A value feeds 2
  // FMAs, every B vector 4); tiles of all batches are spread over the threads. Tails are guarded, since
  // attention's head size and sequence length are often not multiples of the tile.
  const int V = target.halide.natural_vector_size<float>();
  Y.tile(n, m, no, mo, ni, mi, 2 * V, 4, TailStrategy::GuardWithIf)
      .fuse(mo, b, tile)
      .reorder(ni, mi, no, tile)
      .parallel(tile)
      .vectorize(ni, V)
      .unroll(ni)
      .unroll(mi);
  acc.compute_at(Y, no).vectorize(n, V).unroll(n).unroll(m);
  acc.update().reorder(n, m, k).vectorize(n, V).unroll(n).unroll(m);

  // Rows are dense (Halide's default stride-1 innermost dim: vector loads); the other strides are
  // free, so a broadcast batch is a stride of 0. Every buffer starts at 0.
  for (ImageParam* p : {&A, &B})
    for (int d = 0; d < 3; ++d) p->dim(d).set_min(0);
  B.dim(1).set_extent(A.dim(0).extent());
  for (int d = 0; d < 3; ++d) Y.output_buffer().dim(d).set_min(0);
  return dsl::ScheduledPipeline{Pipeline(Y), {A, B}};
}

}  // namespace tetra::schedules
