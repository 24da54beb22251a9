#include "runtime/gpu/cuda_device.h"

#include <dlfcn.h>

#include <cstdint>
#include <vector>

namespace tetra::gpu {

namespace {

// The few CUDA driver API types tetra uses (cuda.h), declared here so that no CUDA toolkit is needed.
using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;
using CUcontext = void*;
using CUmodule = void*;
using CUfunction = void*;
using CUstream = void*;
using CUevent = void*;
constexpr int kAttributeMultiprocessorCount = 16;
constexpr int kAttributeComputeCapabilityMajor = 75;
constexpr int kAttributeComputeCapabilityMinor = 76;
constexpr int kJitErrorLogBuffer = 5;
constexpr int kJitErrorLogBufferSizeBytes = 6;

}  // namespace

// The entry points tetra calls, from libcuda.so.1 (the _v2 names are the current ABI of each).
struct CudaDevice::Api {
  void* library = nullptr;
  CUresult (*cuInit)(unsigned) = nullptr;
  CUresult (*cuDriverGetVersion)(int*) = nullptr;
  CUresult (*cuDeviceGetCount)(int*) = nullptr;
  CUresult (*cuDeviceGet)(CUdevice*, int) = nullptr;
  CUresult (*cuDeviceGetName)(char*, int, CUdevice) = nullptr;
  CUresult (*cuDeviceGetAttribute)(int*, int, CUdevice) = nullptr;
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext*, CUdevice) = nullptr;
  CUresult (*cuDevicePrimaryCtxRelease_v2)(CUdevice) = nullptr;
  CUresult (*cuCtxPushCurrent_v2)(CUcontext) = nullptr;
  CUresult (*cuCtxPopCurrent_v2)(CUcontext*) = nullptr;
  CUresult (*cuStreamCreate)(CUstream*, unsigned) = nullptr;
  CUresult (*cuStreamDestroy_v2)(CUstream) = nullptr;
  CUresult (*cuStreamSynchronize)(CUstream) = nullptr;
  CUresult (*cuModuleLoadDataEx)(CUmodule*, const void*, unsigned, int*, void**) = nullptr;
  CUresult (*cuModuleUnload)(CUmodule) = nullptr;
  CUresult (*cuModuleGetFunction)(CUfunction*, CUmodule, const char*) = nullptr;
  CUresult (*cuMemAlloc_v2)(CUdeviceptr*, size_t) = nullptr;
  CUresult (*cuMemFree_v2)(CUdeviceptr) = nullptr;
  CUresult (*cuMemcpyHtoD_v2)(CUdeviceptr, const void*, size_t) = nullptr;
  CUresult (*cuMemcpyDtoH_v2)(void*, CUdeviceptr, size_t) = nullptr;
  CUresult (*cuMemcpyDtoDAsync_v2)(CUdeviceptr, CUdeviceptr, size_t, CUstream) = nullptr;
  CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, CUstream,
                             void**, void**) = nullptr;
  CUresult (*cuEventCreate)(CUevent*, unsigned) = nullptr;
  CUresult (*cuEventRecord)(CUevent, CUstream) = nullptr;
  CUresult (*cuEventSynchronize)(CUevent) = nullptr;
  CUresult (*cuEventElapsedTime)(float*, CUevent, CUevent) = nullptr;
  CUresult (*cuEventDestroy_v2)(CUevent) = nullptr;
  CUresult (*cuGetErrorName)(CUresult, const char**) = nullptr;

  ~Api() {
    if (library) dlclose(library);
  }

  // "cuLaunchKernel failed: CUDA_ERROR_ILLEGAL_ADDRESS (700)"
  dsl::Failure failure(const std::string& what, CUresult err) const {
    const char* error = nullptr;
    if (cuGetErrorName) cuGetErrorName(err, &error);
    return dsl::Failure{dsl::FailureKind::Run, "cuda",
                        what + " failed: " + (error ? error : "CUDA error") + " (" + std::to_string(err) + ")"};
  }
};

class CudaDevice::ContextScope {
 public:
  explicit ContextScope(const CudaDevice& device)
      : api_(*device.api_), err_(api_.cuCtxPushCurrent_v2(device.context_)) {}
  ~ContextScope() {
    CUcontext popped = nullptr;
    if (err_ == 0) api_.cuCtxPopCurrent_v2(&popped);
  }
  ContextScope(const ContextScope&) = delete;
  ContextScope& operator=(const ContextScope&) = delete;
  dsl::Status status() const {
    return err_ == 0 ? dsl::ok_status() : dsl::Status(api_.failure("making the device's context current", err_));
  }

