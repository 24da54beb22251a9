// A stand-in for the HIP runtime (libamdhip64.so) for the tests of tetra's HIP path on machines without an
// AMD GPU. It is built as build/fake_hip/libamdhip64.so; a test puts that folder first in
// LD_LIBRARY_PATH, and tetra's dlopen finds it instead of ROCm's.
//
// It runs no kernels: device memory is host memory, and a launch only checks what it is given. What it
// checks is what a real runtime would refuse, or what would fault a real device:
// - a code object must be an AMD GPU ELF for the device's processor (EF_AMDGPU_MACH in its header), with
//   xnack and sramecc settings the device runs;
// - a kernel must be one of the code object's (a NAME.kd kernel descriptor in its symbols), and a launch
//   must keep to its metadata: no more threads a block than its .max_flat_workgroup_size, and an argument
//   for each it declares, a device address inside a live allocation for each buffer;
// - a copy must stay inside one allocation; a free must be of a live allocation;
// - a launch needs a grid and a block of at least one, and at most 1024 threads a block;
// - streams, events, modules and functions must be live handles.
//
// The environment configures it:
// - TETRA_FAKE_HIP_ARCH: the device's target ID (default "gfx942:sramecc+:xnack-");
// - TETRA_FAKE_HIP_DEVICES: how many devices (default 1);
// - TETRA_FAKE_HIP_CUS: its compute units (default 304, an MI300X's);
// - TETRA_FAKE_HIP_ROCM: 5 (the default) or 6, the release whose hipDeviceProp_t layout and version it gives;
// - TETRA_FAKE_HIP_FAIL_LAUNCH=N: the Nth launch (from 1) faults the device: it and every later launch,
//   wait and copy fail with hipErrorLaunchFailure;
// - TETRA_FAKE_HIP_LOG=FILE: when the library is unloaded it appends one JSON line to FILE: the launches,
//   the allocations left live, and each call it refused, with why.
#include <mutex>

#include "tests/fake_gpu/device_state.h"

