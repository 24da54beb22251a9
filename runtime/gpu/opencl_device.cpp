#include "runtime/gpu/opencl_device.h"

#include <dlfcn.h>

#include <chrono>
#include <filesystem>

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

namespace tetra::gpu {

namespace {

dsl::Failure cl_failure(const std::string& what, cl_int err) {
  return dsl::Failure{dsl::FailureKind::Run, "opencl", what + " failed (OpenCL error " + std::to_string(err) + ")"};
}

}  // namespace

// The entry points tetra calls, from the loader.
struct OpenCLDevice::Api {
  void* library = nullptr;
#define TETRA_CL_FUNCTIONS(X)                                                                                    \
  X(clGetPlatformIDs)                                                                                            \
  X(clGetDeviceIDs)                                                                                              \
  X(clGetDeviceInfo) X(clCreateContext) X(clCreateCommandQueue) X(clCreateProgramWithSource) X(clBuildProgram)   \
      X(clGetProgramBuildInfo) X(clCreateKernel) X(clSetKernelArg) X(clCreateBuffer) X(clEnqueueWriteBuffer)     \
          X(clEnqueueReadBuffer) X(clEnqueueNDRangeKernel) X(clFinish) X(clReleaseKernel) X(clEnqueueCopyBuffer) \
              X(clReleaseProgram) X(clReleaseMemObject) X(clReleaseCommandQueue) X(clReleaseContext)
#define TETRA_CL_POINTER(name) decltype(&::name) name = nullptr;
  TETRA_CL_FUNCTIONS(TETRA_CL_POINTER)
#undef TETRA_CL_POINTER

