#include "schedules/gpu/templates.h"

#include "schedules/gpu/int4_gemm.h"
#include "schedules/gpu/int4_gemv.h"

namespace tetra::schedules {

const std::vector<QMatMulTemplate>& gpu_qmatmul_templates() {
  static const std::vector<QMatMulTemplate> templates = {
      {"gpu_int4_gemv", dsl::TargetFamily::Hip, dsl::ActivationMode::Float32, gpu_int4_gemv_space,
       gpu_int4_gemv_default, gpu_int4_gemv_check, gpu_int4_gemv_layout, apply_gpu_int4_gemv},
      {"gpu_int4_gemv_wave", dsl::TargetFamily::Hip, dsl::ActivationMode::Float32, gpu_int4_gemv_wave_space,
       gpu_int4_gemv_wave_default, gpu_int4_gemv_wave_check, gpu_int4_gemv_wave_layout, apply_gpu_int4_gemv_wave},
      {"gpu_int4_gemm", dsl::TargetFamily::Hip, dsl::ActivationMode::Float32, gpu_int4_gemm_space,
       gpu_int4_gemm_default, gpu_int4_gemm_check, gpu_int4_gemm_layout, apply_gpu_int4_gemm},
      {"gpu_int4_gemv_a8", dsl::TargetFamily::Hip, dsl::ActivationMode::Int8, gpu_int4_gemv_a8_space,
       gpu_int4_gemv_a8_default, gpu_int4_gemv_a8_check, gpu_int4_gemv_a8_layout, apply_gpu_int4_gemv_a8},
      {"gpu_int4_gemv_a8_wave", dsl::TargetFamily::Hip, dsl::ActivationMode::Int8, gpu_int4_gemv_a8_wave_space,
       gpu_int4_gemv_a8_wave_default, gpu_int4_gemv_a8_wave_check, gpu_int4_gemv_a8_wave_layout,
       apply_gpu_int4_gemv_a8_wave},
      {"gpu_int4_gemm_a8", dsl::TargetFamily::Hip, dsl::ActivationMode::Int8, gpu_int4_gemm_a8_space,
       gpu_int4_gemm_a8_default, gpu_int4_gemm_a8_check, gpu_int4_gemm_a8_layout, apply_gpu_int4_gemm_a8},
      {"gpu_int4_gemv_h2", dsl::TargetFamily::Hip, dsl::ActivationMode::Float16, gpu_int4_gemv_h2_space,
       gpu_int4_gemv_h2_default, gpu_int4_gemv_h2_check, gpu_int4_gemv_h2_layout, apply_gpu_int4_gemv_h2},
      {"gpu_int4_gemv_h2_wave", dsl::TargetFamily::Hip, dsl::ActivationMode::Float16, gpu_int4_gemv_h2_wave_space,
       gpu_int4_gemv_h2_wave_default, gpu_int4_gemv_h2_wave_check, gpu_int4_gemv_h2_wave_layout,
       apply_gpu_int4_gemv_h2_wave},
      {"gpu_int4_gemm_h2", dsl::TargetFamily::Hip, dsl::ActivationMode::Float16, gpu_int4_gemm_h2_space,
       gpu_int4_gemm_h2_default, gpu_int4_gemm_h2_check, gpu_int4_gemm_h2_layout, apply_gpu_int4_gemm_h2},
  };
  return templates;
}

dsl::Status check_staged_bytes(int64_t bytes, const std::string& knob, const std::string& what) {
  constexpr int64_t kMaxStaticSharedBytes = 48 * 1024;
  if (bytes <= kMaxStaticSharedBytes) return dsl::ok_status();
  return dsl::Failure{dsl::FailureKind::KnobConflict, knob,
                      what + " takes " + std::to_string(bytes) + " bytes of workgroup memory, more than " +
                          std::to_string(kMaxStaticSharedBytes)};
}

int64_t reference_simds(const TargetSpec& target) {
  const dsl::GpuDevice* device = dsl::reference_gpu(target.gpu_arch);
  const dsl::AmdArch* arch = dsl::find_amd_arch(target.gpu_arch);
  return device && arch ? int64_t(dsl::simds_of(*arch, device->cus)) : 256;
}

bool crowds_cus(const TargetSpec& target, int64_t blocks, int64_t threads_per_block) {
  const dsl::GpuDevice* device = dsl::reference_gpu(target.gpu_arch);
  const dsl::AmdArch* arch = dsl::find_amd_arch(target.gpu_arch);
  const int64_t units = device && arch ? dsl::block_units_of(*arch, device->cus) : 64;
  const int64_t waves = (threads_per_block + wave_of(target) - 1) / wave_of(target);
  return blocks < units && waves > reference_simds(target) / units;
}

double gpu_weight_bytes(const QMatMulWorkload& w) {
  const dsl::Int4Format& f = w.format;
  if (f.is_float()) return double(w.K) * double(w.N) * f.float_bits / 8;
  const double groups = f.k_group > 0 ? double((w.K + f.k_group - 1) / f.k_group) : 1.0;
  const double scales = groups * (f.per_n ? double(w.N) : 1.0);
  return double(w.K) * double(w.N) / 2 + scales * (f.f16_scale ? 2 : 4) + (f.has_zero_point ? scales / 2 : 0);
}

dsl::KernelTraffic gpu_qmatmul_reads(const QMatMulWorkload& w, double weight_reads, double a_reads) {
  const double weight = gpu_weight_bytes(w), a = double(w.M) * double(w.K) * 4, y = double(w.M) * double(w.N) * 4;
  dsl::KernelTraffic t;
  t.global_bytes = weight + a + y + (w.has_bias ? double(w.N) * 4 : 0);
  t.rereads = {{(weight_reads - 1) * weight, weight}, {(a_reads - 1) * a, a}};
  return t;
}

dsl::KernelTraffic gpu_qmatmul_traffic(const QMatMulWorkload& workload, const Schedule& schedule) {
  if (schedule.template_name == "gpu_int4_gemv") return gpu_int4_gemv_traffic(workload, schedule);
  if (schedule.template_name == "gpu_int4_gemv_wave") return gpu_int4_gemv_wave_traffic(workload, schedule);
  if (schedule.template_name == "gpu_int4_gemm") return gpu_int4_gemm_traffic(workload, schedule);
  if (schedule.template_name == "gpu_int4_gemv_a8") return gpu_int4_gemv_a8_traffic(workload, schedule);
  if (schedule.template_name == "gpu_int4_gemv_a8_wave") return gpu_int4_gemv_a8_wave_traffic(workload, schedule);
  if (schedule.template_name == "gpu_int4_gemm_a8") return gpu_int4_gemm_a8_traffic(workload, schedule);
  if (schedule.template_name == "gpu_int4_gemv_h2") return gpu_int4_gemv_h2_traffic(workload, schedule);
  if (schedule.template_name == "gpu_int4_gemv_h2_wave") return gpu_int4_gemv_h2_wave_traffic(workload, schedule);
  if (schedule.template_name == "gpu_int4_gemm_h2") return gpu_int4_gemm_h2_traffic(workload, schedule);
  return {};
}

std::string gpu_default_qmatmul_template(const QMatMulWorkload& workload) {
  if (workload.int8_activations) return workload.M <= 8 ? "gpu_int4_gemv_a8" : "gpu_int4_gemm_a8";
  if (gpu_int4_gemv_h2_applies(workload)) return "gpu_int4_gemv_h2";
  if (gpu_int4_gemm_h2_applies(workload)) return "gpu_int4_gemm_h2";
  return workload.M <= 8 ? "gpu_int4_gemv" : "gpu_int4_gemm";
}

}  // namespace tetra::schedules
