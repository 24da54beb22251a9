// The Halide backend's code, compiled in this process: the KernelSource of `tetra run`, `bench` and
// `tune`, and the planner that `tetra compile` shares with it, so a model library holds exactly the
// pipelines and schedules that the JIT runtime would run.
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "dsl/jit_pipeline.h"
#include "dsl/target.h"
#include "runtime/executor.h"
#include "runtime/kernel_source.h"
#include "runtime/schedule_source.h"

namespace tetra {

// The schedule of a QMatMul workload on `target`: the usable database record, else the template's
// default, with where it came from (the reason, when a record was rejected).
ScheduleChoice choose_qmatmul_schedule(const dsl::QMatMulWorkload& workload, const ScheduleSource* schedules,
                                       const dsl::TargetSpec& target);

// The same for a direct QConv workload.
ScheduleChoice choose_qconv_schedule(const dsl::QConvWorkload& workload, const ScheduleSource* schedules,
                                     const dsl::TargetSpec& target);

// A request resolved for one target: its schedule and the key of the code (which the JIT shares
// between requests), and how to define the pipeline.
struct KernelPlan {
  std::string code_key;    // dsl::code_key: what the generated code depends on, target and toolchain included
  KernelCode info;         // schedule, source, layout, format; no pipeline yet
  Halide::Target halide;   // the target to compile for (strict_float for the elementwise family)
  std::function<dsl::Result<dsl::ScheduledPipeline>()> define;
};
KernelPlan plan_kernel(const KernelRequest& request, const ScheduleSource* schedules, const dsl::TargetSpec& target);

// Compiles each plan for `target` (one this machine runs: dsl::runs_on_host) once per process
// (pipelines are shared by every node and model), through the on-disk kernel cache when one is given
// (the next process loads the code instead).
class JitKernelSource : public KernelSource {
 public:
  JitKernelSource(const ScheduleSource* schedules, std::string disk_cache,
                  dsl::TargetSpec target = dsl::host_target());
  KernelCode get(const KernelRequest& request) override;
  int vector_lanes() const override;

 private:
  const ScheduleSource* schedules_;
  std::string disk_cache_;
  dsl::TargetSpec target_;
};

// ExecutorOptions::target as a TargetSpec: this machine for "", else the named target, which this
// machine must run (tetra::Error naming what it lacks).
dsl::TargetSpec kernel_target(const std::string& name);

// Halide's JIT runtime sizes its thread pool from HL_NUM_THREADS when the pool first starts.
void set_halide_threads(int threads);

}  // namespace tetra
