// The launch plan (dsl/core/launch_plan.h) of a captured kernel: its parameters as the emitter declares
// them, and their values and the grid as expressions of the launch's inputs.
#pragma once
#include "dsl/core/launch_plan.h"
#include "dsl/gpu/device_kernel.h"

namespace tetra::dsl::gpu {

// A value that is not an integer expression (+ - * / % min max) of the inputs is a Failure naming the
// kernel.
Result<LaunchPlan> launch_plan_of(const DeviceKernel& kernel);

// "f32", "u8", ...: the launch plan's name of a scalar type; "" for one it has none for.
std::string param_type_name(const Halide::Type& t);

// A device job's entry for the buffer `name` holding `b` (tools/device_main.cpp): its "type", "extents"
// and, unless it is dense, "strides". `span_bytes` gets the bytes its memory spans from b.host, which the
// job's file or storage must hold. Fails unless its mins are 0 and its strides are positive.
Result<nlohmann::json> job_buffer_entry(const std::string& name, const halide_buffer_t& b, int64_t* span_bytes);

}  // namespace tetra::dsl::gpu
