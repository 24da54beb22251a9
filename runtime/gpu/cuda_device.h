// An NVIDIA GPU (runtime/gpu/device.h), reached through the CUDA driver API (libcuda.so.1, which the
// NVIDIA driver installs) opened with dlopen: no CUDA toolkit to build or to run. It runs PTX built from
// the CUDA dialect (dsl/gpu/code_object.h build_ptx); the driver compiles it for the device when the
// program is built. Launches go to one stream and are timed with CUDA events.
#pragma once
#include <map>
#include <memory>
#include <set>
#include <string>

#include "runtime/gpu/device.h"

namespace tetra::gpu {

class CudaDevice : public Device {
 public:
  // Device 0; a Failure says what was missing (the driver library, a device) or what the driver refused.
  static dsl::Result<std::unique_ptr<CudaDevice>> open();
  ~CudaDevice() override;
  CudaDevice(const CudaDevice&) = delete;
  CudaDevice& operator=(const CudaDevice&) = delete;

  std::string name() const override { return name_; }
  std::string arch() const override { return arch_; }
  dsl::Status build(const std::string& ptx) override;
  dsl::Status allocate(const std::string& name, int64_t bytes) override;
  dsl::Status write(const std::string& name, const void* data, int64_t bytes) override;
  dsl::Status read(const std::string& name, void* data, int64_t bytes) override;
  dsl::Status launch(const dsl::LaunchPlan& plan, const std::map<std::string, int64_t>& inputs) override;
  dsl::Status copy(const std::string& from, const std::string& to, int64_t bytes) override;
  dsl::Status finish() override;
  dsl::Status adopt(const std::string& name, uint64_t address, int64_t bytes) override;
  dsl::Result<double> time_runs(const std::function<dsl::Status()>& enqueue, int runs) override;

 private:
  CudaDevice() = default;
  dsl::Result<uint64_t> buffer(const std::string& name, int64_t bytes) const;  // a CUdeviceptr
  struct Api;
  // The driver's contexts are per thread, and a device may be called from any thread (a model library's
  // instance, say): each call makes the device's context current for its span, then the caller's again.
  class ContextScope;
  std::unique_ptr<Api> api_;
  int device_ = 0;
  void* context_ = nullptr;  // the device's primary context
  void* stream_ = nullptr;
  void* module_ = nullptr;
  std::map<std::string, void*> functions_;  // of the built module, by name
  std::map<std::string, uint64_t> buffers_;
  std::map<std::string, int64_t> sizes_;
  std::set<std::string> adopted_;  // buffers the caller owns: never freed here
  std::string name_, arch_;
};

}  // namespace tetra::gpu
