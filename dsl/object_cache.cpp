#include "dsl/object_cache.h"

#include "kernel_definitions_id.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <vector>

#include "dsl/par_for_chunks.h"
#include "dsl/process.h"
#include "dsl/target.h"
#include "runtime/graph_io.h"

namespace tetra::dsl {
namespace fs = std::filesystem;

namespace {

// A stable file name for a key, the same in every process and build.
std::string hash_hex(const std::string& text) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx",
                static_cast<unsigned long long>(fnv1a64(reinterpret_cast<const uint8_t*>(text.data()), text.size())));
  return buf;
}

constexpr const char* kFunction = "tetra_kernel";

Failure compile_failure(const std::string& key, const std::string& why) {
  return Failure{FailureKind::Compile, key, why};
}

}  // namespace

Result<CachedObject> build_kernel(const std::string& cache_dir, const std::string& key,
                                  const ScheduledPipeline& pipeline, const Halide::Target& target) {
  if (!cache_dir.empty()) return load_or_compile_object(cache_dir, key, pipeline, target);
  auto code = jit_compile(pipeline, target);
  if (!code) return code.failure();
  return CachedObject{code.value(), false};
}

std::string default_kernel_cache_dir() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  fs::path base = xdg && *xdg ? fs::path(xdg) : fs::path(home && *home ? home : "/tmp") / ".cache";
  return (base / "tetra" / "kernels").string();
}

namespace {

// A loaded kernel library's entry point; the code stays mapped while the pipeline lives.
class SharedObjectPipeline : public ArgvFunction {
 public:
  SharedObjectPipeline(std::shared_ptr<void> library, Fn fn) : ArgvFunction(fn), library_(std::move(library)) {}

 private:
  std::shared_ptr<void> library_;
};

// Links `object` (and `libraries`) into the shared library `library`, atomically (temporary name,
// then rename).
Status link_shared(const std::string& object, const fs::path& library, const std::vector<std::string>& libraries,
                   const std::string& key) {
  std::string tmp = library.string() + ".tmp" + std::to_string(getpid());
  std::vector<std::string> link = {"cc", "-shared", "-o", tmp, object};
  link.insert(link.end(), libraries.begin(), libraries.end());
  // -Bsymbolic: the runtime's functions call each other, never a same-named symbol loaded earlier.
  link.insert(link.end(), {"-Wl,-Bsymbolic", "-lpthread", "-ldl", "-lm"});
  ProgramRun run = run_program(link);
  std::error_code ec;
  if (!run.ok()) {
    fs::remove(tmp, ec);
    return compile_failure(key, "linking failed: " + describe_command(link) + "\n" + run.output);
  }
  fs::rename(tmp, library, ec);  // readers see a whole library or none
  if (ec) return compile_failure(key, "cannot store '" + library.string() + "': " + ec.message());
  return ok_status();
}

// The Halide runtime that the cached kernels of `target` share: compiled once per cache folder (it
// takes a second to compile, many times a kernel's own code), loaded once per process.
Result<std::string> shared_runtime(const fs::path& dir, const Halide::Target& kernel_target) {
  // strict_float changes kernels, not the runtime: one runtime (and one thread pool) serves both.
  Halide::Target target = strip_kernel_only_features(kernel_target.without_feature(Halide::Target::StrictFloat));
  std::string key = "halide runtime | " + target.to_string() + " | " + toolchain_id() + " | " +
                    hash_hex(kParForChunksSource);
  fs::path library = dir / ("runtime_" + hash_hex(key) + ".so");
  std::error_code ec;
  if (fs::exists(library, ec)) return library.string();
  std::string tmp = (dir / ("tmp_" + std::to_string(getpid()) + "_runtime")).string();
  std::string object = tmp + ".o", chunks_source = tmp + "_par_for.c", chunks_object = tmp + "_par_for.o";
  auto remove_temporaries = [&] {
    for (const std::string& f : {object, chunks_source, chunks_object}) fs::remove(f, ec);
  };
  try {
    Halide::compile_standalone_runtime(object, target);
  } catch (const Halide::Error& e) {
    remove_temporaries();
    return compile_failure(key, e.what());
  }
  std::ofstream(chunks_source) << kParForChunksSource;
  std::vector<std::string> compile = {"cc", "-O2", "-fPIC", "-c", chunks_source, "-o", chunks_object};
  ProgramRun compiled = run_program(compile);
  if (!compiled.ok()) {
    remove_temporaries();
    return compile_failure(key, "compiling the thread pool's task handler failed: " + describe_command(compile) +
                                    "\n" + compiled.output);
  }
  Status st = link_shared(object, library, {chunks_object}, key);
  remove_temporaries();
  if (!st) return st.failure();
  return library.string();
}

}  // namespace

Result<CachedObject> load_or_compile_object(const std::string& cache_dir, const std::string& key,
                                            const ScheduledPipeline& pipeline, const Halide::Target& target) {
  // With the definitions' id: a key names a template and its knobs, and the template's code can change.
  fs::path dir(cache_dir);
  fs::path library = dir / ("kernel_" + hash_hex(key + " | " + TETRA_KERNEL_DEFINITIONS_ID) + ".so");
  CachedObject out;
  std::error_code ec;
  out.from_cache = fs::exists(library, ec);
  if (!out.from_cache) {
    fs::create_directories(dir, ec);
    if (ec) return compile_failure(key, "cannot create the kernel cache '" + cache_dir + "': " + ec.message());
    Result<std::string> runtime = shared_runtime(dir, target);
    if (!runtime) return runtime.failure();
    std::string object = (dir / ("tmp_" + std::to_string(getpid()) + "_" + hash_hex(key) + ".o")).string();
    if (Status st = compile_to_object(pipeline, object, kFunction, target.with_feature(Halide::Target::NoRuntime)); !st)
      return compile_failure(key, st.failure().message);
    // The runtime library is named by its absolute path, which the loader then finds it by.
    Status st = link_shared(object, library, {fs::absolute(runtime.value()).string()}, key);
    fs::remove(object, ec);
    if (!st) return st.failure();
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
