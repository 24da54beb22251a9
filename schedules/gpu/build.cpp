#include "schedules/gpu/build.h"

#include "dsl/gpu/capture_kernels.h"
#include "dsl/gpu/emit_kernel.h"
#include "dsl/gpu/launch_plan_of.h"

namespace tetra::schedules {

dsl::Result<GpuKernelBuild> build_gpu_qmatmul(const QMatMulWorkload& workload, const Schedule& schedule,
                                              const TargetSpec& target, const std::string& code_object) {
  if (target.family != dsl::TargetFamily::Hip || target.gpu_arch.empty())
    return dsl::Failure{dsl::FailureKind::WrongTarget, target.name, "GPU kernels are built for hip:ARCH targets"};
  if (Status st = check_qmatmul_schedule(workload, schedule, target); !st) return st.failure();
  const QMatMulTemplate* t = find_qmatmul_template(schedule.template_name);
  QMatMulDef q = dsl::define_qmatmul(workload, t->layout(schedule).panel);
  if (Status st = t->apply(q, schedule, target); !st) return st.failure();
  auto captured = dsl::gpu::capture_kernels({q.def.output}, q.def.arguments, "qmatmul");
  if (!captured) return captured.failure();
  GpuKernelBuild build;
  build.schedule = schedule;
  for (const dsl::gpu::DeviceKernel& k : captured.value().kernels) {
    auto plan = dsl::gpu::launch_plan_of(k);
    if (!plan) return plan.failure();
    build.launches.push_back(plan.value());
  }
  auto source = dsl::gpu::emit_kernels(captured.value().kernels, dsl::gpu::Dialect::Hip);
  if (!source) return source.failure();
  build.hip_source = source.value();
  if (Status st = dsl::gpu::build_hip_code_object(build.hip_source, target.gpu_arch, code_object); !st)
    return st.failure();
  auto resources = dsl::gpu::read_kernel_resources(code_object);
  if (!resources) return resources.failure();
  build.resources = resources.value();
  return build;
}

}  // namespace tetra::schedules