namespace {

using tetra::fake_gpu::env_or;

// hip_runtime_api.h's error codes, those used here.
constexpr int kSuccess = 0;
constexpr int kInvalidValue = 1;
constexpr int kOutOfMemory = 2;
constexpr int kNoDevice = 100;
constexpr int kInvalidDevice = 101;
constexpr int kInvalidImage = 200;
constexpr int kNoBinaryForGpu = 209;
constexpr int kInvalidHandle = 400;
constexpr int kNotFound = 500;
constexpr int kLaunchFailure = 719;

// hipDeviceProp_t, which begins with the name (256 bytes), and its gcnArchName (256 bytes): ROCm 5.2's is
// 792 bytes with gcnArchName at 396, ROCm 6's 1472 with it at 1160.
struct PropertiesLayout {
  size_t bytes, arch_name_at;
  int runtime_version;
};
PropertiesLayout properties_layout();
constexpr int kAttributeMultiprocessorCount = 63;

std::string device_target_id() { return env_or("TETRA_FAKE_HIP_ARCH", "gfx942:sramecc+:xnack-"); }

PropertiesLayout properties_layout() {
  if (env_or("TETRA_FAKE_HIP_ROCM", "5") == "6") return {1472, 1160, 60032830};
  return {792, 396, 50231000};
}

// The processor's number in an AMD GPU ELF's e_flags (EF_AMDGPU_MACH, LLVM's AMDGPUUsage).
int machine_of(const std::string& processor) {
  static const std::map<std::string, int> machines = {
      {"gfx900", 0x2c},  {"gfx906", 0x2f},  {"gfx908", 0x30},  {"gfx90a", 0x3f},  {"gfx940", 0x40},
      {"gfx941", 0x4b},  {"gfx942", 0x4c},  {"gfx1030", 0x36}, {"gfx1100", 0x41}, {"gfx1101", 0x46},
      {"gfx1102", 0x47}, {"gfx1200", 0x48}, {"gfx1201", 0x4e}};
  auto it = machines.find(processor);
  return it == machines.end() ? -1 : it->second;
}

// A kernel's launch contract, from the code object's metadata note.
struct KernelArgument {
  uint64_t size = 0;
  std::string kind;  // .value_kind: "by_value", "global_buffer", "hidden_..."
};
struct KernelContract {
  uint64_t max_threads = 0;  // .max_flat_workgroup_size
  std::vector<KernelArgument> arguments;
};

struct Module {
  std::set<std::string> kernels;                    // the names with a NAME.kd kernel descriptor
  std::map<std::string, KernelContract> contracts;  // by .name, from the metadata
};

// A MessagePack value (the AMDGPU metadata note's encoding), as far as the metadata uses it.
struct Packed {
  enum Kind { Nil, Bool, Integer, Real, Text, Array, Map } kind = Nil;
  int64_t integer = 0;
  std::string text;
  std::vector<Packed> items;                       // an array's
  std::vector<std::pair<Packed, Packed>> entries;  // a map's
  const Packed* at(const std::string& key) const {
    for (const auto& [k, v] : entries)
      if (k.kind == Text && k.text == key) return &v;
    return nullptr;
  }
};

// Reads one MessagePack value; `ok` turns false on anything malformed or not understood.
struct Unpacker {
  const unsigned char *p, *end;
  bool ok = true;
  uint64_t number(int bytes) {  // big-endian
    uint64_t v = 0;
    if (end - p < bytes) return ok = false, 0;
    for (int i = 0; i < bytes; ++i) v = v << 8 | *p++;
    return v;
  }
  Packed read(int depth = 0) {
    Packed v;
    if (p >= end || depth > 32) return ok = false, v;
    const unsigned char tag = *p++;
    auto text = [&](uint64_t n) {
      if (uint64_t(end - p) < n) return void(ok = false);
      v.kind = Packed::Text, v.text.assign(reinterpret_cast<const char*>(p), n), p += n;
    };
    auto array = [&](uint64_t n) {
      v.kind = Packed::Array;
      for (uint64_t i = 0; i < n && ok; ++i) v.items.push_back(read(depth + 1));
    };
    auto map = [&](uint64_t n) {
      v.kind = Packed::Map;
      for (uint64_t i = 0; i < n && ok; ++i) {
        Packed key = read(depth + 1);
        v.entries.emplace_back(std::move(key), read(depth + 1));
      }
    };
    if (tag <= 0x7f)
      v.kind = Packed::Integer, v.integer = tag;
    else if (tag >= 0xe0)
      v.kind = Packed::Integer, v.integer = int8_t(tag);
    else if ((tag & 0xf0) == 0x80)
      map(tag & 0x0f);
    else if ((tag & 0xf0) == 0x90)
      array(tag & 0x0f);
    else if ((tag & 0xe0) == 0xa0)
      text(tag & 0x1f);
    else if (tag == 0xc0)
      v.kind = Packed::Nil;
    else if (tag == 0xc2 || tag == 0xc3)
      v.kind = Packed::Bool, v.integer = tag == 0xc3;
    else if (tag == 0xca)
      v.kind = Packed::Real, number(4);
    else if (tag == 0xcb)
      v.kind = Packed::Real, number(8);
    else if (tag >= 0xcc && tag <= 0xcf)
      v.kind = Packed::Integer, v.integer = int64_t(number(1 << (tag - 0xcc)));
    else if (tag >= 0xd0 && tag <= 0xd3)
      v.kind = Packed::Integer, v.integer = int64_t(number(1 << (tag - 0xd0)));
    else if (tag >= 0xd9 && tag <= 0xdb)
      text(number(1 << (tag - 0xd9)));
    else if (tag == 0xdc || tag == 0xdd)
      array(number(tag == 0xdc ? 2 : 4));
    else if (tag == 0xde || tag == 0xdf)
      map(number(tag == 0xde ? 2 : 4));
    else
      ok = false;
    return v;
  }
};

// The kernels' contracts in an NT_AMDGPU_METADATA note's MessagePack: false if it does not read.
bool read_contracts(const unsigned char* data, size_t bytes, Module& module) {
  Unpacker unpacker{data, data + bytes};
  const Packed root = unpacker.read();
  const Packed* kernels = root.at("amdhsa.kernels");
  if (!unpacker.ok || !kernels || kernels->kind != Packed::Array) return false;
  for (const Packed& k : kernels->items) {
    const Packed *name = k.at(".name"), *threads = k.at(".max_flat_workgroup_size"), *args = k.at(".args");
    if (!name || name->kind != Packed::Text || !threads || threads->kind != Packed::Integer) return false;
    KernelContract& contract = module.contracts[name->text];
    contract.max_threads = uint64_t(threads->integer);
    for (size_t i = 0; args && i < args->items.size(); ++i) {
      const Packed *size = args->items[i].at(".size"), *kind = args->items[i].at(".value_kind");
      if (!size || !kind || kind->kind != Packed::Text) return false;
      contract.arguments.push_back({uint64_t(size->integer), kind->text});
    }
  }
  return true;
}

struct Function {
  Module* module;
  std::string name;
};

// Everything the runtime holds, and what it reports on unloading.
struct Runtime : tetra::fake_gpu::DeviceState {
  std::map<void*, std::unique_ptr<Module>> modules;
  std::map<void*, std::unique_ptr<Function>> functions;
  ~Runtime() { report("TETRA_FAKE_HIP_LOG", modules.size()); }
};

Runtime runtime;
// The HIP runtime is thread-safe: model instances on several threads share it.
std::recursive_mutex calls;

template <typename T>
T read_at(const unsigned char* image, size_t offset) {
  T value;
  std::memcpy(&value, image + offset, sizeof value);
  return value;
}

// Checks an AMD GPU ELF against the device and lists its kernels; 0, or the error to return.
int read_code_object(const unsigned char* image, Module& module) {
  if (std::memcmp(image, "\177ELF", 4) != 0)
    return runtime.refuse(kInvalidImage, "a code object without an ELF header");
  if (image[4] != 2 || read_at<uint16_t>(image, 18) != 224)
    return runtime.refuse(kInvalidImage, "an ELF that is not a 64-bit AMD GPU code object");
  const std::string target_id = device_target_id();
  const std::string processor = target_id.substr(0, target_id.find(':'));
  const auto flags = read_at<uint32_t>(image, 48);
  if (int(flags & 0xff) != machine_of(processor))
    return runtime.refuse(kNoBinaryForGpu, "a code object for machine " + std::to_string(flags & 0xff) +
                                               ", not the device's " + processor);
  // xnack (bits 8-9) and sramecc (10-11): 0 unsupported, 1 any, 2 off, 3 on. Off or on must match the device.
  for (auto [feature, shift] : {std::pair<const char*, int>{"xnack", 8}, {"sramecc", 10}}) {
    const unsigned setting = (flags >> shift) & 3;
    const bool device_on = target_id.find(std::string(":") + feature + "+") != std::string::npos;
    if ((setting == 2 && device_on) || (setting == 3 && !device_on))
      return runtime.refuse(kNoBinaryForGpu,
                            std::string("a code object whose ") + feature + " setting the device lacks");
  }
  // The dynamic symbols, where NAME.kd marks kernel NAME, and the metadata note, which gives each
  // kernel's arguments and largest block.
  const auto section_offset = read_at<uint64_t>(image, 40);
  const auto section_size = read_at<uint16_t>(image, 58), sections = read_at<uint16_t>(image, 60);
  for (unsigned s = 0; s < sections; ++s) {
    const unsigned char* header = image + section_offset + s * section_size;
    const auto offset = read_at<uint64_t>(header, 24), size = read_at<uint64_t>(header, 32);
    if (read_at<uint32_t>(header, 4) == 7) {  // SHT_NOTE: name size, description size, type, name, description
      for (uint64_t at = offset; at + 12 <= offset + size;) {
        const auto name_bytes = read_at<uint32_t>(image, at), bytes = read_at<uint32_t>(image, at + 4);
        const auto type = read_at<uint32_t>(image, at + 8);
        const uint64_t description = at + 12 + ((name_bytes + 3) & ~3u);
        const bool amdgpu = std::strncmp(reinterpret_cast<const char*>(image + at + 12), "AMDGPU", 6) == 0;
        if (amdgpu && type == 32 && !read_contracts(image + description, bytes, module))  // NT_AMDGPU_METADATA
          return runtime.refuse(kInvalidImage, "a code object whose metadata does not read");
        at = description + ((bytes + 3) & ~3u);
      }
      continue;
    }
    if (read_at<uint32_t>(header, 4) != 11) continue;  // SHT_DYNSYM
    const auto link = read_at<uint32_t>(header, 40);
    const auto entry = read_at<uint64_t>(header, 56);
    const unsigned char* strings_header = image + section_offset + link * section_size;
    const char* strings = reinterpret_cast<const char*>(image + read_at<uint64_t>(strings_header, 24));
    for (uint64_t at = offset; entry && at + entry <= offset + size; at += entry) {
      std::string name = strings + read_at<uint32_t>(image, at);
      if (name.size() > 3 && name.compare(name.size() - 3, 3, ".kd") == 0)
        module.kernels.insert(name.substr(0, name.size() - 3));
    }
  }
  if (module.kernels.empty()) return runtime.refuse(kInvalidImage, "a code object with no kernels");
  return kSuccess;
}

int check_stream(void* stream) {
  if (stream && !runtime.streams.count(stream)) return runtime.refuse(kInvalidHandle, "an unknown stream");
  return runtime.faulted ? kLaunchFailure : kSuccess;
}

int copy(void* to, const void* from, size_t bytes, bool to_device, bool from_device, const char* call) {
  if (runtime.faulted) return kLaunchFailure;
  return runtime.copy(to, from, bytes, to_device, from_device, call) ? kSuccess : kInvalidValue;
}

}  // namespace

