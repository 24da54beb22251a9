// The CPU family's QMatMul templates (x86 and Arm), its default choice among them, and its knob
// vocabulary: each template's knobs are declared in its own file (int4_gemv.h, int4_gemm.h,
// int4_vnni.h). schedules/qmatmul_templates.h joins the families' tables; a new family (schedules/gpu/)
// adds a folder with a table and a default of its own.
#pragma once
#include <string>
#include <vector>

#include "schedules/qmatmul_templates.h"

namespace tetra::schedules {

const std::vector<QMatMulTemplate>& cpu_qmatmul_templates();

// The CPU template a workload starts from: cpu_int4_vnni for int8 activations, else cpu_int4_gemv for
// few rows and cpu_int4_gemm otherwise.
std::string cpu_default_qmatmul_template(const QMatMulWorkload& workload);

}  // namespace tetra::schedules
