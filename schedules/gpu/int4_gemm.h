// int4 GEMM on GPUs (prefill, batches: M > 8), tiled in blocks and threads.
//
// The grid is (panels of tile_n columns) x (tiles of tile_m rows). In a block, each thread owns a
// thread_n x thread_m tile of outputs, held in registers across the whole reduction:
//   acc[c][r] += A[m0 + r, k] * dequant(W[k, n0 + c])      for k in steps of unroll_k
// The accumulators are the block's Func (so that A can be staged between k-chunks), each thread's share
// in its registers (dsl/gpu/private_arrays.h). With shared_stage "a", the block's tile_m rows of A are
// first copied to workgroup memory, tile_k values of k at a time, by all its threads together (a
// barrier each side); every thread then reads A from there instead of from global memory. With split_k
// S > 1 the block has S threads per output tile, each summing a contiguous S-th of every chunk of k (or
// every S-th step of unroll_k) into a partial tile in its registers; each writes its tile to workgroup
// memory once, and after a barrier the tile's thread adds each of its outputs' S parts. With shared_stage
// "aw" the block's chunk of the packed weight is staged beside A's; with "aw_dequant" that chunk is
// dequantized to float32 there by the block's threads together, once a block where each thread row
// dequantized its columns again. W is in
// panels of thread_n columns (dsl/core/int4_format.h): a thread reads its columns of a k-pair as
// adjacent bytes, and the weight is padded to whole panels, so no thread reads past it.
#pragma once
#include "dsl/core/gpu_estimate.h"
#include "schedules/qmatmul_templates.h"

namespace tetra::schedules {

dsl::KnobSpace gpu_int4_gemm_space(const QMatMulWorkload& workload, const TargetSpec& target);
Schedule gpu_int4_gemm_default(const QMatMulWorkload& workload, const TargetSpec& target);
Status gpu_int4_gemm_check(const QMatMulWorkload& workload, const Schedule& schedule, const TargetSpec& target);
dsl::Int4Layout gpu_int4_gemm_layout(const Schedule& schedule);
Status apply_gpu_int4_gemm(QMatMulDef& q, const Schedule& schedule, const TargetSpec& target);
dsl::KernelTraffic gpu_int4_gemm_traffic(const QMatMulWorkload& workload, const Schedule& schedule);

// The same GEMM for int8 activations (define_qmatmul_int8 with the vnni words layout in panels of
// thread_n columns): for each chunk of tile_k k-blocks, the block quantizes its tile_m rows of A into
// workgroup memory (the k-blocks' maxima, the int8 values packed four to a uint32, the blocks' sums), all
// its threads sharing the work; then each thread's k-block of its tile is two 4-way dot products
// (dot4_i8) per word of 8 weights and row, in registers, and one multiply-add per k-block, column and row
// turning the integer sum into float32: (dot - offset * a_sum) * a_scale * w_scale.
dsl::KnobSpace gpu_int4_gemm_a8_space(const QMatMulWorkload& workload, const TargetSpec& target);
Schedule gpu_int4_gemm_a8_default(const QMatMulWorkload& workload, const TargetSpec& target);
Status gpu_int4_gemm_a8_check(const QMatMulWorkload& workload, const Schedule& schedule, const TargetSpec& target);
dsl::Int4Layout gpu_int4_gemm_a8_layout(const Schedule& schedule);
Status apply_gpu_int4_gemm_a8(QMatMulDef& q, const Schedule& schedule, const TargetSpec& target);
dsl::KernelTraffic gpu_int4_gemm_a8_traffic(const QMatMulWorkload& workload, const Schedule& schedule);

// The same GEMM for float16 activations (define_qmatmul_f16, the weight in words of whole k-blocks, in
// panels of thread_n columns): for each chunk of tile_k k-blocks, the block rounds its tile_m rows of A
// to float16 pairs in workgroup memory, with the blocks' sums; then a thread makes each word of its
// columns 4 float16 code pairs once (two integer operations a pair), and meets them with every row of its
// tile in 4 float16 dot products into float32 (dot2_f16: v_dot2_f32_f16 on AMD), and one multiply-add
// per k-block, column and row removes the offset: (dot - (16 + offset) * a_sum) * scale.
// applies: the default for `workload` on GPUs (float16 activations, more than 8 rows, a chunk of the
// default's fits in workgroup memory).
bool gpu_int4_gemm_h2_applies(const QMatMulWorkload& workload);
dsl::KnobSpace gpu_int4_gemm_h2_space(const QMatMulWorkload& workload, const TargetSpec& target);
Schedule gpu_int4_gemm_h2_default(const QMatMulWorkload& workload, const TargetSpec& target);
Status gpu_int4_gemm_h2_check(const QMatMulWorkload& workload, const Schedule& schedule, const TargetSpec& target);
dsl::Int4Layout gpu_int4_gemm_h2_layout(const Schedule& schedule);
Status apply_gpu_int4_gemm_h2(QMatMulDef& q, const Schedule& schedule, const TargetSpec& target);
dsl::KernelTraffic gpu_int4_gemm_h2_traffic(const QMatMulWorkload& workload, const Schedule& schedule);

}  // namespace tetra::schedules
