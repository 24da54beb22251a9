// Device jobs (tests/halide/gpu_device_job.h) for the GPU templates: a QMatMul or QConv workload at a
// knob point, captured and emitted in a dialect, on fresh random data, with the plain-loop reference as
// the job's check. The OpenCL tests run them on pocl; the GPU check bundle writes them for a GPU.
#pragma once
#include <random>

#include "dsl/schedule.h"
#include "dsl/target.h"
#include "tests/halide/gpu_device_job.h"
#include "tests/halide/qconv_cases.h"
#include "tests/halide/qmatmul_reference.h"

namespace tetra::gpu_test {

// The kernels of `schedule` for `workload`, captured (a Failure ends the test).
dsl::gpu::CapturedPipeline capture_qmatmul(const dsl::QMatMulWorkload& workload, const dsl::Schedule& schedule,
                                           const dsl::TargetSpec& target);

// A QMatMul workload of a fresh weight of `spec`; with `bias_relu`, a bias and ReLU in its output stage.
dsl::QMatMulWorkload qmatmul_workload_of(const test::WeightSpec& spec, int64_t M, int64_t K, int64_t N,
                                         bool bias_relu = false);

// A job for `schedule` on `workload` in DIR: fresh random weight of `spec` (seed) and A, and with a bias
// in the workload Y = act(0.75 A W + 1.25 bias); the output "qmatmul" written to Y.bin and checked.
nlohmann::json qmatmul_job(const dsl::QMatMulWorkload& workload, const dsl::Schedule& schedule,
                           const dsl::gpu::CapturedPipeline& captured, const test::WeightSpec& spec, uint64_t seed,
                           const fs::path& dir, const JobDialect& dialect,
                           const std::function<std::string(std::string)>& edit = nullptr);

// A job for the conv case at `schedule` (checked and applied for `target`) in DIR: fresh random data from `rng`, the
// output "qconv" written to Y.bin and checked against conv_reference; the source after `edit`, when given.
nlohmann::json qconv_job(const qconv_test::Case& c, const QuantizedWeight& w, const dsl::QConvWorkload& workload,
                         const dsl::Schedule& schedule, const dsl::TargetSpec& target, std::mt19937_64& rng,
                         const fs::path& dir, const JobDialect& dialect,
                         const std::function<std::string(std::string)>& edit = nullptr);

}  // namespace tetra::gpu_test
