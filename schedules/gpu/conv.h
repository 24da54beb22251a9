// Direct int4 conv on GPUs (dense, grouped and depthwise), template gpu_int4_conv.
//
// The grid is (tiles of tile_ow columns) x (tiles of tile_oh rows) x (tiles of thread_m output channels);
// a block walks the batch. A thread owns thread_ow output columns of one row of its tile and thread_m
// channels, accumulated in registers over the taps (c < Cg, kh, kw; kw unrolled), so each dequantized
// weight feeds thread_ow multiply-adds:
//   acc[m] = bias[m] + sum x[n, ch(m, c), oh*SH - PT + kh*DH, ow*SW - PL + kw*DW] * W(m, c, kh, kw)
// Neighbouring threads read neighbouring input columns (coalesced); the threads of a block share each
// weight value (a broadcast from cache). The weight is the model's own packed bytes (dsl/qconv.h).
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
