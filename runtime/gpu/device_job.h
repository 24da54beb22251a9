// A device job (the JSON that tools/device_main.cpp documents) loaded onto a device: its program built, its
// buffers allocated and filled, its launches parsed. tetra-device runs jobs from a folder; a model library
// runs the jobs built into it (runtime/aot/aot_runtime.cpp) from its own bytes.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dsl/core/launch_plan.h"
#include "dsl/core/result.h"
#include "runtime/gpu/device.h"

namespace tetra::gpu {

// The contents of a file the job names; a Failure names the file.
using JobFileReader = std::function<dsl::Result<std::string>(const std::string& file)>;

struct LoadedJob {
  struct Output {
    std::string buffer, file;
    int64_t bytes = 0;
  };
  std::vector<dsl::LaunchPlan> plans;             // in launch order
  std::map<std::string, int64_t> inputs;          // the launches' inputs: scalars and every buffer's fields
  std::map<std::string, int64_t> buffer_bytes;    // the buffers allocated (views have none of their own)
  std::map<std::string, int64_t> float_elements;  // of the float32 ones
  std::vector<Output> outputs;                    // buffers marked "output", with their files

  // Enqueues every launch, in order.
  dsl::Status enqueue(Device& device) const;
};

// device.launch(plan, inputs), whose Failure names the graph node the plan runs for, where it names one.
dsl::Status launch(Device& device, const dsl::LaunchPlan& plan, const std::map<std::string, int64_t>& inputs);

// Builds the job's program on `device` (the code object of the device's arch, where a hip job offers one
// per arch), allocates its buffers and writes those with a "file" or a "fill". A Failure names the buffer
// or field at fault.
dsl::Result<LoadedJob> load_job(const nlohmann::json& job, const JobFileReader& read_file, Device& device);

}  // namespace tetra::gpu
