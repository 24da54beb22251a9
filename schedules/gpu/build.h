// Building GPU QMatMul kernels for one arch: the template's schedule applied and its kernels captured
// (lower_gpu_qmatmul), then the kernels of any number of workloads emitted as HIP into one code object
// and its resources read back (build_gpu_code_object). `tetra inspect --target hip:ARCH` and
// `tetra compile --target hip:...` both go through runtime/aot/gpu_kernels.h, which repeats this per arch.
#pragma once
#include <set>
#include <string>
#include <vector>

#include "dsl/core/gpu_estimate.h"
#include "dsl/core/launch_plan.h"
#include "dsl/gpu/code_object.h"
#include "dsl/gpu/device_kernel.h"
#include "schedules/qconv_templates.h"
#include "schedules/qmatmul_templates.h"

namespace tetra::schedules {

// One workload's kernels for a GPU target, captured but not yet compiled.
struct GpuKernels {
  Schedule schedule;
  std::vector<dsl::gpu::DeviceKernel> kernels;  // named `name`_k0, `name`_k1, ... in launch order
  std::vector<dsl::LaunchPlan> launches;        // one per kernel
};

// The kernels of `output`, scheduled for a GPU, captured under `name` with their launch plans; `args` are
// the pipeline's inputs in order, `hints` what the schedule asks of its kernels (dsl::ComputeDef::gpu).
dsl::Result<GpuKernels> capture_gpu_kernels(const Halide::Func& output, const std::vector<Halide::Argument>& args,
                                            const Schedule& schedule, const std::string& name,
                                            const dsl::GpuKernelHints& hints = {});

// The algorithm template `t` computes for `workload` at `schedule`'s layout, by the template's
// activations: define_qmatmul (float32, float16 workloads included), define_qmatmul_int8 or
// define_qmatmul_f16.
QMatMulDef define_gpu_qmatmul(const QMatMulWorkload& workload, const QMatMulTemplate& t, const Schedule& schedule);

// The conv's algorithm as the GPU templates take it (dsl::WeightChannels::Clamped).
dsl::QConvDef define_gpu_qconv(const dsl::QConvWorkload& workload);

// `schedule` (checked against `target`, a hip target) applied to `workload`, its kernels captured under
// `name` (a C identifier). Every step's failure names the step.
dsl::Result<GpuKernels> lower_gpu_qmatmul(const QMatMulWorkload& workload, const Schedule& schedule,
                                          const TargetSpec& target, const std::string& name);

// The same for a conv: `schedule` (a GPU conv template's) applied to `workload`.
dsl::Result<GpuKernels> lower_gpu_qconv(const dsl::QConvWorkload& workload, const Schedule& schedule,
                                        const TargetSpec& target, const std::string& name);

// `kernels` emitted as HIP and built for target.gpu_arch into the code object `path`; the resources of
// each kernel, in the order of `kernels`. *hip_source, when given, receives the source.
dsl::Result<std::vector<dsl::gpu::KernelResources>> build_gpu_code_object(
    const std::vector<dsl::gpu::DeviceKernel>& kernels, const TargetSpec& target, const std::string& path,
    std::string* hip_source = nullptr);

// The static estimate (dsl/core/gpu_estimate.h) of one workload's kernels, built for target.gpu_arch,
// on the arch's reference GPU: `traffic` from the template, occupancy the lowest of the kernels'.
dsl::Result<dsl::GpuEstimate> estimate_gpu_kernels(const dsl::KernelTraffic& traffic,
                                                   const std::vector<dsl::gpu::KernelResources>& resources,
                                                   const TargetSpec& target);

}  // namespace tetra::schedules
