#include "runtime/gpu/device.h"

#include "runtime/gpu/cuda_device.h"
#include "runtime/gpu/hip_device.h"
#include "runtime/gpu/opencl_device.h"

namespace tetra::gpu {

dsl::Result<std::unique_ptr<Device>> open_device(const std::string& dialect) {
  if (dialect == "opencl") {
    auto d = OpenCLDevice::open();
    if (!d) return d.failure();
    return std::unique_ptr<Device>(std::move(d).value());
  }
  if (dialect == "cuda") {
    auto d = CudaDevice::open();
    if (!d) return d.failure();
    return std::unique_ptr<Device>(std::move(d).value());
  }
  if (dialect == "hip") {
    auto d = HipDevice::open();
    if (!d) return d.failure();
    return std::unique_ptr<Device>(std::move(d).value());
  }
  return dsl::Failure{dsl::FailureKind::Unsupported, dialect,
                      "no device runs the \"" + dialect + "\" dialect (opencl, cuda, hip)"};
}

}  // namespace tetra::gpu
