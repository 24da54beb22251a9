// A stand-in for the CUDA driver (libcuda.so.1) for the tests of tetra's CUDA path on machines without an
// NVIDIA GPU. It is built as build/fake_cuda/libcuda.so.1; a test puts that folder first in
// LD_LIBRARY_PATH, and tetra's dlopen finds it instead of the NVIDIA driver's.
//
// It runs no kernels: device memory is host memory, and a launch only checks what it is given. What it
// checks is what the driver would refuse, or what would fault a device:
// - a call that needs a context needs the device's current on the calling thread (the driver's contexts
//   are per thread), and a context popped must have been pushed on that thread;
// - the PTX must be for the device's SM version or an older one (`.target sm_NN`);
// - a kernel must be one of the PTX's `.entry` functions, and a launch must keep to its declaration: no
//   more threads a block than its `.maxntid`, and an argument for each `.param`, a device address inside
//   a live allocation for each 64-bit one (tetra's kernels take their sizes as 32-bit integers);
// - a copy must stay inside one allocation; a free must be of a live allocation;
// - streams, events, modules and functions must be live handles.
//
// The environment configures it:
// - TETRA_FAKE_CUDA_SM: the device's SM version (default 90, an H100's);
// - TETRA_FAKE_CUDA_DEVICES: how many devices (default 1);
// - TETRA_FAKE_CUDA_FAIL_LAUNCH=N: the Nth launch (from 1) faults the device: it and every later launch,
//   wait and copy fail with CUDA_ERROR_LAUNCH_FAILED;
// - TETRA_FAKE_CUDA_LOG=FILE: when the library is unloaded it appends one JSON line to FILE: the
//   launches, the allocations left live, and each call it refused, with why.
#include <mutex>
#include <regex>

#include "tests/fake_gpu/device_state.h"

