// Compiled code as every tetra kernel calls it: Halide's argv convention, one pointer per pipeline
// argument in order (a halide_buffer_t* for a buffer, a pointer to the value for a scalar), then the
// output's halide_buffer_t*. The code may come from the JIT (dsl/jit_pipeline.h), from a shared
// object in the kernel cache (dsl/object_cache.h) or from a model library compiled ahead of time
// (runtime/aot/); callers cannot tell which. No libHalide needed.
#pragma once
#include <string>

#include "HalideRuntime.h"
#include "dsl/core/result.h"

namespace tetra::dsl {

class CompiledPipeline {
 public:
  virtual ~CompiledPipeline() = default;
  // Returns Halide's status: 0 on success, a halide_error_code_t otherwise.
  virtual int call(void** argv) const = 0;
};

// The message of the last failed call on this thread (Halide's error text), for error reports.
const std::string& last_pipeline_error();
void set_last_pipeline_error(std::string message);

// Calls `code`; a failure names `what` and carries Halide's message.
Status call_pipeline(const CompiledPipeline& code, void** argv, const std::string& what);

// Code compiled ahead of time: the `<name>_argv` entry point Halide writes next to each function.
class ArgvFunction : public CompiledPipeline {
 public:
  using Fn = int (*)(void**);
  explicit ArgvFunction(Fn fn) : fn_(fn) {}
  int call(void** argv) const override { return fn_(argv); }

 private:
  Fn fn_;
};

}  // namespace tetra::dsl
