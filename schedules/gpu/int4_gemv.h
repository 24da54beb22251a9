// int4 GEMV on GPUs (decode: few rows of A, the weight's K*N/2 bytes read once per row).
//
// The grid is (panels of tile_n columns) x (rows of A). In a block, thread t owns column p*P + t:
//   split_k = 1:  acc = sum over all k of A[m, k] * dequant(W[k, n])          (unroll_k at a time)
//   split_k = S:  S threads per column each sum every S-th pair (or word) of k in a register, then
//                 write it to workgroup memory; after a barrier, thread t adds up its column's S sums.
// load_bytes: a thread loads a byte (2 weights) or a 32-bit word (8 weights, Int4Layout::words) at a
// time. Consecutive threads read consecutive bytes or words of a panel row (the panel layout of
// dsl/core/int4_format.h), so the weight loads of a wave coalesce. A's row is read by every thread (a
// broadcast, cached).
#pragma once
#include "dsl/core/gpu_estimate.h"
#include "schedules/qmatmul_templates.h"

namespace tetra::schedules {

dsl::KnobSpace gpu_int4_gemv_space(const QMatMulWorkload& workload, const TargetSpec& target);
Schedule gpu_int4_gemv_default(const QMatMulWorkload& workload, const TargetSpec& target);
Status gpu_int4_gemv_check(const QMatMulWorkload& workload, const Schedule& schedule, const TargetSpec& target);
dsl::Int4Layout gpu_int4_gemv_layout(const Schedule& schedule);
Status apply_gpu_int4_gemv(QMatMulDef& q, const Schedule& schedule, const TargetSpec& target);
dsl::KernelTraffic gpu_int4_gemv_traffic(const QMatMulWorkload& workload, const Schedule& schedule);

// The same GEMV with a column's k split across the lanes of one wave, added up by cross-lane operations
// (gpu_int4_gemv_wave): the weight packed in panels of thread_n columns (k contiguous, a panel's words at
// one k adjacent), lane u of a panel's `lanes` sums its words u, u + lanes, ... (`vector` adjacent words of
// each column a load: 16 bytes at 4), so a wave's loads of a panel are one contiguous stretch. The lanes' sums meet in
// a butterfly of cross-lane exchanges (dsl/gpu/private_arrays.h lower_lane_sums; ds_bpermute on AMD, shfl.bfly on
// NVIDIA, workgroup memory in OpenCL C), with no workgroup memory or barrier on a GPU; lane 0 writes the column. A
// block is `columns` columns; a lane sums `thread_n` of them (a wave's rows of the weight), so that each activation
// value it loads serves thread_n weights.
dsl::KnobSpace gpu_int4_gemv_wave_space(const QMatMulWorkload& workload, const TargetSpec& target);
Schedule gpu_int4_gemv_wave_default(const QMatMulWorkload& workload, const TargetSpec& target);
Status gpu_int4_gemv_wave_check(const QMatMulWorkload& workload, const Schedule& schedule, const TargetSpec& target);
dsl::Int4Layout gpu_int4_gemv_wave_layout(const Schedule& schedule);
Status apply_gpu_int4_gemv_wave(QMatMulDef& q, const Schedule& schedule, const TargetSpec& target);
dsl::KernelTraffic gpu_int4_gemv_wave_traffic(const QMatMulWorkload& workload, const Schedule& schedule);

// The same GEMV for int8 activations (define_qmatmul_int8 with the vnni words layout): each block
// quantizes its row of A per k-block into workgroup memory, then a thread's 8 codes of a column (one
// uint32) meet 8 int8 activations in two 4-way dot products (dsl/gpu/emit_kernel.h dot4_i8: v_dot4 on AMD,
// dp4a on NVIDIA), one multiply-add per k-block turning the integer sum into float32. split_k threads per
// column divide the k-blocks; thread_n adjacent columns per thread share each activation word.
dsl::KnobSpace gpu_int4_gemv_a8_space(const QMatMulWorkload& workload, const TargetSpec& target);
Schedule gpu_int4_gemv_a8_default(const QMatMulWorkload& workload, const TargetSpec& target);
Status gpu_int4_gemv_a8_check(const QMatMulWorkload& workload, const Schedule& schedule, const TargetSpec& target);
dsl::Int4Layout gpu_int4_gemv_a8_layout(const Schedule& schedule);
Status apply_gpu_int4_gemv_a8(QMatMulDef& q, const Schedule& schedule, const TargetSpec& target);
dsl::KernelTraffic gpu_int4_gemv_a8_traffic(const QMatMulWorkload& workload, const Schedule& schedule);

// The same GEMV for float16 activations (define_qmatmul_f16, the weight in words of whole k-blocks):
// each block rounds its row of A to float16 pairs in workgroup memory, and a thread's word of 8 codes
// meets them in 4 float16 dot products into float32 (dsl/gpu/emit_kernel.h dot2_f16: v_dot2_f32_f16 on
// AMD), the code pairs made float16 by two integer operations each. The knobs are the int8 GEMV's.
// applies: the default for `workload` on GPUs (float16 activations, at most 8 rows, A's row fits in
// workgroup memory).
bool gpu_int4_gemv_h2_applies(const QMatMulWorkload& workload);
dsl::KnobSpace gpu_int4_gemv_h2_space(const QMatMulWorkload& workload, const TargetSpec& target);
Schedule gpu_int4_gemv_h2_default(const QMatMulWorkload& workload, const TargetSpec& target);
Status gpu_int4_gemv_h2_check(const QMatMulWorkload& workload, const Schedule& schedule, const TargetSpec& target);
dsl::Int4Layout gpu_int4_gemv_h2_layout(const Schedule& schedule);
Status apply_gpu_int4_gemv_h2(QMatMulDef& q, const Schedule& s, const TargetSpec& target);
dsl::KernelTraffic gpu_int4_gemv_h2_traffic(const QMatMulWorkload& workload, const Schedule& schedule);

// The float16 GEMV with a column's k-blocks split across the lanes of one wave (gpu_int4_gemv_h2_wave): the
// float16 GEMV's arithmetic and staged row of A, the float32 lanes' GEMV's threads and exchanges. The weight
// is in panels of thread_n columns, so a lane's k-block of its columns is thread_n x block / 8 adjacent
// words; lane u sums the k-blocks u, u + lanes, ...; no partial sums in workgroup memory.
dsl::KnobSpace gpu_int4_gemv_h2_wave_space(const QMatMulWorkload& workload, const TargetSpec& target);
Schedule gpu_int4_gemv_h2_wave_default(const QMatMulWorkload& workload, const TargetSpec& target);
Status gpu_int4_gemv_h2_wave_check(const QMatMulWorkload& workload, const Schedule& schedule, const TargetSpec& target);
dsl::Int4Layout gpu_int4_gemv_h2_wave_layout(const Schedule& schedule);
Status apply_gpu_int4_gemv_h2_wave(QMatMulDef& q, const Schedule& s, const TargetSpec& target);
dsl::KernelTraffic gpu_int4_gemv_h2_wave_traffic(const QMatMulWorkload& workload, const Schedule& schedule);

// The int8 GEMV's arithmetic and staged row of A (gpu_int4_gemv_a8) on the same lanes' threads
// (gpu_int4_gemv_a8_wave), with its knobs: a column's k-blocks across `lanes` of one wave, the lanes' sums
// exchanged in registers.
dsl::KnobSpace gpu_int4_gemv_a8_wave_space(const QMatMulWorkload& workload, const TargetSpec& target);
Schedule gpu_int4_gemv_a8_wave_default(const QMatMulWorkload& workload, const TargetSpec& target);
Status gpu_int4_gemv_a8_wave_check(const QMatMulWorkload& workload, const Schedule& schedule, const TargetSpec& target);
dsl::Int4Layout gpu_int4_gemv_a8_wave_layout(const Schedule& schedule);
Status apply_gpu_int4_gemv_a8_wave(QMatMulDef& q, const Schedule& s, const TargetSpec& target);
dsl::KernelTraffic gpu_int4_gemv_a8_wave_traffic(const QMatMulWorkload& workload, const Schedule& schedule);

}  // namespace tetra::schedules
