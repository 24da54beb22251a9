#include "dsl/core/compiled_pipeline.h"

namespace tetra::dsl {
namespace {
thread_local std::string last_error;
}

const std::string& last_pipeline_error() { return last_error; }
void set_last_pipeline_error(std::string message) { last_error = std::move(message); }

Status call_pipeline(const CompiledPipeline& code, void** argv, const std::string& what) {
  last_error.clear();
  int rc = code.call(argv);
  if (rc == 0) return ok_status();
  return Failure{FailureKind::Run, what,
                 "the kernel returned Halide error " + std::to_string(rc) + (last_error.empty() ? "" : ": " + last_error)};
}

}  // namespace tetra::dsl
