// Building a GPU QMatMul kernel end to end for one arch: the template's schedule applied, the kernels
// captured and emitted as HIP, built into a code object, and its resources read back. What
// `tetra inspect --target hip:ARCH` prints, and the step a multi-arch model library repeats per arch.
#pragma once
#include <string>
#include <vector>

#include "dsl/core/launch_plan.h"
#include "dsl/gpu/code_object.h"
#include "schedules/qmatmul_templates.h"

namespace tetra::schedules {

struct GpuKernelBuild {
  Schedule schedule;
  std::string hip_source;
  std::vector<dsl::LaunchPlan> launches;             // one per kernel, in launch order
  std::vector<dsl::gpu::KernelResources> resources;  // from the code object, one per kernel
};

// `schedule` (checked against `target`, a hip target) for `workload`, built for target.gpu_arch with its
// code object written to `code_object`. Every step's failure names the step.
dsl::Result<GpuKernelBuild> build_gpu_qmatmul(const QMatMulWorkload& workload, const Schedule& schedule,
                                              const TargetSpec& target, const std::string& code_object);

}  // namespace tetra::schedules
