#include "dsl/object_cache.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "dsl/target.h"

namespace tetra::dsl {
namespace fs = std::filesystem;

namespace {

// FNV-1a: a stable file name for a key, the same in every process and build.
std::string hash_hex(const std::string& text) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

constexpr const char* kFunction = "tetra_kernel";

Failure compile_failure(const std::string& key, const std::string& why) {
  return Failure{FailureKind::Compile, key, why};
}

}  // namespace

std::string default_kernel_cache_dir() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  fs::path base = xdg && *xdg ? fs::path(xdg) : fs::path(home && *home ? home : "/tmp") / ".cache";
  return (base / "tetra" / "kernels").string();
}

namespace {

// A loaded kernel library; the code stays mapped while the pipeline lives.
class SharedObjectPipeline : public CompiledPipeline {
 public:
  SharedObjectPipeline(std::shared_ptr<void> library, ArgvFunction::Fn fn) : library_(std::move(library)), fn_(fn) {}
  int call(void** argv) const override { return fn_(argv); }

 private:
  std::shared_ptr<void> library_;
  ArgvFunction::Fn fn_;
};

}  // namespace

Result<CachedObject> load_or_compile_object(const std::string& cache_dir, const std::string& key,
                                            const ScheduledPipeline& pipeline, const Halide::Target& target) {
  std::string full_key = key + " | " + target.to_string() + " | " + toolchain_id();
  fs::path dir(cache_dir);
  fs::path library = dir / ("kernel_" + hash_hex(full_key) + ".so");
  CachedObject out;
  std::error_code ec;
  out.from_cache = fs::exists(library, ec);
  if (!out.from_cache) {
    fs::create_directories(dir, ec);
    if (ec) return compile_failure(key, "cannot create the kernel cache '" + cache_dir + "': " + ec.message());
    std::string stem = (dir / ("tmp_" + std::to_string(getpid()) + "_" + hash_hex(full_key))).string();
    if (Status st = compile_to_object(pipeline, stem + ".o", kFunction, target); !st)
      return compile_failure(key, st.failure().message);
    // -Bsymbolic: each object's Halide runtime calls its own copy, never another loaded one's.
    std::string link = "cc -shared -o '" + stem + ".so' '" + stem + ".o' -Wl,-Bsymbolic -lpthread -ldl -lm 2>&1";
    int rc = std::system(link.c_str());
    fs::remove(stem + ".o", ec);
    if (rc != 0) {
      fs::remove(stem + ".so", ec);
      return compile_failure(key, "linking the kernel failed: " + link);
    }
    fs::rename(stem + ".so", library, ec);  // atomic: readers see a whole library or none
    if (ec) return compile_failure(key, "cannot store the kernel in '" + cache_dir + "': " + ec.message());
  }
  void* handle = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) return compile_failure(key, std::string("cannot load ") + library.string() + ": " + dlerror());
  std::shared_ptr<void> owner(handle, [](void* h) { dlclose(h); });
  auto fn = reinterpret_cast<ArgvFunction::Fn>(dlsym(handle, (std::string(kFunction) + "_argv").c_str()));
  if (!fn) return compile_failure(key, library.string() + " has no " + kFunction + "_argv");
  out.code = std::make_shared<SharedObjectPipeline>(owner, fn);
  return out;
}

}  // namespace tetra::dsl
