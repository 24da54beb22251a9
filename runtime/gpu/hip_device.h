// An AMD GPU (runtime/gpu/device.h), reached through the HIP runtime (libamdhip64.so, which ROCm or
// Debian's libamdhip64-5 installs) opened with dlopen: no ROCm headers to build. It runs AMD code objects
// built from the HIP dialect (dsl/gpu/code_object.h build_hip_code_object), one per arch: the code object
// must be for the device's arch(). Launches go to one stream and are timed with HIP events.
#pragma once
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "runtime/gpu/device.h"

namespace tetra::gpu {

class HipDevice : public Device {
 public:
  // Device 0; a Failure says what was missing (the runtime library, a device) or what the runtime refused.
  static dsl::Result<std::unique_ptr<HipDevice>> open();
  ~HipDevice() override;
  HipDevice(const HipDevice&) = delete;
  HipDevice& operator=(const HipDevice&) = delete;

  // "AMD Instinct MI300X (gfx942:sramecc+:xnack-, 304 CUs, HIP runtime 60032830)"
  std::string name() const override { return name_; }
  // The device's target ID, "gfx942:sramecc+:xnack-": the processor, then the features it runs with.
  std::string arch() const override { return arch_; }

  dsl::Status build(const std::string& code_object) override;
  dsl::Status allocate(const std::string& name, int64_t bytes) override;
  dsl::Status write(const std::string& name, const void* data, int64_t bytes) override;
  dsl::Status read(const std::string& name, void* data, int64_t bytes) override;
  dsl::Status launch(const dsl::LaunchPlan& plan, const std::map<std::string, int64_t>& inputs) override;
  dsl::Status copy(const std::string& from, const std::string& to, int64_t bytes) override;
  dsl::Status finish() override;
  dsl::Status adopt(const std::string& name, uint64_t address, int64_t bytes) override;
  dsl::Result<double> time_runs(const std::function<dsl::Status()>& enqueue, int runs) override;

 private:
  HipDevice() = default;
  dsl::Result<void*> buffer(const std::string& name, int64_t bytes) const;  // a hipDeviceptr_t
  struct Api;
  std::unique_ptr<Api> api_;
  int device_ = 0;
  void* stream_ = nullptr;
  void* module_ = nullptr;
  std::vector<char> image_;  // the loaded code object: the runtime reads it in place while the module lives
  std::map<std::string, void*> functions_;  // of the loaded module, by name
  std::map<std::string, void*> buffers_;
  std::map<std::string, int64_t> sizes_;
  std::set<std::string> adopted_;  // buffers the caller owns: never freed here
  std::string arch_;
  std::string name_;
};

}  // namespace tetra::gpu
