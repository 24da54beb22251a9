// Running captured GPU kernels in the tests: tetra-device (a process of its own, since pocl's LLVM and
// libHalide's cannot share one) runs a job of OpenCL source, launch plans and buffers on pocl.
#pragma once
#include <catch2/catch.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "dsl/process.h"

namespace tetra::gpu_test {

namespace fs = std::filesystem;

// A fresh folder for one test's files.
fs::path work_dir(const std::string& tag);

void write_bytes(const fs::path& path, const void* data, size_t bytes);

// A job entry for a dense Halide buffer, its bytes written to DIR/NAME.bin.
template <class B>
nlohmann::json buffer_entry(const fs::path& dir, const std::string& name, const B& b, const std::string& type) {
  nlohmann::json extents = nlohmann::json::array();
  int64_t stride = 1;
  for (int d = 0; d < b.dimensions(); ++d) {
    REQUIRE(b.dim(d).stride() == stride);  // tetra-device's buffers are dense
    REQUIRE(b.dim(d).min() == 0);
    extents.push_back(b.dim(d).extent());
    stride *= b.dim(d).extent();
  }
  fs::path file = dir / (name + ".bin");
  write_bytes(file, b.data(), b.size_in_bytes());
  return {{"type", type}, {"extents", extents}, {"file", file.string()}};
}

// Whether pocl can run here: it finds its CPU device through sysfs, and aborts without it (a bare chroot
// mounts no /sys). Everywhere else the OpenCL runs are required to work; where they cannot, a warning.
bool opencl_runs_here();

// Writes `job` to DIR/job.json and runs it with tetra-device.
dsl::ProgramRun run_job(const nlohmann::json& job, const fs::path& dir);

}  // namespace tetra::gpu_test
