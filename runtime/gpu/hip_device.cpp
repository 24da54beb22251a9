#include "runtime/gpu/hip_device.h"

#include <dlfcn.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <vector>

#include "runtime/gpu/pick_code_object.h"

namespace tetra::gpu {

namespace {

// The few HIP runtime types tetra uses (hip/hip_runtime_api.h), declared here so that no ROCm is needed.
using hipError_t = int;
using hipDeviceptr_t = void*;
using hipModule_t = void*;
using hipFunction_t = void*;
using hipStream_t = void*;
using hipEvent_t = void*;
// hipDeviceAttributeMultiprocessorCount: 63 in ROCm 5.2's hipDeviceAttribute_t and still 63 in ROCm 6,
// whose enum keeps its values (a removed attribute leaves an Unused entry in its place). RDNA in WGP mode
// counts work-group processors, two CUs each.
constexpr int kAttributeMultiprocessorCount = 63;
// hipDeviceProp_t changed in ROCm 6: 792 bytes with gcnArchName at 396 in ROCm 5.2, 1472 and 1160 in
// ROCm 6's hipDeviceProp_tR0600. ROCm 6 exports the plain hipGetDeviceProperties for the old layout, but
// which one a runtime fills is its choice, so tetra assumes neither: it hands over a zeroed buffer far
// larger than both and looks for the arch in it (target_id_in_properties). Both layouts begin with char
// name[256].
constexpr size_t kDevicePropBytes = 16384;

}  // namespace

// The entry points tetra calls, from the HIP runtime.
struct HipDevice::Api {
  void* library = nullptr;
  hipError_t (*hipInit)(unsigned) = nullptr;
  hipError_t (*hipRuntimeGetVersion)(int*) = nullptr;
  hipError_t (*hipGetDeviceCount)(int*) = nullptr;
  hipError_t (*hipGetDeviceProperties)(void*, int) = nullptr;
  hipError_t (*hipDeviceGetAttribute)(int*, int, int) = nullptr;
  hipError_t (*hipSetDevice)(int) = nullptr;
  hipError_t (*hipStreamCreate)(hipStream_t*) = nullptr;
  hipError_t (*hipStreamDestroy)(hipStream_t) = nullptr;
  hipError_t (*hipStreamSynchronize)(hipStream_t) = nullptr;
  hipError_t (*hipModuleLoadData)(hipModule_t*, const void*) = nullptr;
  hipError_t (*hipModuleUnload)(hipModule_t) = nullptr;
  hipError_t (*hipModuleGetFunction)(hipFunction_t*, hipModule_t, const char*) = nullptr;
  hipError_t (*hipMalloc)(void**, size_t) = nullptr;
  hipError_t (*hipFree)(void*) = nullptr;
  hipError_t (*hipMemcpyHtoD)(hipDeviceptr_t, const void*, size_t) = nullptr;
  hipError_t (*hipMemcpyDtoH)(void*, hipDeviceptr_t, size_t) = nullptr;
  hipError_t (*hipMemcpyDtoDAsync)(hipDeviceptr_t, hipDeviceptr_t, size_t, hipStream_t) = nullptr;
  hipError_t (*hipModuleLaunchKernel)(hipFunction_t, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                                      unsigned, hipStream_t, void**, void**) = nullptr;
  hipError_t (*hipEventCreate)(hipEvent_t*) = nullptr;
  hipError_t (*hipEventRecord)(hipEvent_t, hipStream_t) = nullptr;
  hipError_t (*hipEventSynchronize)(hipEvent_t) = nullptr;
  hipError_t (*hipEventElapsedTime)(float*, hipEvent_t, hipEvent_t) = nullptr;
  hipError_t (*hipEventDestroy)(hipEvent_t) = nullptr;
  const char* (*hipGetErrorString)(hipError_t) = nullptr;

  ~Api() {
    if (library) dlclose(library);
  }