namespace {

using tetra::fake_gpu::env_or;

// cuda.h's error codes, those used here.
constexpr int kSuccess = 0;
constexpr int kInvalidValue = 1;
constexpr int kOutOfMemory = 2;
constexpr int kNoDevice = 100;
constexpr int kInvalidDevice = 101;
constexpr int kInvalidContext = 201;
constexpr int kInvalidPtx = 218;
constexpr int kInvalidHandle = 400;
constexpr int kNotFound = 500;
constexpr int kLaunchFailed = 719;
// cuda.h's attributes and JIT options, those used here.
constexpr int kAttributeMultiprocessorCount = 16;
constexpr int kAttributeComputeCapabilityMajor = 75;
constexpr int kAttributeComputeCapabilityMinor = 76;
constexpr int kJitErrorLogBuffer = 5;
constexpr int kJitErrorLogBufferSizeBytes = 6;

int device_sm() { return std::atoi(env_or("TETRA_FAKE_CUDA_SM", "90").c_str()); }
int device_count() { return std::atoi(env_or("TETRA_FAKE_CUDA_DEVICES", "1").c_str()); }

// A kernel as its PTX declares it.
struct Entry {
  std::vector<bool> pointer_params;  // per .param: 64 bits, so a device address
  uint64_t max_threads = 1024;       // .maxntid's product, if given
};

struct Module {
  std::map<std::string, Entry> entries;
};

struct Function {
  Module* module;
  std::string name;
};

struct Runtime : tetra::fake_gpu::DeviceState {
  std::map<void*, std::unique_ptr<Module>> modules;
  std::map<void*, std::unique_ptr<Function>> functions;
  char primary_context = 0;  // its address is the device's one context
  int retained = 0;
  ~Runtime() { report("TETRA_FAKE_CUDA_LOG", modules.size()); }
};

Runtime runtime;
// The driver is thread-safe: model instances on several threads share it.
std::recursive_mutex calls;
// This thread's stack of contexts (cuCtxPushCurrent, cuCtxPopCurrent): its top is current, and every
// call on the device needs the device's.
thread_local std::vector<void*> contexts;

int check_context(const char* call) {
  if (contexts.empty() || contexts.back() != &runtime.primary_context)
    return runtime.refuse(kInvalidContext, std::string(call) + " with no context current on its thread");
  return kSuccess;
}

int check_stream(void* stream) {
  if (stream && !runtime.streams.count(stream)) return runtime.refuse(kInvalidHandle, "an unknown stream");
  return runtime.faulted ? kLaunchFailed : kSuccess;
}

// Reads the PTX's target and entries into `module`; "" or what is wrong with it.
std::string read_ptx(const std::string& ptx, Module& module) {
  std::smatch m;
  if (!std::regex_search(ptx, m, std::regex(R"(\.target\s+sm_(\d+))"))) return "a PTX with no .target";
  if (std::stoi(m[1].str()) > device_sm())
    return "a PTX for sm_" + m[1].str() + ", past the device's sm_" + std::to_string(device_sm());
  static const std::regex entry(R"(\.entry\s+(\w+)\s*\(([^)]*)\)([^{]*)\{)");
  static const std::regex param(R"(\.param\s+\.(\w+))");
  static const std::regex maxntid(R"(\.maxntid\s+(\d+)\s*,\s*(\d+)\s*,\s*(\d+))");
  for (auto it = std::sregex_iterator(ptx.begin(), ptx.end(), entry); it != std::sregex_iterator(); ++it) {
    Entry& e = module.entries[(*it)[1].str()];
    const std::string params = (*it)[2].str(), directives = (*it)[3].str();
    for (auto p = std::sregex_iterator(params.begin(), params.end(), param); p != std::sregex_iterator(); ++p)
      e.pointer_params.push_back((*p)[1].str() == "u64" || (*p)[1].str() == "b64");
    if (std::regex_search(directives, m, maxntid))
      e.max_threads = std::stoull(m[1].str()) * std::stoull(m[2].str()) * std::stoull(m[3].str());
  }
  return module.entries.empty() ? "a PTX with no .entry" : "";
}

int copy(void* to, const void* from, size_t bytes, bool to_device, bool from_device, const char* call) {
  if (int err = check_context(call); err != kSuccess) return err;
  if (runtime.faulted) return kLaunchFailed;
  return runtime.copy(to, from, bytes, to_device, from_device, call) ? kSuccess : kInvalidValue;
}

void* as_pointer(uint64_t address) { return reinterpret_cast<void*>(uintptr_t(address)); }

}  // namespace

extern "C" {

int cuInit(unsigned) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  return device_count() > 0 ? kSuccess : kNoDevice;
}

int cuDriverGetVersion(int* version) {
  *version = 12040;
  return kSuccess;
}

int cuDeviceGetCount(int* count) {
  *count = device_count();
  return kSuccess;
}

int cuDeviceGet(int* device, int ordinal) {
  if (ordinal < 0 || ordinal >= device_count()) return kInvalidDevice;
  *device = ordinal;
  return kSuccess;
}

int cuDeviceGetName(char* name, int bytes, int device) {
  if (device != 0) return kInvalidDevice;
  std::snprintf(name, size_t(bytes), "%s", "Stand-in NVIDIA GPU");
  return kSuccess;
}

int cuDeviceGetAttribute(int* value, int attribute, int device) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  if (device != 0) return kInvalidDevice;
  if (attribute == kAttributeMultiprocessorCount)
    *value = 132;
  else if (attribute == kAttributeComputeCapabilityMajor)
    *value = device_sm() / 10;
  else if (attribute == kAttributeComputeCapabilityMinor)
    *value = device_sm() % 10;
  else
    return runtime.refuse(kInvalidValue, "an attribute not faked");
  return kSuccess;
}

int cuDevicePrimaryCtxRetain(void** context, int device) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  if (device != 0) return kInvalidDevice;
  ++runtime.retained;
  *context = &runtime.primary_context;
  return kSuccess;
}

int cuDevicePrimaryCtxRelease_v2(int device) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  if (device != 0) return kInvalidDevice;
  if (runtime.retained == 0) return runtime.refuse(kInvalidContext, "releasing a context never retained");
  --runtime.retained;
  return kSuccess;
}

