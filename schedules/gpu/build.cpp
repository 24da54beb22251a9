#include "schedules/gpu/build.h"

#include <algorithm>
#include <map>

#include "dsl/core/amd_arch.h"
#include "dsl/gpu/capture_kernels.h"
#include "dsl/gpu/emit_kernel.h"
#include "dsl/gpu/launch_plan_of.h"

namespace tetra::schedules {

namespace {
// Kernels are lowered for any GPU target; code objects are built for AMD archs.
dsl::Status check_gpu_target(const TargetSpec& target) {
  if (target.is_cpu())
    return dsl::Failure{dsl::FailureKind::WrongTarget, target.name, "GPU kernels are lowered for GPU targets"};
  return dsl::ok_status();
}

dsl::Status check_hip_target(const TargetSpec& target) {
  if (target.family != dsl::TargetFamily::Hip || target.gpu_arch.empty())
    return dsl::Failure{dsl::FailureKind::WrongTarget, target.name, "GPU kernels are built for hip:ARCH targets"};
  return dsl::check_amd_arch(target.gpu_arch);
}

dsl::Result<GpuKernels> capture(const dsl::ComputeDef& def, const Schedule& schedule, const std::string& name) {
  return capture_gpu_kernels(def.output, def.arguments, schedule, name, def.gpu);
}

}  // namespace

dsl::Result<GpuKernels> capture_gpu_kernels(const Halide::Func& output, const std::vector<Halide::Argument>& args,
                                            const Schedule& schedule, const std::string& name,
                                            const dsl::GpuKernelHints& hints) {
  auto captured = dsl::gpu::capture_kernels({output}, args, name, hints);
  if (!captured) return captured.failure();
  GpuKernels lowered;
  lowered.schedule = schedule;
  lowered.kernels = captured.value().kernels;
  for (const dsl::gpu::DeviceKernel& k : lowered.kernels) {
    auto plan = dsl::gpu::launch_plan_of(k);
    if (!plan) return plan.failure();
    lowered.launches.push_back(plan.value());
  }
  return lowered;
}

QMatMulDef define_gpu_qmatmul(const QMatMulWorkload& workload, const QMatMulTemplate& t, const Schedule& schedule) {
  const dsl::Int4Layout layout = t.layout(schedule);
  switch (t.activations) {
    case dsl::ActivationMode::Int8:
      return dsl::define_qmatmul_int8(workload, layout);
    case dsl::ActivationMode::Float16:
      return dsl::define_qmatmul_f16(workload, layout);
    default:  // float32 templates also serve float16 workloads, exactly
      return dsl::define_qmatmul(workload, layout);
  }
}

dsl::QConvDef define_gpu_qconv(const dsl::QConvWorkload& workload) {
  return dsl::define_qconv(workload, dsl::InputPadding::Select, dsl::WeightChannels::Clamped);
}

dsl::Result<GpuKernels> lower_gpu_qmatmul(const QMatMulWorkload& workload, const Schedule& schedule,
                                          const TargetSpec& target, const std::string& name) {
  if (Status st = check_gpu_target(target); !st) return st.failure();
  if (Status st = check_qmatmul_schedule(workload, schedule, target); !st) return st.failure();
  const QMatMulTemplate* t = find_qmatmul_template(schedule.template_name);
  QMatMulDef q = define_gpu_qmatmul(workload, *t, schedule);
  try {
    if (Status st = t->apply(q, schedule, target); !st) return st.failure();
  } catch (const Halide::Error& e) {
    return dsl::Failure{dsl::FailureKind::Compile, schedule.to_string(), e.what()};
  }
  return capture(q.def, schedule, name);
}

dsl::Result<GpuKernels> lower_gpu_qconv(const dsl::QConvWorkload& workload, const Schedule& schedule,
                                        const TargetSpec& target, const std::string& name) {
  if (Status st = check_gpu_target(target); !st) return st.failure();
  if (Status st = check_qconv_schedule(workload, schedule, target); !st) return st.failure();
  dsl::QConvDef q = define_gpu_qconv(workload);
  try {
    if (Status st = find_qconv_template(schedule.template_name)->apply(q, schedule, target); !st) return st.failure();
  } catch (const Halide::Error& e) {
    return dsl::Failure{dsl::FailureKind::Compile, schedule.to_string(), e.what()};
  }
  return capture(q.def, schedule, name);
}

dsl::Result<std::vector<dsl::gpu::KernelResources>> build_gpu_code_object(
    const std::vector<dsl::gpu::DeviceKernel>& kernels, const TargetSpec& target, const std::string& path,
    std::string* hip_source) {
  if (Status st = check_hip_target(target); !st) return st.failure();
  auto source = dsl::gpu::emit_kernels(kernels, dsl::gpu::Dialect::Hip);
  if (!source) return source.failure();
  if (hip_source) *hip_source = source.value();
  if (Status st = dsl::gpu::build_hip_code_object(source.value(), target.gpu_arch, path); !st) return st.failure();
  auto read = dsl::gpu::read_kernel_resources(path);
  if (!read) return read.failure();
  // The notes list kernels in their own order, by symbol name.
  std::map<std::string, dsl::gpu::KernelResources> by_name;
  for (const dsl::gpu::KernelResources& r : read.value()) by_name[r.name] = r;
  std::vector<dsl::gpu::KernelResources> resources;
  for (const dsl::gpu::DeviceKernel& k : kernels) {
    auto it = by_name.find(k.name);
    if (it == by_name.end())
      return dsl::Failure{dsl::FailureKind::Compile, path, "kernel " + k.name + " is missing from the code object"};
    dsl::gpu::KernelResources r = it->second;
    // Blocks of unknown size count as the largest, 1024 threads, against the LDS.
    int64_t threads = dsl::gpu::constant_threads_per_block(k);
    r.waves_per_simd = dsl::waves_per_simd(*dsl::find_amd_arch(target.gpu_arch), r.vgprs, r.agprs, r.lds_bytes,
                                           int(threads > 0 ? threads : 1024));
    resources.push_back(r);
  }
  return resources;
}

dsl::Result<dsl::GpuEstimate> estimate_gpu_kernels(const dsl::KernelTraffic& traffic,
                                                   const std::vector<dsl::gpu::KernelResources>& resources,
                                                   const TargetSpec& target) {
  const dsl::AmdArch* arch = dsl::find_amd_arch(target.gpu_arch);
  const dsl::GpuDevice* device = dsl::reference_gpu(target.gpu_arch);
  if (!arch || !device) return dsl::Failure{dsl::FailureKind::Unsupported, target.name, "no static estimate for it"};
  int waves = arch->max_waves_per_simd;
  for (const dsl::gpu::KernelResources& r : resources) waves = std::min(waves, r.waves_per_simd);
  return dsl::estimate_kernel(traffic, *arch, *device, waves);
}

}  // namespace tetra::schedules
