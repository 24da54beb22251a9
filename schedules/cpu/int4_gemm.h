// int4 GEMM on CPUs: many rows of A, compute bound (2*M*N*K flops against K*N/2 weight bytes).
//
// Loop nest, w_stage = panel:
//   parallel for panel p                           (tile_n columns)
//     w[j, k] = dequant(W[k, p*P + j]) for all k   (fp32 stage, P*K*4 bytes, reused by every row tile)
//     for row tile mo (tile_m rows):
//       acc[mi, j] = 0                             (tile_m * tile_n / vector_width registers)
//       for k, unroll_k at a time: for mi (unrolled): for j (vectors, unrolled):
//         acc[mi, j] += A[m, k] * w[j, k]
//       Y[m, p*P + j] = epilogue(acc)
// w_stage = kblock stages w tile_k rows at a time and keeps acc for all rows of the panel in memory
// across the blocks (less cache for w, more accumulator traffic). parallel = m spreads the row tiles
// of each panel over threads instead of the panels.
#pragma once
#include "schedules/qmatmul_templates.h"

namespace tetra::schedules {

dsl::KnobSpace cpu_int4_gemm_space(const QMatMulWorkload& workload, const TargetSpec& target);
Schedule cpu_int4_gemm_default(const QMatMulWorkload& workload, const TargetSpec& target);
Status cpu_int4_gemm_check(const QMatMulWorkload& workload, const Schedule& schedule, const TargetSpec& target);
dsl::Int4Layout cpu_int4_gemm_layout(const Schedule& schedule);
Status apply_cpu_int4_gemm(QMatMulDef& q, const Schedule& schedule, const TargetSpec& target);

}  // namespace tetra::schedules
