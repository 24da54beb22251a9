// int4 GEMV on CPUs: few rows of A, memory bound (the weight's K*N/2 bytes are read once per call).
//
// Loop nest, split_k = 1:
//   parallel for panel p                           (tile_n columns: one contiguous weight stream)
//     for m in rows:                               (later rows re-read the panel from cache)
//       for k, unroll_k at a time:                 (unrolled; a packed byte holds a pair of k)
//         for j in panel, vector_width lanes:      acc[j] += A[m, k] * dequant(W[k, p*P + j])
//     Y[m, p*P + j] = epilogue(acc)                (acc: tile_n / vector_width registers)
// split_k = S > 1 (rfactor): the reduction is cut into S parts that threads compute in parallel
// for all panels, then summed per panel: for short, wide weights with few panels per thread.
#pragma once
#include "schedules/qmatmul_templates.h"

namespace tetra::schedules {

dsl::KnobSpace cpu_int4_gemv_space(const QMatMulWorkload& workload, const TargetSpec& target);
Schedule cpu_int4_gemv_default(const QMatMulWorkload& workload, const TargetSpec& target);
Status cpu_int4_gemv_check(const QMatMulWorkload& workload, const Schedule& schedule, const TargetSpec& target);
dsl::Int4Layout cpu_int4_gemv_layout(const Schedule& schedule);
Status apply_cpu_int4_gemv(QMatMulDef& q, const Schedule& schedule, const TargetSpec& target);

}  // namespace tetra::schedules
