#include "runtime/gpu/device.h"

#include "runtime/gpu/cuda_device.h"
#include "runtime/gpu/hip_device.h"
#include "runtime/gpu/opencl_device.h"

namespace tetra::gpu {

dsl::Status pack_kernel_arguments(const dsl::LaunchPlan& plan, const std::map<std::string, int64_t>& inputs,
                                  const std::function<dsl::Result<uint64_t>(const std::string&)>& address_of,
                                  KernelArguments& args) {
  args.values.assign(plan.params.size(), 0);
  args.pointers.assign(plan.params.size(), nullptr);
  for (size_t i = 0; i < plan.params.size(); ++i) {
    const dsl::KernelParam& p = plan.params[i];
    if (p.is_buffer) {
      dsl::Result<uint64_t> address = address_of(p.name);
      if (!address) return address.failure();
      args.values[i] = address.value();
    } else {
      dsl::Result<int64_t> v = dsl::evaluate(p.value, inputs);
      if (!v) return v.failure();
      args.values[i] = uint64_t(v.value());
    }
    args.pointers[i] = &args.values[i];
  }
  return dsl::ok_status();
}

dsl::Status Device::adopt(const std::string& name, uint64_t, int64_t) {
  return dsl::Failure{dsl::FailureKind::Unsupported, name,
                      "this device's memory has no addresses to bind: bind host memory instead"};
}

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
