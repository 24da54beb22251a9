// Pipelines compiled ahead of time into shared objects and kept in a cache folder, so that the next
// process (or the next model with the same kernel) loads the machine code instead of compiling it.
// An entry is keyed by the caller's description of the generated code (format, schedule, target)
// plus the toolchain, and written atomically (temporary file + rename), so concurrent processes can
// share one folder.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "Halide.h"
#include "dsl/result.h"

namespace tetra::dsl {

class CompiledObject {
 public:
  // One pointer per argument of the pipeline, in order (halide_buffer_t* for buffers, a pointer to
  // the value for scalars), then the output's halide_buffer_t*. Returns Halide's status (0: success).
  int call(void** argv) const { return fn_(argv); }
  bool from_cache() const { return from_cache_; }

 private:
  friend Result<std::shared_ptr<const CompiledObject>> load_or_compile_object(const std::string&, const std::string&,
                                                                              Halide::Pipeline,
                                                                              const std::vector<Halide::Argument>&,
                                                                              const Halide::Target&);
  std::shared_ptr<void> library_;
  int (*fn_)(void**) = nullptr;
  bool from_cache_ = false;
};

// Loads `key`'s object from `cache_dir`, or compiles `pipeline` for `target` into it first.
Result<std::shared_ptr<const CompiledObject>> load_or_compile_object(const std::string& cache_dir, const std::string& key,
                                                                      Halide::Pipeline pipeline,
                                                                      const std::vector<Halide::Argument>& args,
                                                                      const Halide::Target& target);

// ~/.cache/tetra/kernels (or $XDG_CACHE_HOME/tetra/kernels).
std::string default_kernel_cache_dir();

}  // namespace tetra::dsl