extern "C" {

int hipInit(unsigned) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  return std::atoi(env_or("TETRA_FAKE_HIP_DEVICES", "1").c_str()) > 0 ? kSuccess : kNoDevice;
}

int hipRuntimeGetVersion(int* version) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  *version = properties_layout().runtime_version;
  return kSuccess;
}

int hipGetDeviceCount(int* count) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  *count = std::atoi(env_or("TETRA_FAKE_HIP_DEVICES", "1").c_str());
  return *count > 0 ? kSuccess : kNoDevice;
}

int hipSetDevice(int device) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  return device == 0 ? kSuccess : kInvalidDevice;
}

int hipGetDeviceProperties(void* properties, int device) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  if (device != 0) return kInvalidDevice;
  char* p = static_cast<char*>(properties);
  const PropertiesLayout layout = properties_layout();
  // Between the name and the arch, numbers and a UUID: bytes of any value, none of them text.
  for (size_t i = 0; i < layout.bytes; ++i) p[i] = char((i * 2654435761u) >> 13);
  std::memset(p, 0, 256);
  std::snprintf(p, 256, "%s", "Stand-in AMD GPU");
  std::memset(p + layout.arch_name_at, 0, 256);
  std::snprintf(p + layout.arch_name_at, 256, "%s", device_target_id().c_str());
  return kSuccess;
}