  ~Api() {
    if (library) dlclose(library);
  }
};

dsl::Result<std::unique_ptr<OpenCLDevice>> OpenCLDevice::open() {
  auto missing = [](const std::string& why) { return dsl::Failure{dsl::FailureKind::Unsupported, "opencl", why}; };
  // Drivers enumerate their devices through sysfs, and pocl aborts the process without it (a chroot
  // that mounts no /sys): refused before any driver is loaded, since a model library runs in its
  // application's process.
  if (!std::filesystem::exists("/sys/devices/system/cpu"))
    return missing("no /sys/devices/system/cpu: OpenCL drivers cannot enumerate devices here (is /sys mounted?)");
  std::unique_ptr<OpenCLDevice> d(new OpenCLDevice);
  d->api_ = std::make_unique<Api>();
  Api& api = *d->api_;
  api.library = dlopen("libOpenCL.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!api.library)
    return missing(
        "no OpenCL loader (libOpenCL.so.1; Debian: ocl-icd-libopencl1 and a driver such as pocl-opencl-icd)");
#define TETRA_CL_LOAD(name)                                                   \
  api.name = reinterpret_cast<decltype(api.name)>(dlsym(api.library, #name)); \
  if (!api.name) return missing("the OpenCL loader has no " #name);
  TETRA_CL_FUNCTIONS(TETRA_CL_LOAD)
#undef TETRA_CL_LOAD

  cl_uint platforms = 0;
  if (api.clGetPlatformIDs(0, nullptr, &platforms) != CL_SUCCESS || platforms == 0)
    return missing("no OpenCL platform");
  std::vector<cl_platform_id> ids(platforms);
  api.clGetPlatformIDs(platforms, ids.data(), nullptr);
  cl_device_id device = nullptr;
  for (cl_device_type type : {cl_device_type(CL_DEVICE_TYPE_GPU), cl_device_type(CL_DEVICE_TYPE_ALL)}) {
    for (cl_platform_id p : ids)
      if (api.clGetDeviceIDs(p, type, 1, &device, nullptr) == CL_SUCCESS && device) break;
    if (device) break;
  }
  if (!device) return missing("no OpenCL device");
  char name[256] = {0};
  api.clGetDeviceInfo(device, CL_DEVICE_NAME, sizeof name - 1, name, nullptr);
  d->name_ = name;
  cl_int err = CL_SUCCESS;
  cl_context context = api.clCreateContext(nullptr, 1, &device, nullptr, nullptr, &err);
  if (err != CL_SUCCESS) return cl_failure("clCreateContext", err);
  d->context_ = context;
  d->device_ = device;
  d->queue_ = api.clCreateCommandQueue(context, device, 0, &err);
  if (err != CL_SUCCESS) return cl_failure("clCreateCommandQueue", err);
  return d;
}

OpenCLDevice::~OpenCLDevice() {
  if (!api_ || !api_->library) return;
  for (auto& [name, mem] : buffers_) api_->clReleaseMemObject(static_cast<cl_mem>(mem));
  for (auto& [name, kernel] : kernels_) api_->clReleaseKernel(static_cast<cl_kernel>(kernel));
  if (program_) api_->clReleaseProgram(static_cast<cl_program>(program_));
  if (queue_) api_->clReleaseCommandQueue(static_cast<cl_command_queue>(queue_));
  if (context_) api_->clReleaseContext(static_cast<cl_context>(context_));
}

dsl::Status OpenCLDevice::build(const std::string& source) {
  const char* text = source.c_str();
  size_t length = source.size();
  cl_int err = CL_SUCCESS;
  cl_program program = api_->clCreateProgramWithSource(static_cast<cl_context>(context_), 1, &text, &length, &err);
  if (err != CL_SUCCESS) return cl_failure("clCreateProgramWithSource", err);
  for (auto& [name, kernel] : kernels_) api_->clReleaseKernel(static_cast<cl_kernel>(kernel));
  kernels_.clear();
  if (program_) api_->clReleaseProgram(static_cast<cl_program>(program_));
  program_ = program;
  cl_device_id device = static_cast<cl_device_id>(device_);
  err = api_->clBuildProgram(program, 1, &device, "-cl-std=CL1.2", nullptr, nullptr);
  if (err != CL_SUCCESS) {
    size_t size = 0;
    api_->clGetProgramBuildInfo(program, device, CL_PROGRAM_BUILD_LOG, 0, nullptr, &size);
    std::string log(size, '\0');
    api_->clGetProgramBuildInfo(program, device, CL_PROGRAM_BUILD_LOG, size, log.data(), nullptr);
    return dsl::Failure{dsl::FailureKind::Compile, "opencl", "the kernels do not build:\n" + log};
  }
  return dsl::ok_status();
}

dsl::Status OpenCLDevice::allocate(const std::string& name, int64_t bytes) {
  cl_int err = CL_SUCCESS;
  cl_mem mem = api_->clCreateBuffer(static_cast<cl_context>(context_), CL_MEM_READ_WRITE,
                                    size_t(std::max<int64_t>(bytes, 1)), nullptr, &err);
  if (err != CL_SUCCESS) return cl_failure("allocating " + std::to_string(bytes) + " bytes for " + name, err);
  auto it = buffers_.find(name);
  if (it != buffers_.end()) api_->clReleaseMemObject(static_cast<cl_mem>(it->second));
  buffers_[name] = mem;
  sizes_[name] = bytes;
  return dsl::ok_status();
}

dsl::Result<void*> OpenCLDevice::buffer(const std::string& name, int64_t bytes) const {
  auto it = buffers_.find(name);
  if (it == buffers_.end() || sizes_.at(name) < bytes)
    return dsl::Failure{dsl::FailureKind::Run, "opencl",
                        "no device buffer " + name + " of " + std::to_string(bytes) + " bytes"};
  return it->second;
}

dsl::Status OpenCLDevice::write(const std::string& name, const void* data, int64_t bytes) {
  dsl::Result<void*> mem = buffer(name, bytes);
  if (!mem) return mem.failure();
  cl_int err = api_->clEnqueueWriteBuffer(static_cast<cl_command_queue>(queue_), static_cast<cl_mem>(mem.value()),
                                          CL_TRUE, 0, size_t(bytes), data, 0, nullptr, nullptr);
  return err == CL_SUCCESS ? dsl::ok_status() : dsl::Status(cl_failure("writing " + name, err));
}

dsl::Status OpenCLDevice::read(const std::string& name, void* data, int64_t bytes) {
  dsl::Result<void*> mem = buffer(name, bytes);
  if (!mem) return mem.failure();
  cl_int err = api_->clEnqueueReadBuffer(static_cast<cl_command_queue>(queue_), static_cast<cl_mem>(mem.value()),
                                         CL_TRUE, 0, size_t(bytes), data, 0, nullptr, nullptr);
  return err == CL_SUCCESS ? dsl::ok_status() : dsl::Status(cl_failure("reading " + name, err));
}

dsl::Status OpenCLDevice::launch(const dsl::LaunchPlan& plan, const std::map<std::string, int64_t>& inputs) {
  if (!program_) return dsl::Failure{dsl::FailureKind::Run, plan.kernel, "no program was built"};
  cl_int err = CL_SUCCESS;
  cl_kernel kernel = static_cast<cl_kernel>(kernels_[plan.kernel]);
  if (!kernel) {
    kernel = api_->clCreateKernel(static_cast<cl_program>(program_), plan.kernel.c_str(), &err);
    if (err != CL_SUCCESS) return cl_failure("finding kernel " + plan.kernel, err);
    kernels_[plan.kernel] = kernel;
  }
  for (size_t i = 0; i < plan.params.size(); ++i) {
    const dsl::KernelParam& p = plan.params[i];
    if (p.is_buffer) {
      dsl::Result<void*> found = buffer(p.name, 0);
      if (!found) return found.failure();
      cl_mem mem = static_cast<cl_mem>(found.value());
      err = api_->clSetKernelArg(kernel, cl_uint(i), sizeof mem, &mem);
    } else {
      dsl::Result<int64_t> v = dsl::evaluate(p.value, inputs);
      if (!v) return v.failure();
      // A scalar goes by its own width; a float input carries its bits in the low 32.
      int64_t value = v.value();
      err = api_->clSetKernelArg(kernel, cl_uint(i), size_t(p.bytes()), &value);  // little-endian: the low bytes
    }
    if (err != CL_SUCCESS) return cl_failure("setting parameter " + p.name + " of " + plan.kernel, err);
  }
  dsl::Result<dsl::LaunchGrid> grid = dsl::evaluate_grid(plan, inputs);
  if (!grid) return grid.failure();
  if (grid.value().empty()) return dsl::ok_status();
  size_t global[3], local[3];
  for (size_t i = 0; i < 3; ++i) {
    local[i] = size_t(grid.value().threads[i]);
    global[i] = size_t(grid.value().blocks[i] * grid.value().threads[i]);
  }
  err = api_->clEnqueueNDRangeKernel(static_cast<cl_command_queue>(queue_), kernel, 3, nullptr, global, local, 0,
                                     nullptr, nullptr);
  return err == CL_SUCCESS ? dsl::ok_status() : dsl::Status(cl_failure("launching " + plan.kernel, err));
}

dsl::Status OpenCLDevice::copy(const std::string& from, const std::string& to, int64_t bytes) {
  dsl::Result<void*> src = buffer(from, bytes), dst = buffer(to, bytes);
  if (!src) return src.failure();
  if (!dst) return dst.failure();
  cl_int err = api_->clEnqueueCopyBuffer(static_cast<cl_command_queue>(queue_), static_cast<cl_mem>(src.value()),
                                         static_cast<cl_mem>(dst.value()), 0, 0, size_t(bytes), 0, nullptr, nullptr);
  return err == CL_SUCCESS ? dsl::ok_status() : dsl::Status(cl_failure("copying " + from + " to " + to, err));
}

dsl::Status OpenCLDevice::finish() {
  cl_int err = api_->clFinish(static_cast<cl_command_queue>(queue_));
  return err == CL_SUCCESS ? dsl::ok_status() : dsl::Status(cl_failure("running the enqueued work", err));
}

dsl::Result<double> OpenCLDevice::time_runs(const std::function<dsl::Status()>& enqueue, int runs) {
  if (dsl::Status st = finish(); !st) return st.failure();
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < runs; ++i)
    if (dsl::Status st = enqueue(); !st) return st.failure();
  if (dsl::Status st = finish(); !st) return st.failure();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() / runs;
}

}  // namespace tetra::gpu