int cuCtxPushCurrent_v2(void* context) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  if (context != &runtime.primary_context || runtime.retained == 0)
    return runtime.refuse(kInvalidContext, "pushing an unknown context");
  contexts.push_back(context);
  return kSuccess;
}

int cuCtxPopCurrent_v2(void** context) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  if (contexts.empty()) return runtime.refuse(kInvalidContext, "popping a context none pushed on this thread");
  if (context) *context = contexts.back();
  contexts.pop_back();
  return kSuccess;
}

int cuStreamCreate(void** stream, unsigned) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  if (int err = check_context("cuStreamCreate"); err != kSuccess) return err;
  *stream = runtime.open_handle(runtime.streams);
  return kSuccess;
}

int cuStreamDestroy_v2(void* stream) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  if (!runtime.close_handle(runtime.streams, stream))
    return runtime.refuse(kInvalidHandle, "destroying an unknown stream");
  return kSuccess;
}

int cuStreamSynchronize(void* stream) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  if (int err = check_context("cuStreamSynchronize"); err != kSuccess) return err;
  return check_stream(stream);
}

int cuModuleLoadDataEx(void** module, const void* image, unsigned options, int* option_names, void** values) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  if (int err = check_context("cuModuleLoadDataEx"); err != kSuccess) return err;
  auto loaded = std::make_unique<Module>();
  const std::string wrong = read_ptx(static_cast<const char*>(image), *loaded);
  if (!wrong.empty()) {
    char* log = nullptr;
    size_t log_bytes = 0;
    for (unsigned i = 0; i < options; ++i) {
      if (option_names[i] == kJitErrorLogBuffer) log = static_cast<char*>(values[i]);
      if (option_names[i] == kJitErrorLogBufferSizeBytes) log_bytes = size_t(reinterpret_cast<uintptr_t>(values[i]));
    }
    if (log && log_bytes) std::snprintf(log, log_bytes, "stand-in driver: %s", wrong.c_str());
    return runtime.refuse(kInvalidPtx, wrong);
  }
  *module = loaded.get();
  runtime.modules[*module] = std::move(loaded);
  return kSuccess;
}

int cuModuleUnload(void* module) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  if (!runtime.unload(runtime.modules, runtime.functions, module))
    return runtime.refuse(kInvalidHandle, "unloading an unknown module");
  return kSuccess;
}

int cuModuleGetFunction(void** function, void* module, const char* name) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  auto it = runtime.modules.find(module);
  if (it == runtime.modules.end()) return runtime.refuse(kInvalidHandle, "a function of an unknown module");
  if (!it->second->entries.count(name)) return runtime.refuse(kNotFound, std::string("no kernel ") + name);
  auto f = std::make_unique<Function>(Function{it->second.get(), name});
  *function = f.get();
  runtime.functions[*function] = std::move(f);
  return kSuccess;
}

int cuMemAlloc_v2(uint64_t* address, size_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  if (int err = check_context("cuMemAlloc"); err != kSuccess) return err;
  if (bytes == 0) return runtime.refuse(kInvalidValue, "an allocation of 0 bytes");  // as the driver refuses it
  if (bytes > (size_t(1) << 36)) return kOutOfMemory;
  *address = uint64_t(uintptr_t(runtime.allocate(bytes)));
  return kSuccess;
}

int cuMemFree_v2(uint64_t address) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  if (int err = check_context("cuMemFree"); err != kSuccess) return err;
  if (!runtime.release(as_pointer(address))) return runtime.refuse(kInvalidValue, "freeing an unknown address");
  return kSuccess;
}

int cuMemcpyHtoD_v2(uint64_t to, const void* from, size_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  return copy(as_pointer(to), from, bytes, true, false, "cuMemcpyHtoD");
}

int cuMemcpyDtoH_v2(void* to, uint64_t from, size_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  return copy(to, as_pointer(from), bytes, false, true, "cuMemcpyDtoH");
}