int hipDeviceGetAttribute(int* value, int attribute, int device) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  if (device != 0) return kInvalidDevice;
  if (attribute != kAttributeMultiprocessorCount) return runtime.refuse(kInvalidValue, "an attribute not faked");
  *value = std::atoi(env_or("TETRA_FAKE_HIP_CUS", "304").c_str());
  return kSuccess;
}

int hipStreamCreate(void** stream) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  *stream = runtime.open_handle(runtime.streams);
  return kSuccess;
}

int hipStreamDestroy(void* stream) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  if (!runtime.close_handle(runtime.streams, stream))
    return runtime.refuse(kInvalidHandle, "destroying an unknown stream");
  return kSuccess;
}

int hipStreamSynchronize(void* stream) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  return check_stream(stream);
}

int hipModuleLoadData(void** module, const void* image) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  auto loaded = std::make_unique<Module>();
  if (int err = read_code_object(static_cast<const unsigned char*>(image), *loaded); err != kSuccess) return err;
  *module = loaded.get();
  runtime.modules[*module] = std::move(loaded);
  return kSuccess;
}

int hipModuleUnload(void* module) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  if (!runtime.unload(runtime.modules, runtime.functions, module))
    return runtime.refuse(kInvalidHandle, "unloading an unknown module");
  return kSuccess;
}

int hipModuleGetFunction(void** function, void* module, const char* name) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  auto it = runtime.modules.find(module);
  if (it == runtime.modules.end()) return runtime.refuse(kInvalidHandle, "a function of an unknown module");
  if (!it->second->kernels.count(name)) return runtime.refuse(kNotFound, std::string("no kernel ") + name);
  if (!it->second->contracts.count(name))
    return runtime.refuse(kInvalidImage, std::string("no metadata for kernel ") + name);
  auto f = std::make_unique<Function>(Function{it->second.get(), name});
  *function = f.get();
  runtime.functions[*function] = std::move(f);
  return kSuccess;
}

int hipMalloc(void** address, size_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  if (bytes == 0) {  // as HIP does: no memory, and no error
    *address = nullptr;
    return kSuccess;
  }
  if (bytes > (size_t(1) << 36)) return kOutOfMemory;
  *address = runtime.allocate(bytes);
  return kSuccess;
}

int hipFree(void* address) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  if (!address) return kSuccess;
  if (!runtime.release(address)) return runtime.refuse(kInvalidValue, "freeing an unknown address");
  return kSuccess;
}

int hipMemcpyHtoD(void* to, const void* from, size_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  return copy(to, from, bytes, true, false, "hipMemcpyHtoD");
}