  // "launching gemv_k0 failed: " and the runtime's words for the error, then its number.
  dsl::Failure failure(const std::string& what, hipError_t err) const {
    const char* error = hipGetErrorString ? hipGetErrorString(err) : nullptr;
    return dsl::Failure{dsl::FailureKind::Run, "hip",
                        what + " failed: " + (error ? error : "HIP error") + " (" + std::to_string(err) + ")"};
  }
};

dsl::Result<std::unique_ptr<HipDevice>> HipDevice::open() {
  auto missing = [](const std::string& why) { return dsl::Failure{dsl::FailureKind::Unsupported, "hip", why}; };
  std::unique_ptr<HipDevice> d(new HipDevice);
  d->api_ = std::make_unique<Api>();
  Api& api = *d->api_;
  // Debian installs the unversioned name only with libamdhip64-dev; the runtime itself is .so.5 or .so.6.
  for (const char* library : {"libamdhip64.so", "libamdhip64.so.6", "libamdhip64.so.5"})
    if (!api.library) api.library = dlopen(library, RTLD_NOW | RTLD_LOCAL);
  if (!api.library)
    return missing("no HIP runtime (libamdhip64.so, .so.6 or .so.5, which ROCm or Debian's libamdhip64-5 installs)");
#define TETRA_HIP_LOAD(name)                                                  \
  api.name = reinterpret_cast<decltype(api.name)>(dlsym(api.library, #name)); \
  if (!api.name) return missing("the HIP runtime has no " #name);
  TETRA_HIP_LOAD(hipInit)
  TETRA_HIP_LOAD(hipRuntimeGetVersion)
  TETRA_HIP_LOAD(hipGetDeviceCount)
  TETRA_HIP_LOAD(hipGetDeviceProperties)  // ROCm 6 keeps this name for the ROCm 5 layout
  TETRA_HIP_LOAD(hipDeviceGetAttribute)
  TETRA_HIP_LOAD(hipSetDevice)
  TETRA_HIP_LOAD(hipStreamCreate)
  TETRA_HIP_LOAD(hipStreamDestroy)
  TETRA_HIP_LOAD(hipStreamSynchronize)
  TETRA_HIP_LOAD(hipModuleLoadData)
  TETRA_HIP_LOAD(hipModuleUnload)
  TETRA_HIP_LOAD(hipModuleGetFunction)
  TETRA_HIP_LOAD(hipMalloc)
  TETRA_HIP_LOAD(hipFree)
  TETRA_HIP_LOAD(hipMemcpyHtoD)
  TETRA_HIP_LOAD(hipMemcpyDtoH)
  TETRA_HIP_LOAD(hipMemcpyDtoDAsync)
  TETRA_HIP_LOAD(hipModuleLaunchKernel)
  TETRA_HIP_LOAD(hipEventCreate)
  TETRA_HIP_LOAD(hipEventRecord)
  TETRA_HIP_LOAD(hipEventSynchronize)
  TETRA_HIP_LOAD(hipEventElapsedTime)
  TETRA_HIP_LOAD(hipEventDestroy)
  TETRA_HIP_LOAD(hipGetErrorString)
#undef TETRA_HIP_LOAD

  if (hipError_t err = api.hipInit(0); err != 0)
    return missing("no HIP device (" + api.failure("hipInit", err).message + ")");
  int count = 0;
  if (hipError_t err = api.hipGetDeviceCount(&count); err != 0)
    return missing("no HIP device (" + api.failure("hipGetDeviceCount", err).message + ")");
  if (count == 0) return missing("no HIP device (the HIP runtime found none)");
  if (hipError_t err = api.hipSetDevice(d->device_); err != 0) return api.failure("hipSetDevice", err);
  std::vector<char> props(kDevicePropBytes, '\0');
  if (hipError_t err = api.hipGetDeviceProperties(props.data(), d->device_); err != 0)
    return api.failure("hipGetDeviceProperties", err);
  d->arch_ = target_id_in_properties(props);
  if (d->arch_.empty())
    return dsl::Failure{dsl::FailureKind::Unsupported, "hip", "the HIP runtime reported no gfx arch for device 0"};
  std::string name(props.data(), strnlen(props.data(), kDevicePropertiesNameBytes - 1));
  int cus = 0, runtime = 0;
  api.hipDeviceGetAttribute(&cus, kAttributeMultiprocessorCount, d->device_);
  api.hipRuntimeGetVersion(&runtime);
  d->name_ = (name.empty() ? "AMD GPU" : name) + " (" + d->arch_ + ", " + std::to_string(cus) + " CUs, HIP runtime " +
             std::to_string(runtime) + ")";
  if (hipError_t err = api.hipStreamCreate(&d->stream_); err != 0) return api.failure("hipStreamCreate", err);
  return d;
}

HipDevice::~HipDevice() {
  if (!api_ || !api_->library || !stream_) return;
  for (auto& [name, ptr] : buffers_)
    if (!adopted_.count(name)) api_->hipFree(ptr);
  if (module_) api_->hipModuleUnload(module_);
  api_->hipStreamDestroy(stream_);
}

dsl::Status HipDevice::build(const std::string& code_object) {
  // An ELF code object, or a clang offload bundle of them; anything else (HIP source, say) is refused
  // here, by a message that says what it is not.
  auto starts_with = [&](const char* magic) { return code_object.compare(0, std::strlen(magic), magic) == 0; };
  if (!starts_with("\177ELF") && !starts_with("__CLANG_OFFLOAD_BUNDLE__"))
    return dsl::Failure{dsl::FailureKind::Compile, "hip", "the program is not an AMD code object (no ELF header)"};
  std::vector<char> image(code_object.begin(), code_object.end());
  hipModule_t module = nullptr;
  hipError_t err = api_->hipModuleLoadData(&module, image.data());
  if (err != 0)
    return dsl::Failure{dsl::FailureKind::Compile, "hip",
                        api_->failure("loading the code object", err).message + "; is it built for " + arch_ + "?"};
  functions_.clear();
  if (module_) api_->hipModuleUnload(module_);
  module_ = module;
  image_ = std::move(image);  // a vector's storage moves with it: the module's image stays where it was
  return dsl::ok_status();
}

dsl::Status HipDevice::allocate(const std::string& name, int64_t bytes) {
  void* ptr = nullptr;
  if (hipError_t err = api_->hipMalloc(&ptr, size_t(std::max<int64_t>(bytes, 1))); err != 0)
    return api_->failure("allocating " + std::to_string(bytes) + " bytes for " + name, err);
  auto it = buffers_.find(name);
  if (it != buffers_.end() && !adopted_.erase(name)) api_->hipFree(it->second);
  buffers_[name] = ptr;
  sizes_[name] = bytes;
  return dsl::ok_status();
}

dsl::Status HipDevice::adopt(const std::string& name, uint64_t address, int64_t bytes) {
  if (address == 0) return dsl::Failure{dsl::FailureKind::Run, "hip", "a null device address for " + name};
  auto it = buffers_.find(name);
  if (it != buffers_.end() && !adopted_.count(name)) api_->hipFree(it->second);
  buffers_[name] = reinterpret_cast<void*>(uintptr_t(address));
  sizes_[name] = bytes;
  adopted_.insert(name);
  return dsl::ok_status();
}

dsl::Status HipDevice::finish() {
  hipError_t err = api_->hipStreamSynchronize(stream_);
  return err == 0 ? dsl::ok_status() : dsl::Status(api_->failure("running the kernels", err));
}

dsl::Result<void*> HipDevice::buffer(const std::string& name, int64_t bytes) const {
  auto it = buffers_.find(name);
  if (it == buffers_.end() || sizes_.at(name) < bytes)
    return dsl::Failure{dsl::FailureKind::Run, "hip",
                        "no device buffer " + name + " of " + std::to_string(bytes) + " bytes"};
  return it->second;
}

dsl::Status HipDevice::write(const std::string& name, const void* data, int64_t bytes) {
  dsl::Result<void*> ptr = buffer(name, bytes);
  if (!ptr) return ptr.failure();
  if (hipError_t err = api_->hipStreamSynchronize(stream_); err != 0) return api_->failure("running the kernels", err);
  hipError_t err = api_->hipMemcpyHtoD(ptr.value(), data, size_t(bytes));
  return err == 0 ? dsl::ok_status() : dsl::Status(api_->failure("writing " + name, err));
}

dsl::Status HipDevice::read(const std::string& name, void* data, int64_t bytes) {
  dsl::Result<void*> ptr = buffer(name, bytes);
  if (!ptr) return ptr.failure();
  if (hipError_t err = api_->hipStreamSynchronize(stream_); err != 0) return api_->failure("running the kernels", err);
  hipError_t err = api_->hipMemcpyDtoH(data, ptr.value(), size_t(bytes));
  return err == 0 ? dsl::ok_status() : dsl::Status(api_->failure("reading " + name, err));
}

dsl::Status HipDevice::launch(const dsl::LaunchPlan& plan, const std::map<std::string, int64_t>& inputs) {
  if (!module_) return dsl::Failure{dsl::FailureKind::Run, plan.kernel, "no program was built"};
  hipFunction_t function = functions_[plan.kernel];
  if (!function) {
    if (hipError_t err = api_->hipModuleGetFunction(&function, module_, plan.kernel.c_str()); err != 0)
      return api_->failure("finding kernel " + plan.kernel, err);
    functions_[plan.kernel] = function;
  }
  KernelArguments args;
  dsl::Status packed = pack_kernel_arguments(
      plan, inputs,
      [&](const std::string& name) -> dsl::Result<uint64_t> {
        dsl::Result<void*> ptr = buffer(name, 0);
        if (!ptr) return ptr.failure();
        return uint64_t(uintptr_t(ptr.value()));
      },
      args);
  if (!packed.ok()) return packed;
  dsl::Result<dsl::LaunchGrid> grid = dsl::evaluate_grid(plan, inputs);
  if (!grid) return grid.failure();
  if (grid.value().empty()) return dsl::ok_status();
  const auto& b = grid.value().blocks;
  const auto& t = grid.value().threads;
  // No dynamic shared memory: the plan's shared_bytes are declared inside the kernel, in the code object.
  hipError_t err =
      api_->hipModuleLaunchKernel(function, unsigned(b[0]), unsigned(b[1]), unsigned(b[2]), unsigned(t[0]),
                                  unsigned(t[1]), unsigned(t[2]), 0, stream_, args.pointers.data(), nullptr);
  return err == 0 ? dsl::ok_status() : dsl::Status(api_->failure("launching " + plan.kernel, err));
}

dsl::Status HipDevice::copy(const std::string& from, const std::string& to, int64_t bytes) {
  dsl::Result<void*> src = buffer(from, bytes), dst = buffer(to, bytes);
  if (!src) return src.failure();
  if (!dst) return dst.failure();
  hipError_t err = api_->hipMemcpyDtoDAsync(dst.value(), src.value(), size_t(bytes), stream_);
  return err == 0 ? dsl::ok_status() : dsl::Status(api_->failure("copying " + from + " to " + to, err));
}

dsl::Result<double> HipDevice::time_runs(const std::function<dsl::Status()>& enqueue, int runs) {
  hipEvent_t start = nullptr, stop = nullptr;
  if (hipError_t err = api_->hipEventCreate(&start); err != 0) return api_->failure("hipEventCreate", err);
  if (hipError_t err = api_->hipEventCreate(&stop); err != 0) {
    api_->hipEventDestroy(start);
    return api_->failure("hipEventCreate", err);
  }
  struct Release {
    Api& api;
    hipEvent_t a, b;
    ~Release() {
      api.hipEventDestroy(a);
      api.hipEventDestroy(b);
    }
  } release{*api_, start, stop};
  if (hipError_t err = api_->hipEventRecord(start, stream_); err != 0) return api_->failure("hipEventRecord", err);
  for (int i = 0; i < runs; ++i)
    if (dsl::Status st = enqueue(); !st) return st.failure();
  if (hipError_t err = api_->hipEventRecord(stop, stream_); err != 0) return api_->failure("hipEventRecord", err);
  if (hipError_t err = api_->hipEventSynchronize(stop); err != 0) return api_->failure("running the kernels", err);
  float ms = 0;
  if (hipError_t err = api_->hipEventElapsedTime(&ms, start, stop); err != 0)
    return api_->failure("hipEventElapsedTime", err);
  return double(ms) / runs;
}

}  // namespace tetra::gpu
