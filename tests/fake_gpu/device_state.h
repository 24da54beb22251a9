// What a stand-in GPU runtime (fake_amdhip64.cpp, fake_cuda.cpp) keeps of its one device: device memory
// (host memory here), streams, events, the launches it counted, whether a launch faulted the device, and
// each call it refused, with why. Each stand-in is its own shared library and compiles this once.
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace tetra::fake_gpu {

inline std::string env_or(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value && *value ? value : fallback;
}

struct DeviceState {
  struct Allocation {
    size_t bytes;
    std::unique_ptr<char[]> memory;
  };
  std::map<uintptr_t, Allocation> allocations;  // by address
  std::set<void*> streams, events;
  long launches = 0, bytes_copied = 0, allocations_made = 0;
  std::vector<std::string> refused;
  bool faulted = false;  // a launch failed: like a real device's, the fault sticks to every later wait and copy

  // Streams and events: handles of their own, live from open_handle to close_handle.
  static void* open_handle(std::set<void*>& handles) {
    void* handle = new char;
    handles.insert(handle);
    return handle;
  }
  static bool close_handle(std::set<void*>& handles, void* handle) {
    if (!handles.erase(handle)) return false;
    delete static_cast<char*>(handle);
    return true;
  }
  static constexpr float kEventMs = 0.25f;  // what every timed span takes

  // Unloads a module and drops the functions found in it (each holds a `module` pointer); false if it is
  // not loaded.
  template <typename Modules, typename Functions>
  static bool unload(Modules& modules, Functions& functions, void* module) {
    if (!modules.count(module)) return false;
    for (auto it = functions.begin(); it != functions.end();)
      it = it->second->module == module ? functions.erase(it) : std::next(it);
    modules.erase(module);
    return true;
  }

  // Records a call refused, for the report; returns `error`, the runtime's code for it.
  int refuse(int error, const std::string& why) {
    refused.push_back(why);
    return error;
  }

  // Whether [address, address + bytes) lies inside one allocation.
  bool holds(const void* address, size_t bytes) const {
    auto a = uintptr_t(address);
    auto it = allocations.upper_bound(a);
    if (it == allocations.begin()) return false;
    --it;
    return a >= it->first && a + bytes <= it->first + it->second.bytes;
  }

  void* allocate(size_t bytes) {
    Allocation a{bytes, std::make_unique<char[]>(bytes)};
    void* address = a.memory.get();
    allocations[uintptr_t(address)] = std::move(a);
    ++allocations_made;
    return address;
  }
  bool release(const void* address) { return allocations.erase(uintptr_t(address)) > 0; }

  // A copy between host and device memory, or within the device; false (and refused as `call`) where a
  // device side leaves its allocation.
  bool copy(void* to, const void* from, size_t bytes, bool to_device, bool from_device, const char* call) {
    if ((to_device && !holds(to, bytes)) || (from_device && !holds(from, bytes))) {
      refused.push_back(std::string(call) + " of " + std::to_string(bytes) + " bytes outside an allocation");
      return false;
    }
    std::memmove(to, from, bytes);
    bytes_copied += long(bytes);
    return true;
  }

  // Counts a launch; whether it faults the device, as the launch numbered by `fail_variable` does.
  bool launch_faults(const char* fail_variable) {
    ++launches;
    if (std::atol(env_or(fail_variable, "0").c_str()) == launches) faulted = true;
    return faulted;
  }

  // Appends one JSON line to the file `log_variable` names, if it names one.
  void report(const char* log_variable, size_t live_modules) const {
    const std::string log = env_or(log_variable, "");
    FILE* f = log.empty() ? nullptr : std::fopen(log.c_str(), "a");
    if (!f) return;
    std::string line = "{\"launches\": " + std::to_string(launches) +
                       ", \"allocations\": " + std::to_string(allocations_made) +
                       ", \"live_allocations\": " + std::to_string(allocations.size()) +
                       ", \"bytes_copied\": " + std::to_string(bytes_copied) +
                       ", \"live_modules\": " + std::to_string(live_modules) + ", \"refused\": [";
    for (size_t i = 0; i < refused.size(); ++i) {
      std::string quoted;
      for (char ch : refused[i]) quoted += (ch == '"' || ch == '\\') ? std::string("\\") + ch : std::string(1, ch);
      line += (i ? ", \"" : "\"") + quoted + "\"";
    }
    std::fprintf(f, "%s]}\n", line.c_str());
    std::fclose(f);
  }
};

}  // namespace tetra::fake_gpu