int hipMemcpyDtoH(void* to, void* from, size_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  return copy(to, from, bytes, false, true, "hipMemcpyDtoH");
}

int hipMemcpyDtoDAsync(void* to, void* from, size_t bytes, void* stream) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  if (int err = check_stream(stream); err != kSuccess) return err;
  return copy(to, from, bytes, true, true, "hipMemcpyDtoDAsync");
}

int hipModuleLaunchKernel(void* function, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                          unsigned shared_bytes, void* stream, void** params, void** extra) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  auto it = runtime.functions.find(function);
  if (it == runtime.functions.end()) return runtime.refuse(kInvalidHandle, "launching an unknown function");
  if (int err = check_stream(stream); err != kSuccess) return err;
  const std::string& name = it->second->name;
  if (!gx || !gy || !gz || !bx || !by || !bz || uint64_t(bx) * by * bz > 1024)
    return runtime.refuse(kInvalidValue, "launching " + name + " on a grid of " + std::to_string(gx) + "x" +
                                             std::to_string(gy) + "x" + std::to_string(gz) + " blocks of " +
                                             std::to_string(bx) + "x" + std::to_string(by) + "x" + std::to_string(bz));
  if (shared_bytes || extra) return runtime.refuse(kInvalidValue, "launching " + name + " with dynamic LDS or extra");
  const Function& f = *it->second;
  const KernelContract& contract = f.module->contracts.at(name);
  if (uint64_t(bx) * by * bz > contract.max_threads)
    return runtime.refuse(kInvalidValue, "launching " + name + " with " + std::to_string(uint64_t(bx) * by * bz) +
                                             " threads a block, past its " + std::to_string(contract.max_threads));
  // Each argument the kernel declares is read from its pointer in `params`, as the runtime would; a
  // buffer's must be a device address inside a live allocation.
  for (size_t i = 0; i < contract.arguments.size(); ++i) {
    const KernelArgument& a = contract.arguments[i];
    if (a.kind.rfind("hidden_", 0) == 0) continue;  // the runtime's own, after the explicit ones
    if (!params || !params[i])
      return runtime.refuse(kInvalidValue, "launching " + name + " without argument " + std::to_string(i));
    if (a.kind != "global_buffer") continue;
    uint64_t address = 0;
    std::memcpy(&address, params[i], sizeof address);
    if (!runtime.holds(reinterpret_cast<void*>(address), 1))
      return runtime.refuse(kInvalidValue, "launching " + name + " with argument " + std::to_string(i) +
                                               ", a buffer, not at a device address");
  }
  return runtime.launch_faults("TETRA_FAKE_HIP_FAIL_LAUNCH") ? kLaunchFailure : kSuccess;
}

int hipEventCreate(void** event) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  *event = runtime.open_handle(runtime.events);
  return kSuccess;
}

int hipEventDestroy(void* event) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  if (!runtime.close_handle(runtime.events, event))
    return runtime.refuse(kInvalidHandle, "destroying an unknown event");
  return kSuccess;
}

int hipEventRecord(void* event, void* stream) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  if (!runtime.events.count(event)) return runtime.refuse(kInvalidHandle, "recording an unknown event");
  return check_stream(stream);
}

int hipEventSynchronize(void* event) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  if (!runtime.events.count(event)) return runtime.refuse(kInvalidHandle, "waiting on an unknown event");
  return runtime.faulted ? kLaunchFailure : kSuccess;
}

int hipEventElapsedTime(float* ms, void* start, void* stop) {
  std::lock_guard<std::recursive_mutex> lock(calls);
  if (!runtime.events.count(start) || !runtime.events.count(stop))
    return runtime.refuse(kInvalidHandle, "timing an unknown event");
  *ms = runtime.kEventMs;
  return kSuccess;
}

const char* hipGetErrorString(int error) {
  static const std::map<int, const char*> words = {
      {kSuccess, "no error"},
      {kInvalidValue, "invalid argument"},
      {kOutOfMemory, "out of memory"},
      {kNoDevice, "no ROCm-capable device is detected"},
      {kInvalidDevice, "invalid device ordinal"},
      {kInvalidImage, "device kernel image is invalid"},
      {kNoBinaryForGpu, "no kernel image is available for execution on the device"},
      {kInvalidHandle, "invalid resource handle"},
      {kNotFound, "named symbol not found"},
      {kLaunchFailure, "unspecified launch failure"}};
  auto it = words.find(error);
  return it == words.end() ? "unknown error" : it->second;
}

}  // extern "C"
