#include "schedules/cpu/templates.h"

#include "schedules/cpu/int4_gemm.h"
#include "schedules/cpu/int4_gemv.h"
#include "schedules/cpu/int4_vnni.h"

namespace tetra::schedules {

const std::vector<QMatMulTemplate>& cpu_qmatmul_templates() {
  static const std::vector<QMatMulTemplate> templates = {
      {"cpu_int4_gemv", dsl::TargetFamily::Cpu, dsl::ActivationMode::Float32, cpu_int4_gemv_space,
       cpu_int4_gemv_default, cpu_int4_gemv_check, cpu_int4_gemv_layout, apply_cpu_int4_gemv},
      {"cpu_int4_gemm", dsl::TargetFamily::Cpu, dsl::ActivationMode::Float32, cpu_int4_gemm_space,
       cpu_int4_gemm_default, cpu_int4_gemm_check, cpu_int4_gemm_layout, apply_cpu_int4_gemm},
      {"cpu_int4_vnni", dsl::TargetFamily::Cpu, dsl::ActivationMode::Int8, cpu_int4_vnni_space, cpu_int4_vnni_default,
       cpu_int4_vnni_check, cpu_int4_vnni_layout, apply_cpu_int4_vnni},
  };
  return templates;
}

std::string cpu_default_qmatmul_template(const QMatMulWorkload& workload) {
  if (workload.int8_activations) return "cpu_int4_vnni";
  // GEMV while the weight stream dominates: each row costs a pass over the (cached) panel.
  // 4 rows is a guess: the crossover has not been measured yet.
  return workload.M <= 4 ? "cpu_int4_gemv" : "cpu_int4_gemm";
}

}  // namespace tetra::schedules
