// An OpenCL device, reached through the system's ICD loader (libOpenCL.so.1) opened with dlopen: tetra
// needs no OpenCL to build or to run on the CPU. It runs kernels emitted in the OpenCL dialect
// (dsl/gpu/emit_kernel.h) by their launch plans (dsl/core/launch_plan.h). No libHalide: pocl's LLVM
// and libHalide's cannot share a process.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dsl/core/launch_plan.h"
#include "dsl/core/result.h"

namespace tetra::gpu {

class OpenCLDevice {
 public:
  // The first GPU of the first platform that has one, else the first device; a Failure says what was
  // missing (the loader, a platform, a device).
  static dsl::Result<std::unique_ptr<OpenCLDevice>> open();
  ~OpenCLDevice();
  OpenCLDevice(const OpenCLDevice&) = delete;
  OpenCLDevice& operator=(const OpenCLDevice&) = delete;

  std::string name() const { return name_; }  // "pthread-skylake-avx512-AMD EPYC", "gfx90a"

  // Builds `source`; the build log is in the Failure.
  dsl::Status build(const std::string& source);

  // A device buffer of `bytes`, named for launches; its contents are undefined until written.
  dsl::Status allocate(const std::string& name, int64_t bytes);
  dsl::Status write(const std::string& name, const void* data, int64_t bytes);
  dsl::Status read(const std::string& name, void* data, int64_t bytes);

  // Launches the plan's kernel of the built program: buffers bound by name, scalar parameters and the
  // grid evaluated from `inputs`. Waits for it to finish.
  dsl::Status launch(const dsl::LaunchPlan& plan, const std::map<std::string, int64_t>& inputs);

 private:
  OpenCLDevice() = default;
  dsl::Result<void*> buffer(const std::string& name, int64_t bytes) const;  // a cl_mem of at least `bytes`
  struct Api;
  std::unique_ptr<Api> api_;
  void* context_ = nullptr;
  void* queue_ = nullptr;
  void* device_ = nullptr;
  void* program_ = nullptr;
  std::map<std::string, void*> buffers_;
  std::map<std::string, int64_t> sizes_;
  std::string name_;
};

}  // namespace tetra::gpu
