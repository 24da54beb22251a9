// A compiled QMatMul kernel: the compute definition, a checked schedule and a target, JIT-compiled
// once; it then runs on any M, K, N whose weight was packed for it.
//
//   auto workload = dsl::qmatmul_workload(*node.weight, trans_b, M, has_bias).value();
//   auto schedule = schedules::default_qmatmul_schedule(workload, dsl::host_target()).value();
//   auto kernel = schedules::compile_qmatmul(workload, schedule, dsl::host_target());  // Result
//   auto W = kernel.value().pack(*node.weight, trans_b).value();         // once, at load time
//   Halide::Buffer<float> A(a_ptr, K, M), Y(y_ptr, N, M);                // row-major [M,K], [M,N]
//   dsl::Status st = kernel.value().run(A, W, Y);
#pragma once
#include <memory>

#include "dsl/jit_pipeline.h"
#include "dsl/core/kernel_calls.h"
#include "dsl/qmatmul.h"
#include "dsl/schedule.h"
#include "dsl/target.h"

namespace tetra::schedules {

struct QMatMulArgs {
  const Halide::Buffer<float>* bias = nullptr;      // [N]; required when the workload has a bias
  const Halide::Buffer<float>* residual = nullptr;  // (N, M); required when its epilogue adds one
  float alpha = 1.0f, beta = 1.0f;
};

class QMatMulKernel {
 public:
  const dsl::QMatMulWorkload& workload() const { return workload_; }
  const dsl::Schedule& schedule() const { return schedule_; }
  const dsl::TargetSpec& target() const { return target_; }
  const dsl::Int4Layout& layout() const { return layout_; }

  // Packs a weight into this kernel's panels and format (once per weight, at load time).
  dsl::Result<dsl::PackedInt4Buffers> pack(const QuantizedWeight& weight, bool trans_b) const;

  // Y(n, m) = act(alpha * sum_k A(k, m) W(k, n) + beta * bias(n)). A is (K, M), Y is (N, M).
  // Shape mismatches and Halide runtime errors come back as a Failure.
  dsl::Status run(const Halide::Buffer<float>& A, const dsl::PackedInt4Buffers& W, Halide::Buffer<float>& Y,
                  const QMatMulArgs& args = {}) const;

  // Writes Halide's lowered statement (the loop nest after scheduling) to `path`, to inspect a schedule.
  void write_lowered_stmt(const std::string& path) const;
  // Writes the generated x86/arm assembly to `path`.
  void write_assembly(const std::string& path) const;
  // Whether the machine code came from the on-disk kernel cache rather than a compile.
  bool from_disk_cache() const { return from_disk_cache_; }

 private:
  friend dsl::Result<QMatMulKernel> compile_qmatmul(const dsl::QMatMulWorkload&, const dsl::Schedule&,
                                                    const dsl::TargetSpec&, const std::string&);
  dsl::QMatMulWorkload workload_;
  dsl::Schedule schedule_;
  dsl::TargetSpec target_;
  dsl::Int4Layout layout_;
  dsl::ScheduledPipeline scheduled_;
  std::shared_ptr<const dsl::CompiledPipeline> code_;
  bool from_disk_cache_ = false;
};

// A checked schedule applied to the QMatMul definition: the pipeline (arguments in
// dsl::call_qmatmul's order) and the weight layout it reads.
struct ScheduledQMatMul {
  dsl::ScheduledPipeline pipeline;
  dsl::Int4Layout layout;
};
dsl::Result<ScheduledQMatMul> schedule_qmatmul(const dsl::QMatMulWorkload& workload, const dsl::Schedule& schedule,
                                               const dsl::TargetSpec& target);

// The code key (dsl::code_key) of a resolved QMatMul workload's kernel: its format, epilogue and
// schedule (not the shapes) and the Halide target it is compiled for on `target`.
std::string qmatmul_code_key(const dsl::QMatMulWorkload& workload, const dsl::Schedule& schedule,
                             const dsl::TargetSpec& target);

// Checks the schedule (check_qmatmul_schedule), defines, schedules and compiles the kernel: JIT when
// `cache_dir` is empty, else ahead of time into a shared object kept in `cache_dir` (loaded from there
// when an earlier process compiled the same code).
dsl::Result<QMatMulKernel> compile_qmatmul(const dsl::QMatMulWorkload& workload, const dsl::Schedule& schedule,
                                           const dsl::TargetSpec& target, const std::string& cache_dir = "");

}  // namespace tetra::schedules