 private:
  Api& api_;
  CUresult err_;
};

dsl::Result<std::unique_ptr<CudaDevice>> CudaDevice::open() {
  auto missing = [](const std::string& why) { return dsl::Failure{dsl::FailureKind::Unsupported, "cuda", why}; };
  std::unique_ptr<CudaDevice> d(new CudaDevice);
  d->api_ = std::make_unique<Api>();
  Api& api = *d->api_;
  api.library = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!api.library) return missing("no CUDA driver (libcuda.so.1, which the NVIDIA driver installs)");
#define TETRA_CUDA_LOAD(name)                                                 \
  api.name = reinterpret_cast<decltype(api.name)>(dlsym(api.library, #name)); \
  if (!api.name) return missing("the CUDA driver has no " #name);
  TETRA_CUDA_LOAD(cuInit)
  TETRA_CUDA_LOAD(cuDriverGetVersion)
  TETRA_CUDA_LOAD(cuDeviceGetCount)
  TETRA_CUDA_LOAD(cuDeviceGet)
  TETRA_CUDA_LOAD(cuDeviceGetName)
  TETRA_CUDA_LOAD(cuDeviceGetAttribute)
  TETRA_CUDA_LOAD(cuDevicePrimaryCtxRetain)
  TETRA_CUDA_LOAD(cuDevicePrimaryCtxRelease_v2)
  TETRA_CUDA_LOAD(cuCtxPushCurrent_v2)
  TETRA_CUDA_LOAD(cuCtxPopCurrent_v2)
  TETRA_CUDA_LOAD(cuStreamCreate)
  TETRA_CUDA_LOAD(cuStreamDestroy_v2)
  TETRA_CUDA_LOAD(cuStreamSynchronize)
  TETRA_CUDA_LOAD(cuModuleLoadDataEx)
  TETRA_CUDA_LOAD(cuModuleUnload)
  TETRA_CUDA_LOAD(cuModuleGetFunction)
  TETRA_CUDA_LOAD(cuMemAlloc_v2)
  TETRA_CUDA_LOAD(cuMemFree_v2)
  TETRA_CUDA_LOAD(cuMemcpyHtoD_v2)
  TETRA_CUDA_LOAD(cuMemcpyDtoH_v2)
  TETRA_CUDA_LOAD(cuMemcpyDtoDAsync_v2)
  TETRA_CUDA_LOAD(cuLaunchKernel)
  TETRA_CUDA_LOAD(cuEventCreate)
  TETRA_CUDA_LOAD(cuEventRecord)
  TETRA_CUDA_LOAD(cuEventSynchronize)
  TETRA_CUDA_LOAD(cuEventElapsedTime)
  TETRA_CUDA_LOAD(cuEventDestroy_v2)
  TETRA_CUDA_LOAD(cuGetErrorName)
#undef TETRA_CUDA_LOAD

  if (CUresult err = api.cuInit(0); err != 0) return missing(api.failure("cuInit", err).message);
  int count = 0;
  if (api.cuDeviceGetCount(&count) != 0 || count == 0) return missing("no CUDA device");
  if (CUresult err = api.cuDeviceGet(&d->device_, 0); err != 0) return api.failure("cuDeviceGet", err);
  char name[256] = {0};
  api.cuDeviceGetName(name, sizeof name - 1, d->device_);
  int sms = 0, major = 0, minor = 0, driver = 0;
  api.cuDeviceGetAttribute(&sms, kAttributeMultiprocessorCount, d->device_);
  api.cuDeviceGetAttribute(&major, kAttributeComputeCapabilityMajor, d->device_);
  api.cuDeviceGetAttribute(&minor, kAttributeComputeCapabilityMinor, d->device_);
  api.cuDriverGetVersion(&driver);
  d->arch_ = "sm_" + std::to_string(major * 10 + minor);
  d->name_ = std::string(name) + " (" + d->arch_ + ", " + std::to_string(sms) + " SMs, CUDA driver " +
             std::to_string(driver / 1000) + "." + std::to_string(driver % 1000 / 10) + ")";
  CUcontext context = nullptr;
  if (CUresult err = api.cuDevicePrimaryCtxRetain(&context, d->device_); err != 0)
    return api.failure("cuDevicePrimaryCtxRetain", err);
  d->context_ = context;
  {
    ContextScope scope(*d);
    if (dsl::Status st = scope.status(); !st) return st.failure();
    if (CUresult err = api.cuStreamCreate(&d->stream_, 0); err != 0) return api.failure("cuStreamCreate", err);
  }
  return d;
}

CudaDevice::~CudaDevice() {
  if (!api_ || !api_->library || !context_) return;
  {
    ContextScope scope(*this);
    for (auto& [name, ptr] : buffers_)
      if (!adopted_.count(name)) api_->cuMemFree_v2(ptr);
    if (module_) api_->cuModuleUnload(module_);
    if (stream_) api_->cuStreamDestroy_v2(stream_);
  }
  api_->cuDevicePrimaryCtxRelease_v2(device_);
}

dsl::Status CudaDevice::build(const std::string& ptx) {
  ContextScope scope(*this);
  if (dsl::Status st = scope.status(); !st) return st;
  std::vector<char> log(16384, '\0');
  int options[] = {kJitErrorLogBuffer, kJitErrorLogBufferSizeBytes};
  void* values[] = {log.data(), reinterpret_cast<void*>(uintptr_t(log.size() - 1))};
  CUmodule module = nullptr;
  CUresult err = api_->cuModuleLoadDataEx(&module, ptx.c_str(), 2, options, values);
  if (err != 0)
    return dsl::Failure{dsl::FailureKind::Compile, "cuda",
                        api_->failure("loading the PTX", err).message + ":\n" + std::string(log.data())};
  functions_.clear();
  if (module_) api_->cuModuleUnload(module_);
  module_ = module;
  return dsl::ok_status();
}

dsl::Status CudaDevice::allocate(const std::string& name, int64_t bytes) {
  ContextScope scope(*this);
  if (dsl::Status st = scope.status(); !st) return st;
  CUdeviceptr ptr = 0;
  if (CUresult err = api_->cuMemAlloc_v2(&ptr, size_t(std::max<int64_t>(bytes, 1))); err != 0)
    return api_->failure("allocating " + std::to_string(bytes) + " bytes for " + name, err);
  auto it = buffers_.find(name);
  if (it != buffers_.end() && !adopted_.erase(name)) api_->cuMemFree_v2(it->second);
  buffers_[name] = ptr;
  sizes_[name] = bytes;
  return dsl::ok_status();
}

dsl::Status CudaDevice::adopt(const std::string& name, uint64_t address, int64_t bytes) {
  ContextScope scope(*this);
  if (dsl::Status st = scope.status(); !st) return st;
  if (address == 0) return dsl::Failure{dsl::FailureKind::Run, "cuda", "a null device address for " + name};
  auto it = buffers_.find(name);
  if (it != buffers_.end() && !adopted_.count(name)) api_->cuMemFree_v2(it->second);
  buffers_[name] = address;
  sizes_[name] = bytes;
  adopted_.insert(name);
  return dsl::ok_status();
}

dsl::Status CudaDevice::finish() {
  ContextScope scope(*this);
  if (dsl::Status st = scope.status(); !st) return st;
  CUresult err = api_->cuStreamSynchronize(stream_);
  return err == 0 ? dsl::ok_status() : dsl::Status(api_->failure("running the kernels", err));
}

dsl::Result<uint64_t> CudaDevice::buffer(const std::string& name, int64_t bytes) const {
  auto it = buffers_.find(name);
  if (it == buffers_.end() || sizes_.at(name) < bytes)
    return dsl::Failure{dsl::FailureKind::Run, "cuda",
                        "no device buffer " + name + " of " + std::to_string(bytes) + " bytes"};
  return uint64_t(it->second);
}

dsl::Status CudaDevice::write(const std::string& name, const void* data, int64_t bytes) {
  ContextScope scope(*this);
  if (dsl::Status st = scope.status(); !st) return st;
  dsl::Result<uint64_t> ptr = buffer(name, bytes);
  if (!ptr) return ptr.failure();
  if (CUresult err = api_->cuStreamSynchronize(stream_); err != 0) return api_->failure("running the kernels", err);
  CUresult err = api_->cuMemcpyHtoD_v2(ptr.value(), data, size_t(bytes));
  return err == 0 ? dsl::ok_status() : dsl::Status(api_->failure("writing " + name, err));
}

dsl::Status CudaDevice::read(const std::string& name, void* data, int64_t bytes) {
  ContextScope scope(*this);
  if (dsl::Status st = scope.status(); !st) return st;
  dsl::Result<uint64_t> ptr = buffer(name, bytes);
  if (!ptr) return ptr.failure();
  if (CUresult err = api_->cuStreamSynchronize(stream_); err != 0) return api_->failure("running the kernels", err);
  CUresult err = api_->cuMemcpyDtoH_v2(data, ptr.value(), size_t(bytes));
  return err == 0 ? dsl::ok_status() : dsl::Status(api_->failure("reading " + name, err));
}

dsl::Status CudaDevice::launch(const dsl::LaunchPlan& plan, const std::map<std::string, int64_t>& inputs) {
  ContextScope scope(*this);
  if (dsl::Status st = scope.status(); !st) return st;
  if (!module_) return dsl::Failure{dsl::FailureKind::Run, plan.kernel, "no program was built"};
  CUfunction function = functions_[plan.kernel];
  if (!function) {
    if (CUresult err = api_->cuModuleGetFunction(&function, module_, plan.kernel.c_str()); err != 0)
      return api_->failure("finding kernel " + plan.kernel, err);
    functions_[plan.kernel] = function;
  }
  KernelArguments args;
  dsl::Status packed = pack_kernel_arguments(
      plan, inputs, [&](const std::string& name) { return buffer(name, 0); }, args);
  if (!packed.ok()) return packed;
  dsl::Result<dsl::LaunchGrid> grid = dsl::evaluate_grid(plan, inputs);
  if (!grid) return grid.failure();
  if (grid.value().empty()) return dsl::ok_status();
  const auto& b = grid.value().blocks;
  const auto& t = grid.value().threads;
  CUresult err = api_->cuLaunchKernel(function, unsigned(b[0]), unsigned(b[1]), unsigned(b[2]), unsigned(t[0]),
                                      unsigned(t[1]), unsigned(t[2]), 0, stream_, args.pointers.data(), nullptr);
  return err == 0 ? dsl::ok_status() : dsl::Status(api_->failure("launching " + plan.kernel, err));
}

dsl::Status CudaDevice::copy(const std::string& from, const std::string& to, int64_t bytes) {
  ContextScope scope(*this);
  if (dsl::Status st = scope.status(); !st) return st;
  dsl::Result<uint64_t> src = buffer(from, bytes), dst = buffer(to, bytes);
  if (!src) return src.failure();
  if (!dst) return dst.failure();
  CUresult err = api_->cuMemcpyDtoDAsync_v2(dst.value(), src.value(), size_t(bytes), stream_);
  return err == 0 ? dsl::ok_status() : dsl::Status(api_->failure("copying " + from + " to " + to, err));
}

dsl::Result<double> CudaDevice::time_runs(const std::function<dsl::Status()>& enqueue, int runs) {
  ContextScope scope(*this);
  if (dsl::Status st = scope.status(); !st) return st.failure();
  CUevent start = nullptr, stop = nullptr;
  if (CUresult err = api_->cuEventCreate(&start, 0); err != 0) return api_->failure("cuEventCreate", err);
  if (CUresult err = api_->cuEventCreate(&stop, 0); err != 0) {
    api_->cuEventDestroy_v2(start);
    return api_->failure("cuEventCreate", err);
  }
  struct Release {
    Api& api;
    CUevent a, b;
    ~Release() {
      api.cuEventDestroy_v2(a);
      api.cuEventDestroy_v2(b);
    }
  } release{*api_, start, stop};
  if (CUresult err = api_->cuEventRecord(start, stream_); err != 0) return api_->failure("cuEventRecord", err);
  for (int i = 0; i < runs; ++i)
    if (dsl::Status st = enqueue(); !st) return st.failure();
  if (CUresult err = api_->cuEventRecord(stop, stream_); err != 0) return api_->failure("cuEventRecord", err);
  if (CUresult err = api_->cuEventSynchronize(stop); err != 0) return api_->failure("running the kernels", err);
  float ms = 0;
  if (CUresult err = api_->cuEventElapsedTime(&ms, start, stop); err != 0)
    return api_->failure("cuEventElapsedTime", err);
  return double(ms) / runs;
}

}  // namespace tetra::gpu
