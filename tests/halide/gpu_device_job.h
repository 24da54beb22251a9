// Running captured GPU kernels in the tests: tetra-device (a process of its own, since pocl's LLVM and
// libHalide's cannot share one) runs a job of kernel source, launch plans, buffers and checks
// (tools/device_main.cpp). The tests run OpenCL jobs on pocl; the same jobs, built as PTX, are the GPU
// check bundle that scripts/gpu-check.sh runs on an NVIDIA GPU (test_gpu_bundle.cpp).
#pragma once
#include <catch2/catch.hpp>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dsl/gpu/capture_kernels.h"
#include "dsl/gpu/emit_kernel.h"
#include "dsl/gpu/launch_plan_of.h"
#include "dsl/process.h"

namespace tetra::gpu_test {

namespace fs = std::filesystem;

// A fresh folder for one test's files.
fs::path work_dir(const std::string& tag);

void write_bytes(const fs::path& path, const void* data, size_t bytes);

// A job entry for a Halide buffer (dense, or strided as a padded weight is), its bytes written to
// DIR/NAME.bin (named relative to DIR, the job's folder).
template <class B>
nlohmann::json buffer_entry(const fs::path& dir, const std::string& name, const B& b) {
  int64_t bytes = 0;
  dsl::Result<nlohmann::json> entry = dsl::gpu::job_buffer_entry(name, *b.raw_buffer(), &bytes);
  REQUIRE(entry.ok());
  write_bytes(dir / (name + ".bin"), b.data(), size_t(bytes));
  nlohmann::json e = entry.value();
  e["file"] = name + ".bin";
  return e;
}

// A check of float32 buffer `name` against `want` within `tolerance`, their files written to DIR.
nlohmann::json check_entry(const fs::path& dir, const std::string& name, const std::vector<float>& want,
                           const std::vector<float>& tolerance);

// Where the jobs' kernels run: OpenCL C for pocl here, or PTX for an NVIDIA GPU of arch `sm`.
struct JobDialect {
  dsl::gpu::Dialect dialect = dsl::gpu::Dialect::OpenCL;
  std::string sm = "sm_90";
};

// Emits `kernels` in the dialect (after `edit`, for tests that break them) into DIR, and starts their job:
// the source, the launch plans, the dialect.
nlohmann::json kernel_job(const std::vector<dsl::gpu::DeviceKernel>& kernels, const JobDialect& dialect,
                          const fs::path& dir, const std::function<std::string(std::string)>& edit = nullptr);

// Whether pocl can run here: it finds its CPU device through sysfs, and aborts without it (a bare chroot
// mounts no /sys). Everywhere else the OpenCL runs are required to work; where they cannot, a warning.
bool opencl_runs_here();

// OpenCL C `source` with every workgroup barrier removed, counted in *removed: a kernel that must then
// fail its check shows that its barriers matter.
std::string remove_opencl_barriers(std::string source, int* removed);

// Writes `job` to DIR/job.json and runs it with tetra-device.
dsl::ProgramRun run_job(const nlohmann::json& job, const fs::path& dir);

// Writes `job` to DIR/job.json and runs it with tetra-device on Oclgrind (tests/oclgrind.h).
dsl::ProgramRun run_job_on_oclgrind(const nlohmann::json& job, const fs::path& dir);

}  // namespace tetra::gpu_test
