// The GPU family's QMatMul templates (AMD through HIP, and the same kernels in the OpenCL and CUDA
// dialects), its default choice and its knob vocabulary; each template's knobs are declared in its own
// file (int4_gemv.h). schedules/qmatmul_templates.h joins the families' tables.
#pragma once
#include <string>
#include <vector>

#include "schedules/qmatmul_templates.h"

namespace tetra::schedules {

const std::vector<QMatMulTemplate>& gpu_qmatmul_templates();

// The GPU template a workload starts from: the decode GEMV for M <= 8, else the GEMM; "" for int8
// activations, which the GPU templates do not take yet.
std::string gpu_default_qmatmul_template(const QMatMulWorkload& workload);

}  // namespace tetra::schedules
