#include "schedules/gpu/templates.h"

#include "schedules/gpu/int4_gemm.h"
#include "schedules/gpu/int4_gemv.h"

namespace tetra::schedules {

const std::vector<QMatMulTemplate>& gpu_qmatmul_templates() {
  static const std::vector<QMatMulTemplate> templates = {
      {"gpu_int4_gemv", dsl::TargetFamily::Hip, false, gpu_int4_gemv_space, gpu_int4_gemv_default, gpu_int4_gemv_check,
       gpu_int4_gemv_layout, apply_gpu_int4_gemv},
      {"gpu_int4_gemm", dsl::TargetFamily::Hip, false, gpu_int4_gemm_space, gpu_int4_gemm_default, gpu_int4_gemm_check,
       gpu_int4_gemm_layout, apply_gpu_int4_gemm},
  };
  return templates;
}

std::string gpu_default_qmatmul_template(const QMatMulWorkload& workload) {
  if (workload.int8_activations) return "";
  return workload.M <= 8 ? "gpu_int4_gemv" : "gpu_int4_gemm";
}

}  // namespace tetra::schedules
