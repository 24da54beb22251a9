// A GPU reached through its vendor's driver, opened with dlopen: tetra needs no GPU SDK to build, and no
// GPU to run on the CPU. It runs emitted kernels (dsl/gpu/emit_kernel.h) by their launch plans
// (dsl/core/launch_plan.h), with no libHalide in the process (pocl's LLVM and libHalide's cannot share
// one). Three drivers: OpenCL (any OpenCL device, pocl on the CPU among them), CUDA (PTX) and HIP (AMD
// code objects).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dsl/core/launch_plan.h"
#include "dsl/core/result.h"

namespace tetra::gpu {

class Device {
 public:
  virtual ~Device() = default;

  // "NVIDIA H200 (sm_90, 132 SMs)", "cpu-skylake-avx512-AMD EPYC": the device and what sizes it.
  virtual std::string name() const = 0;
  // What code runs on it: "sm_90", an AMD target ID "gfx942:sramecc+:xnack-"; "" for an OpenCL device
  // (it builds OpenCL C itself).
  virtual std::string arch() const { return ""; }

  // Builds the program the launches run: OpenCL C source, PTX, or an AMD code object. The build log is in
  // the Failure.
  virtual dsl::Status build(const std::string& source) = 0;

  // A device buffer of `bytes`, named for launches; its contents are undefined until written.
  virtual dsl::Status allocate(const std::string& name, int64_t bytes) = 0;
  // write and read wait for the work enqueued before them.
  virtual dsl::Status write(const std::string& name, const void* data, int64_t bytes) = 0;
  virtual dsl::Status read(const std::string& name, void* data, int64_t bytes) = 0;

  // Enqueues the plan's kernel of the built program: buffers bound by name, scalar parameters and the
  // grid evaluated from `inputs`. An empty grid enqueues nothing.
  virtual dsl::Status launch(const dsl::LaunchPlan& plan, const std::map<std::string, int64_t>& inputs) = 0;
  // Enqueues a copy of `bytes` from one buffer to another.
  virtual dsl::Status copy(const std::string& from, const std::string& to, int64_t bytes) = 0;
  // Waits for everything enqueued.
  virtual dsl::Status finish() = 0;
  // Binds `name` to device memory its caller owns and frees (a hipDeviceptr_t or CUdeviceptr of at least
  // `bytes`) in place of a buffer of the device's own; allocating `name` again ends the binding. OpenCL
  // memory has no addresses to bind: Unsupported there.
  virtual dsl::Status adopt(const std::string& name, uint64_t address, int64_t bytes);

  // Milliseconds per run of `enqueue` over `runs` runs back to back, timed by the device's own events
  // where it has them (CUDA, HIP), else from the host around the runs and a wait for them.
  virtual dsl::Result<double> time_runs(const std::function<dsl::Status()>& enqueue, int runs) = 0;
};

// A launch's kernel arguments as cuLaunchKernel and hipModuleLaunchKernel take them: a pointer to each
// argument's value, which the driver reads for as many bytes as the kernel declares (a scalar's low
// bytes, little-endian; a buffer's device address). `pointers` point into `values`: not copyable.
struct KernelArguments {
  KernelArguments() = default;
  KernelArguments(const KernelArguments&) = delete;
  KernelArguments& operator=(const KernelArguments&) = delete;
  std::vector<uint64_t> values;
  std::vector<void*> pointers;
};
// Fills `args` with the plan's parameters: buffers by `address_of` their name, scalars evaluated from
// `inputs`.
dsl::Status pack_kernel_arguments(const dsl::LaunchPlan& plan, const std::map<std::string, int64_t>& inputs,
                                  const std::function<dsl::Result<uint64_t>(const std::string&)>& address_of,
                                  KernelArguments& args);

// The driver of a kernel dialect: "opencl", "cuda" or "hip". A Failure says what was missing (the driver
// library, a platform, a device) with FailureKind::Unsupported.
dsl::Result<std::unique_ptr<Device>> open_device(const std::string& dialect);

}  // namespace tetra::gpu
