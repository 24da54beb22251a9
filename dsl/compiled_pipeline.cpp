#include "dsl/compiled_pipeline.h"

namespace tetra::dsl {
namespace {
thread_local std::string last_error;
}

const std::string& last_pipeline_error() { return last_error; }
void set_last_pipeline_error(std::string message) { last_error = std::move(message); }

}  // namespace tetra::dsl
