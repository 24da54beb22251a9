// An OpenCL device (runtime/gpu/device.h), reached through the system's ICD loader (libOpenCL.so.1)
// opened with dlopen. It runs kernels emitted in the OpenCL dialect.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/gpu/device.h"

namespace tetra::gpu {

class OpenCLDevice : public Device {
 public:
  // The first GPU of the first platform that has one, else the first device; a Failure says what was
  // missing (the loader, a platform, a device).
  static dsl::Result<std::unique_ptr<OpenCLDevice>> open();
  ~OpenCLDevice() override;
  OpenCLDevice(const OpenCLDevice&) = delete;
  OpenCLDevice& operator=(const OpenCLDevice&) = delete;

  std::string name() const override { return name_; }
  dsl::Status build(const std::string& source) override;
  dsl::Status allocate(const std::string& name, int64_t bytes) override;
  dsl::Status write(const std::string& name, const void* data, int64_t bytes) override;
  dsl::Status read(const std::string& name, void* data, int64_t bytes) override;
  dsl::Status launch(const dsl::LaunchPlan& plan, const std::map<std::string, int64_t>& inputs) override;
  dsl::Status copy(const std::string& from, const std::string& to, int64_t bytes) override;
  dsl::Status finish() override;
  dsl::Result<double> time_runs(const std::function<dsl::Status()>& enqueue, int runs) override;

 private:
  OpenCLDevice() = default;
  dsl::Result<void*> buffer(const std::string& name, int64_t bytes) const;  // a cl_mem of at least `bytes`
  struct Api;
  std::unique_ptr<Api> api_;
  void* context_ = nullptr;
  void* queue_ = nullptr;
  void* device_ = nullptr;
  void* program_ = nullptr;
  std::map<std::string, void*> kernels_;  // of the built program, by name
  std::map<std::string, void*> buffers_;
  std::map<std::string, int64_t> sizes_;
  std::string name_;
};

}  // namespace tetra::gpu
