// A defined and scheduled Halide pipeline, before it is compiled, and the ways to compile it: in this
// process (JIT), or to an object file for a model library or the kernel cache.
#pragma once
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "Halide.h"
#include "dsl/core/compiled_pipeline.h"
#include "dsl/core/result.h"

namespace tetra::dsl {

// One pipeline argument, as the JIT binds it.
using PipelineParam = std::variant<Halide::ImageParam, Halide::Param<float>, Halide::Param<int>>;

struct ScheduledPipeline {
  Halide::Pipeline pipeline;
  std::vector<PipelineParam> params;  // the arguments in call order (the output comes after them)

  std::vector<Halide::Argument> arguments() const;
};

// The key of compiled code in the kernel caches (the process-wide one and the one on disk): `code`,
// what the generated code depends on (format, epilogue, schedule; never the shapes), then the Halide
// target it is compiled for and the toolchain. Every path that compiles a kernel (run, compile, the
// tuner's workers) keys it with this, so they share what any of them built.
std::string code_key(const std::string& code, const Halide::Target& target);

// JIT-compiles `p` for `target`; the result binds argv onto the params and realizes. Realizations of
// one compiled pipeline are serialised (Halide's JIT parameters are shared state).
Result<std::shared_ptr<const CompiledPipeline>> jit_compile(const ScheduledPipeline& p, const Halide::Target& target);

// Writes `p` as an object file defining `function` and `function`_argv for `target`.
Status compile_to_object(const ScheduledPipeline& p, const std::string& path, const std::string& function,
                         const Halide::Target& target);

}  // namespace tetra::dsl
