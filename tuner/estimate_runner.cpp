#include "tuner/estimate_runner.h"

#include <chrono>
#include <filesystem>

#include "dsl/core/gpu_estimate.h"
#include "schedules/gpu/build.h"
#include "schedules/gpu/conv.h"
#include "schedules/gpu/templates.h"

namespace tetra::tuner {

std::string estimate_device_note(const std::string& gpu_arch) {
  const dsl::GpuDevice* device = dsl::reference_gpu(gpu_arch);
  return std::string("static estimate on ") + (device ? device->name : "?") + " (" + gpu_arch + ")";
}

MeasureResult EstimateRunner::run(const MeasureJob& job) {
  MeasureResult result;
  auto fail = [&](const std::string& why) {
    result.ok = false;
    result.error = why;
    return result;
  };
  auto start = std::chrono::steady_clock::now();
  dsl::Result<dsl::TargetSpec> target = dsl::parse_target(job.target);
  if (!target) return fail(target.failure().describe());
  dsl::Result<schedules::GpuKernels> lowered =
      job.qconv ? schedules::lower_gpu_qconv(*job.qconv, job.schedule, target.value(), "candidate")
                : schedules::lower_gpu_qmatmul(*job.qmatmul, job.schedule, target.value(), "candidate");
  if (!lowered) return fail(lowered.failure().describe());
  std::filesystem::create_directories(work_dir_);
  const std::string object = (std::filesystem::path(work_dir_) / "candidate.co").string();
  auto resources = schedules::build_gpu_code_object(lowered.value().kernels, target.value(), object);
  std::error_code ec;
  std::filesystem::remove(object, ec);
  if (!resources) return fail(resources.failure().describe());
  for (const dsl::gpu::KernelResources& r : resources.value()) {
    if (r.vgpr_spills + r.sgpr_spills > 0 || r.scratch_bytes > 0)
      return fail(r.name + " spills (" + std::to_string(r.vgpr_spills + r.sgpr_spills) + " registers, " +
                  std::to_string(r.scratch_bytes) + " bytes of scratch): rejected without running");
    if (r.waves_per_simd == 0) return fail(r.name + " does not fit on a CU (LDS): rejected without running");
  }
  dsl::KernelTraffic traffic = job.qconv ? schedules::gpu_conv_traffic(*job.qconv, job.schedule)
                                         : schedules::gpu_qmatmul_traffic(*job.qmatmul, job.schedule);
  dsl::Result<dsl::GpuEstimate> estimate = schedules::estimate_gpu_kernels(traffic, resources.value(), target.value());
  if (!estimate) return fail(estimate.failure().describe());
  result.ok = true;
  result.median_ms = result.min_ms = result.max_ms = estimate.value().time_us / 1000;
  result.runs = 0;  // estimated, not timed
  result.compile_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace tetra::tuner
