// tetra-device: runs GPU kernels on an OpenCL device, in a process that never loads libHalide (pocl's
// LLVM and libHalide's cannot share one). tetra's GPU tests and the OpenCL path hand it a job:
//
//   tetra-device info              the device OpenCL gives, or why there is none (exit 2)
//   tetra-device run JOB.json      builds the job's source and runs its kernels in order
//
// JOB.json: {"source": FILE, "kernels": [launch plan, ...] (dsl/core/launch_plan.h),
//            "buffers": {NAME: {"type": "f32", "extents": [innermost first], "file": IN, "output": OUT}},
//            "scalars": {NAME: number}}   (a float goes to the kernel as float32)
// Buffers are dense with mins of 0: their fields ("A.extent.0", "A.stride.1", "A.min.0") and the scalars
// are the launch's inputs. A buffer with "file" starts with its bytes; one with "output" is written there
// afterwards. Prints {"device": ..., "ms": ...} and exits 0, or prints the error and exits 1.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "dsl/core/json_reader.h"
#include "dsl/core/launch_plan.h"
#include "runtime/gpu/opencl_device.h"

namespace {

using tetra::dsl::Failure;
using tetra::dsl::FailureKind;
using tetra::dsl::Status;

std::string read_text(const std::string& path, bool* ok) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  *ok = bool(in) || in.eof();
  return s.str();
}

Status run_job(const nlohmann::json& job, tetra::gpu::OpenCLDevice& device, double* ms) {
  tetra::dsl::JsonReader r(job, "device job");
  std::string source_path = r.text("source");
  const nlohmann::json* kernels = r.field("kernels");
  const nlohmann::json* buffers = r.field("buffers");
  const nlohmann::json* scalars = r.field("scalars");
  if (!r.ok()) return r.failure();
  if (!kernels->is_array() || !buffers->is_object() || !scalars->is_object())
    return Failure{FailureKind::BadJson, "device job", "\"kernels\" is an array, \"buffers\" and \"scalars\" objects"};
  bool ok = false;
  std::string source = read_text(source_path, &ok);
  if (!ok) return Failure{FailureKind::Run, source_path, "cannot read the kernel source"};

  std::map<std::string, int64_t> inputs;
  for (auto it = scalars->begin(); it != scalars->end(); ++it) {
    if (it->is_number_integer()) {
      inputs[it.key()] = it->get<int64_t>();
    } else if (it->is_number_float()) {  // a float parameter goes by its float32 bits
      float f = it->get<float>();
      uint32_t bits = 0;
      std::memcpy(&bits, &f, sizeof bits);
      inputs[it.key()] = int64_t(bits);
    } else {
      return Failure{FailureKind::BadJson, it.key(), "a scalar input is a number"};
    }
  }
  struct Output {
    std::string name, path;
    int64_t bytes;
  };
  std::vector<Output> outputs;
  if (Status st = device.build(source); !st) return st;
  for (auto it = buffers->begin(); it != buffers->end(); ++it) {
    tetra::dsl::JsonReader b(*it, "buffer " + it.key());
    tetra::dsl::KernelParam element;
    element.type = b.text("type");
    const nlohmann::json* extents = b.field("extents");
    const std::string file = it->contains("file") ? b.text("file") : "";
    const std::string output = it->contains("output") ? b.text("output") : "";
    if (b.ok() && !(extents->is_array() && std::all_of(extents->begin(), extents->end(), [](const nlohmann::json& e) {
                      return e.is_number_integer() && e.get<int64_t>() >= 0 && e.get<int64_t>() < (int64_t(1) << 31);
                    })))
      b.fail_with("\"extents\" must be integers from 0 to 2^31");
    if (b.ok() && element.bytes() == 4 && element.type != "f32" && element.type != "i32" && element.type != "u32")
      b.fail_with("\"type\" must be one of f32 f16 i8 u8 i16 u16 i32 u32 i64 u64, not \"" + element.type + "\"");
    if (!b.ok()) return b.failure();
    int64_t count = 1;
    for (size_t d = 0; d < extents->size(); ++d) {
      int64_t e = (*extents)[d].get<int64_t>();
      inputs[it.key() + ".min." + std::to_string(d)] = 0;
      inputs[it.key() + ".extent." + std::to_string(d)] = e;
      inputs[it.key() + ".stride." + std::to_string(d)] = count;
      count *= e;
    }
    const int64_t bytes = count * element.bytes();
    if (Status st = device.allocate(it.key(), bytes); !st) return st;
    if (!file.empty()) {
      std::string data = read_text(file, &ok);
      if (!ok || int64_t(data.size()) != bytes)
        return Failure{FailureKind::Run, it.key(), "its file does not hold " + std::to_string(bytes) + " bytes"};
      if (Status st = device.write(it.key(), data.data(), bytes); !st) return st;
    }
    if (!output.empty()) outputs.push_back({it.key(), output, bytes});
  }
  std::vector<tetra::dsl::LaunchPlan> plans;
  for (const nlohmann::json& k : *kernels) {
    auto plan = tetra::dsl::LaunchPlan::from_json(k);
    if (!plan) return plan.failure();
    plans.push_back(plan.value());
  }
  auto start = std::chrono::steady_clock::now();
  for (const tetra::dsl::LaunchPlan& plan : plans)
    if (Status st = device.launch(plan, inputs); !st) return st;
  *ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  for (const Output& o : outputs) {
    std::string data(size_t(o.bytes), '\0');
    if (Status st = device.read(o.name, data.data(), o.bytes); !st) return st;
    std::ofstream out(o.path, std::ios::binary);
    out.write(data.data(), std::streamsize(data.size()));
    if (!out) return Failure{FailureKind::Run, o.path, "cannot write the output"};
  }
  return tetra::dsl::ok_status();
}

}  // namespace

int main(int argc, char** argv) {
  std::string command = argc > 1 ? argv[1] : "";
  if (command != "info" && !(command == "run" && argc == 3)) {
    std::fprintf(stderr, "usage: tetra-device info | tetra-device run JOB.json\n");
    return 2;
  }
  auto device = tetra::gpu::OpenCLDevice::open();
  if (!device) {
    std::fprintf(stderr, "tetra-device: %s\n", device.failure().describe().c_str());
    return 2;
  }
  if (command == "info") {
    std::cout << nlohmann::json{{"device", device.value()->name()}}.dump() << "\n";
    return 0;
  }
  bool ok = false;
  std::string text = read_text(argv[2], &ok);
  nlohmann::json job = nlohmann::json::parse(text, nullptr, false);
  if (!ok || job.is_discarded()) {
    std::fprintf(stderr, "tetra-device: %s is not a readable JSON job\n", argv[2]);
    return 1;
  }
  double ms = 0;
  Status st = run_job(job, *device.value(), &ms);
  if (!st) {
    std::fprintf(stderr, "tetra-device: %s\n", st.failure().describe().c_str());
    return 1;
  }
  std::cout << nlohmann::json{{"device", device.value()->name()}, {"ms", ms}}.dump() << "\n";
  return 0;
}
