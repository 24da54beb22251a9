// CPU schedules of dense, grouped and depthwise tetra.QConv (dsl/qconv.h), and the compiled kernel.
//
// Three templates, one code: cpu_int4_depthwise_conv (one input channel per group, Cg = 1),
// cpu_int4_grouped_conv (any Cg) and cpu_int4_dense_conv (group 1, with tile_m). Loop nest:
//   [x: the whole padded input]                    x_stage = "root" (dense convs' default)
//   parallel for (n, m tiles of tile_m channels)   parallel = "m"  (or the row tiles: "oh")
//     [w: the tile's dequantized KHxKWxCg taps]     w_stage = "channel"
//     [x: the padded input planes of the group]     x_stage = "plane"
//     for row tiles of tile_oh rows
//       [x: the padded input rows of the tile]      x_stage = "tile"
//       for column tiles of tile_ow columns
//         acc[tile_m][tile_oh][tile_ow] = bias     (tile_m * tile_oh * tile_ow / vector_width registers)
//         for c < Cg, kh, kw (kh, kw unrolled):   acc[m][r][col] += x[...] * w(kw, kh, c, m)
//         Y[tile] = acc                            (the last tiles are guarded: any OH, OW, M)
// With x_stage = "inline", loads check the borders themselves (Halide splits the tile loops so that
// only border tiles do, but in a narrow image every tile is a border tile, and gathers: 7x slower).
//
//   auto wl = ...;                                              // a dsl::QConvWorkload
//   auto schedule = schedules::default_qconv_schedule(wl, dsl::host_target()).value();
//   auto kernel = schedules::compile_qconv(wl, schedule, dsl::host_target()).value();
//   auto W = dsl::pack_conv_weight(*node.weight).value();        // once, at load time
//   Halide::Buffer<float> X(x_ptr, W, H, C, N), Y(y_ptr, OW, OH, M, N);
//   dsl::Status st = kernel.run(wl, X, W, Y);                    // any workload with the same kernel spec
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "dsl/core/kernel_calls.h"
#include "dsl/jit_pipeline.h"
#include "dsl/qconv.h"
#include "dsl/schedule.h"
#include "dsl/target.h"
#include "schedules/qconv_templates.h"

namespace tetra::schedules {

// The CPU family's QConv templates, in the order of their table.
const std::vector<QConvTemplate>& cpu_qconv_templates();
// cpu_int4_depthwise_conv when Cg = 1, cpu_int4_dense_conv for group 1, else cpu_int4_grouped_conv.
const char* cpu_qconv_template_for(const QConvWorkload& workload);

dsl::KnobSpace cpu_conv_space(const QConvWorkload& workload, const TargetSpec& target);
Schedule cpu_conv_default(const QConvWorkload& workload, const TargetSpec& target);
Status cpu_conv_check(const QConvWorkload& workload, const Schedule& schedule, const TargetSpec& target);
Status apply_cpu_conv(QConvDef& q, const Schedule& schedule, const TargetSpec& target);

class QConvKernel {
 public:
  const QConvWorkload& workload() const { return workload_; }  // the one it was compiled for
  const Schedule& schedule() const { return schedule_; }

  // Y = conv(X, W) + bias for `workload`, which must have the compiled workload's kernel spec.
  // X is (W, H, C, N), Y (OW, OH, M, N). Shape mismatches and Halide errors come back as a Failure.
  // `residual` (shaped as Y) is required when the workload's epilogue adds one.
  Status run(const QConvWorkload& workload, const Halide::Buffer<float>& X, const dsl::ConvInt4Buffers& weight,
             Halide::Buffer<float>& Y, const Halide::Buffer<float>* bias = nullptr,
             const Halide::Buffer<float>* residual = nullptr) const;

  // Halide's lowered statement, to inspect a schedule.
  void write_lowered_stmt(const std::string& path) const;
  // The generated x86/arm assembly.
  void write_assembly(const std::string& path) const;

 private:
  friend dsl::Result<QConvKernel> compile_qconv(const QConvWorkload&, const Schedule&, const TargetSpec&,
                                                const std::string&);
  QConvWorkload workload_;
  Schedule schedule_;
  TargetSpec target_;
  dsl::ScheduledPipeline scheduled_;
  std::shared_ptr<const dsl::CompiledPipeline> code_;
};

// Checks the schedule, then defines and schedules the pipeline (arguments in dsl::call_qconv's order).
dsl::Result<dsl::ScheduledPipeline> schedule_qconv(const QConvWorkload& workload, const Schedule& schedule,
                                                   const TargetSpec& target);

// The code key (dsl::code_key) of a QConv kernel: its kernel spec's key and the schedule (not the
// shapes), and the target's Halide target.
std::string qconv_code_key(const QConvWorkload& workload, const Schedule& schedule, const TargetSpec& target);

// Checks the schedule, defines, schedules and compiles the kernel: JIT when `cache_dir` is empty, else
// through the on-disk kernel cache in `cache_dir` (as compile_qmatmul).
dsl::Result<QConvKernel> compile_qconv(const QConvWorkload& workload, const Schedule& schedule,
                                       const TargetSpec& target, const std::string& cache_dir = "");

}  // namespace tetra::schedules