int cuMemcpyDtoDAsync_v2(uint64_t to, uint64_t from, size_t bytes, void* stream) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  if (int err = check_stream(stream); err != kSuccess) return err;
  return copy(as_pointer(to), as_pointer(from), bytes, true, true, "cuMemcpyDtoDAsync");
}

int cuLaunchKernel(void* function, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                   unsigned shared_bytes, void* stream, void** params, void** extra) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  if (int err = check_context("cuLaunchKernel"); err != kSuccess) return err;
  auto it = runtime.functions.find(function);
  if (it == runtime.functions.end()) return runtime.refuse(kInvalidHandle, "launching an unknown function");
  if (int err = check_stream(stream); err != kSuccess) return err;
  const std::string& name = it->second->name;
  const Entry& entry = it->second->module->entries.at(name);
  const uint64_t threads = uint64_t(bx) * by * bz;
  if (!gx || !gy || !gz || !threads || threads > entry.max_threads)
    return runtime.refuse(kInvalidValue, "launching " + name + " with " + std::to_string(threads) +
                                             " threads a block, past its " + std::to_string(entry.max_threads));
  if (shared_bytes || extra) return runtime.refuse(kInvalidValue, "launching " + name + " with dynamic shared memory");
  for (size_t i = 0; i < entry.pointer_params.size(); ++i) {
    if (!params || !params[i])
      return runtime.refuse(kInvalidValue, "launching " + name + " without argument " + std::to_string(i));
    uint64_t address = 0;
    std::memcpy(&address, params[i], sizeof address);
    if (entry.pointer_params[i] && !runtime.holds(as_pointer(address), 1))
      return runtime.refuse(kInvalidValue, "launching " + name + " with argument " + std::to_string(i) +
                                               ", a 64-bit one, not at a device address");
  }
  return runtime.launch_faults("TETRA_FAKE_CUDA_FAIL_LAUNCH") ? kLaunchFailed : kSuccess;
}

int cuEventCreate(void** event, unsigned) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  if (int err = check_context("cuEventCreate"); err != kSuccess) return err;
  *event = runtime.open_handle(runtime.events);
  return kSuccess;
}

int cuEventDestroy_v2(void* event) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  if (!runtime.close_handle(runtime.events, event))
    return runtime.refuse(kInvalidHandle, "destroying an unknown event");
  return kSuccess;
}

int cuEventRecord(void* event, void* stream) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  if (!runtime.events.count(event)) return runtime.refuse(kInvalidHandle, "recording an unknown event");
  return check_stream(stream);
}

int cuEventSynchronize(void* event) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  if (!runtime.events.count(event)) return runtime.refuse(kInvalidHandle, "waiting on an unknown event");
  return runtime.faulted ? kLaunchFailed : kSuccess;
}

int cuEventElapsedTime(float* ms, void* start, void* stop) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  if (!runtime.events.count(start) || !runtime.events.count(stop))
    return runtime.refuse(kInvalidHandle, "timing an unknown event");
  *ms = runtime.kEventMs;
  return kSuccess;
}

int cuGetErrorName(int error, const char** name) {
  static const std::map<int, const char*> names = {{kSuccess, "CUDA_SUCCESS"},
                                                   {kInvalidValue, "CUDA_ERROR_INVALID_VALUE"},
                                                   {kOutOfMemory, "CUDA_ERROR_OUT_OF_MEMORY"},
                                                   {kNoDevice, "CUDA_ERROR_NO_DEVICE"},
                                                   {kInvalidDevice, "CUDA_ERROR_INVALID_DEVICE"},
                                                   {kInvalidContext, "CUDA_ERROR_INVALID_CONTEXT"},
                                                   {kInvalidPtx, "CUDA_ERROR_INVALID_PTX"},
                                                   {kInvalidHandle, "CUDA_ERROR_INVALID_HANDLE"},
                                                   {kNotFound, "CUDA_ERROR_NOT_FOUND"},
                                                   {kLaunchFailed, "CUDA_ERROR_LAUNCH_FAILED"}};
  auto it = names.find(error);
  if (it == names.end()) return kInvalidValue;
  *name = it->second;
  return kSuccess;
}

}  // extern "C"
