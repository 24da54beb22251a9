// The int4 conv on GPUs (dense, grouped and depthwise), template gpu_int4_conv.
//
// The grid is (tiles of tile_ow columns) x (tiles of tile_oh rows) x (tiles of threads_m * thread_m
// output channels); a block walks the batch. A thread owns thread_ow output columns of one row of its tile
// and thread_m channels, accumulated in registers over the taps (c < Cg, kh, kw; kw unrolled):
//   acc[m] = bias[m] + sum x[n, ch(m, c), oh*SH - PT + kh*DH, ow*SW - PL + kw*DW] * W(m, c, kh, kw)
// Neighbouring threads read neighbouring input columns (coalesced). The weight is the model's own packed
// bytes (dsl/qconv.h), and reaches the threads one of two ways (shared_stage):
//   - "none", a direct conv: each thread dequantizes the weights it uses, feeding thread_ow multiply-adds
//     each; the threads of a block share each weight value (a broadcast from cache). The default for
//     depthwise convs, which have few taps a channel.
//   - "w", an implicit GEMM (pixels x channels, over input channels x taps): for each chunk of tile_k input
//     channels the block dequantizes its channels' weights of every tap once into workgroup memory, and
//     each thread then reads its thread_m channels' weight of a tap in one wide read, feeding
//     thread_ow * thread_m multiply-adds. The input is read from global memory (the threads of a pixel
//     share it through the cache): a staged input window would need the dilation, which is read at run
//     time, to size it. The default for dense and grouped convs.
// With split_c S > 1 (threads_m 1) each output tile has S threads in z, each summing a contiguous share of
// the input channels into partial outputs in its registers, added in workgroup memory after a barrier.
#pragma once
#include "dsl/core/gpu_estimate.h"
#include "schedules/qconv_templates.h"

namespace tetra::schedules {

const std::vector<QConvTemplate>& gpu_qconv_templates();
// The GPU family's conv template for a workload: gpu_int4_conv for every kind of conv.
const char* gpu_qconv_template_for(const QConvWorkload& workload);

dsl::KnobSpace gpu_conv_space(const QConvWorkload& workload, const TargetSpec& target);
Schedule gpu_conv_default(const QConvWorkload& workload, const TargetSpec& target);
Status gpu_conv_check(const QConvWorkload& workload, const Schedule& schedule, const TargetSpec& target);
Status apply_gpu_conv(QConvDef& q, const Schedule& schedule, const TargetSpec& target);
dsl::KernelTraffic gpu_conv_traffic(const QConvWorkload& workload, const Schedule& schedule);

}  // namespace tetra::schedules
