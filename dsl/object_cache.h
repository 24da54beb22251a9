// Pipelines compiled ahead of time into shared objects and kept in a cache folder, so that the next
// process (or the next model with the same kernel) loads the machine code instead of compiling it.
// An entry is keyed by the code's code_key() (format, schedule, target, toolchain) and the kernel
// definitions' hash, and written atomically (temporary file + rename), so concurrent processes can
// share one folder. Kernels carry no Halide runtime of their own: they link the folder's one runtime
// library per target (compiled once; it costs far more to compile than a kernel does).
#pragma once
#include <memory>
#include <string>

#include "dsl/jit_pipeline.h"
#include "dsl/core/result.h"

namespace tetra::dsl {

struct CachedObject {
  std::shared_ptr<const CompiledPipeline> code;
  bool from_cache = false;  // loaded, not compiled
};

// Loads `key`'s object from `cache_dir`, or compiles `pipeline` for `target` into it first. `key` is
// the code_key() of the pipeline's code and `target` (dsl/jit_pipeline.h).
Result<CachedObject> load_or_compile_object(const std::string& cache_dir, const std::string& key,
                                            const ScheduledPipeline& pipeline, const Halide::Target& target);

// The one way a kernel's code is built, by the runtime's kernel source and the tuner's workers alike, so
// that what one builds the other loads: through the on-disk cache `cache_dir` (load_or_compile_object)
// when one is given, else JIT-compiled in this process.
Result<CachedObject> build_kernel(const std::string& cache_dir, const std::string& key,
                                  const ScheduledPipeline& pipeline, const Halide::Target& target);

// ~/.cache/tetra/kernels (or $XDG_CACHE_HOME/tetra/kernels).
std::string default_kernel_cache_dir();

}  // namespace tetra::dsl
