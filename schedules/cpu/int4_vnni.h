// int4 weights times int8-quantized activations on x86 CPUs with AVX512-VNNI (the opt-in
// int8-activation mode; the algorithm and its stages are define_qmatmul_int8 in dsl/qmatmul.h).
//
// Loop nest:
//   A quantized per row and k-block (a_max, a_q, a_sum, a_pairs: once per call, all rows)
//   parallel for panel p (tile_n columns)   [or rows, parallel = "m"]
//     for m in tiles of tile_m rows:
//       for block g:                                  (B = the activation block of k)
//         for kq in the block's 8-k rows, unroll_k at a time:
//           for h in low, high nibble; m in tile; j in panel, 16 lanes:
//             dot[m][j] += 4-way dot(codes(16 columns x 4 k), a_pairs(m, 4 k))     one vpdpbusd
//         acc[m][j] += float(dot - offset * a_sum) * a_scale * w_scale
//     Y = epilogue(acc)
// The register tile is tile_n / 16 x tile_m int32 vectors; one code vector serves the tile's rows.
#pragma once
#include "schedules/qmatmul_templates.h"

namespace tetra::schedules {

dsl::KnobSpace cpu_int4_vnni_space(const QMatMulWorkload& workload, const TargetSpec& target);
Schedule cpu_int4_vnni_default(const QMatMulWorkload& workload, const TargetSpec& target);
Status cpu_int4_vnni_check(const QMatMulWorkload& workload, const Schedule& schedule, const TargetSpec& target);
dsl::Int4Layout cpu_int4_vnni_layout(const Schedule& schedule);
Status apply_cpu_int4_vnni(QMatMulDef& q, const Schedule& schedule, const TargetSpec& target);

}  // namespace tetra::schedules
