// The GPU family's QMatMul templates (AMD through HIP, and the same kernels in the OpenCL and CUDA
// dialects), its default choice and its knob vocabulary; each template's knobs are declared in its own
// file (int4_gemv.h). schedules/qmatmul_templates.h joins the families' tables.
#pragma once
#include <string>
#include <vector>

#include "dsl/core/gpu_estimate.h"
#include "schedules/qmatmul_templates.h"

namespace tetra::schedules {

const std::vector<QMatMulTemplate>& gpu_qmatmul_templates();

// The GPU template a workload starts from: the decode GEMV for M <= 8, else the GEMM, each in its float32
// int8-activation form, or for float16 activations the float16 GEMV where it applies.
std::string gpu_default_qmatmul_template(const QMatMulWorkload& workload);

// The traffic of `schedule`'s kernels for `workload`, summed, for dsl/core/gpu_estimate.h; each template
// models its own (int4_gemv.h, int4_gemm.h).
dsl::KernelTraffic gpu_qmatmul_traffic(const QMatMulWorkload& workload, const Schedule& schedule);

// A template's workgroup-memory stage of `bytes` a block, within what every dialect can declare: CUDA's
// 48 KiB of static shared memory, below every AMD arch's 64 KiB. Else a KnobConflict naming `knob` and
// `what` is staged.
dsl::Status check_staged_bytes(int64_t bytes, const std::string& knob, const std::string& what);

// The SIMDs of the target arch's reference GPU (dsl/core/gpu_estimate.h), which defaults size their grids
// for; 256 for a target with none (OpenCL, CUDA).
int64_t reference_simds(const TargetSpec& target);
// Whether a grid crowds that GPU's CUs: a block's waves all run on one CU (a WGP on RDNA), on its 4 SIMDs,
// so where the blocks are fewer than the CUs and have more waves than that, the extra waves wait while
// other CUs idle. Smaller blocks, more of them, are the remedy. (A target with no reference GPU counts 64
// CUs of 4 SIMDs.)
bool crowds_cus(const TargetSpec& target, int64_t blocks, int64_t threads_per_block);

// Threads per wave on `target`: its wavefront, 64 where the target does not say.
inline int64_t wave_of(const TargetSpec& target) { return target.wavefront > 0 ? target.wavefront : 64; }

// The bytes of a workload's packed weight: the codes (two a byte), the scales and the zero points.
double gpu_weight_bytes(const QMatMulWorkload& workload);

// A GEMV's or GEMM's global traffic when the packed weight is read `weight_reads` times (once per row
// tile of blocks) and A `a_reads` times (once per column tile): each once from memory, the rest as
// re-reads a cache may serve, and the output written once.
dsl::KernelTraffic gpu_qmatmul_reads(const QMatMulWorkload& workload, double weight_reads, double a_reads);

}  // namespace tetra::schedules
