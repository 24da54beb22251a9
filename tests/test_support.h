// Helpers shared by the tests: random data (never zeros), temporary folders, running the CLI.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "importer/tensor.h"
#include "tools/model_builder.h"

namespace tetra::test {

// A deterministic generator per test case; seeds differ between tests but not between runs.
std::mt19937& rng();
// Uniform values in [lo, hi], guaranteed not all equal.
Tensor random_tensor(DType dtype, const Shape& shape, double lo = -1.0, double hi = 1.0);
// ||a - b|| / ||b|| over every element.
double relative_l2(const Tensor& a, const Tensor& b);
// A fresh empty folder under the build tree, removed when the test binary exits
// (kept when TETRA_KEEP_TEST_FILES is set, for debugging).
std::string temp_dir(const std::string& tag);
// Runs a shell command, returns its exit code; stdout+stderr are captured into `output`.
int run_command(const std::string& command, std::string* output = nullptr);
// Path of the built CLI, of tetra-device (which runs GPU jobs) and of the source tree.
std::string tetra_cli();
std::string tetra_device_program();
// Whether pocl can run here: it finds its CPU device through sysfs and aborts without it (a bare chroot
// mounts no /sys). When not, says so (a Catch warning naming `skipped`).
bool opencl_runs_here(const std::string& skipped);
std::string source_dir();
// The environment, as a shell command's prefix, under which tetra opens the stand-in HIP runtime
// (tests/fake_gpu/fake_amdhip64.cpp) as a device of target ID `arch`, or the stand-in CUDA driver
// (fake_cuda.cpp) as a device of SM version `sm` (90), which appends its report to `log` when a process
// unloads it; `settings` adds more ("TETRA_FAKE_HIP_FAIL_LAUNCH=3").
std::string hip_stand_in(const std::string& arch, const std::string& log, const std::string& settings = "");
std::string cuda_stand_in(int sm, const std::string& log, const std::string& settings = "");
// A stand-in's reports in `log`, one a process that unloaded it, in order.
std::vector<nlohmann::json> stand_in_reports(const std::string& log);
// Checks each report in `log`: the stand-in refused no call, and each process left nothing allocated or
// loaded.
void check_stand_in_reports(const std::string& log);
// The CPU targets to run kernels for, as ExecutorOptions::target: "" (this machine) and, where this
// machine has AVX-512, x86-64-avx2 too, whose register tiles are sized for 16 registers instead of 32.
std::vector<std::string> cpu_targets_here();
// Max |a - b| > atol + rtol*|b| anywhere? Returns a description of the worst element, "" if close.
std::string compare_tensors(const Tensor& got, const Tensor& expected, double atol, double rtol);
// Adds one `op` node to `b`: input 0 is the graph input "x", the others initializers ("" where
// empty), the output "y" of input 0's type. Returns the node's input names.
std::vector<std::string> add_single_node(ModelBuilder& b, const std::string& op, const std::vector<Attr>& attrs,
                                         const std::vector<Tensor>& in);

}  // namespace tetra::test
