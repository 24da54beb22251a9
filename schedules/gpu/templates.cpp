#include "schedules/gpu/templates.h"

#include "schedules/gpu/int4_gemv.h"

namespace tetra::schedules {

const std::vector<QMatMulTemplate>& gpu_qmatmul_templates() {
  static const std::vector<QMatMulTemplate> templates = {
      {"gpu_int4_gemv", dsl::TargetFamily::Hip, false, gpu_int4_gemv_space, gpu_int4_gemv_default, gpu_int4_gemv_check,
       gpu_int4_gemv_layout, apply_gpu_int4_gemv},
  };
  return templates;
}

std::string gpu_default_qmatmul_template(const QMatMulWorkload& workload) {
  return workload.M <= 8 && !workload.int8_activations ? "gpu_int4_gemv" : "";
}

}  // namespace tetra::schedules
