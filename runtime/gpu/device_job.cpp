#include "runtime/gpu/device_job.h"

#include <algorithm>
#include <cstring>

#include "dsl/core/json_reader.h"
#include "dsl/core/seeded_fill.h"
#include "runtime/gpu/hip_device.h"
#include "runtime/gpu/pick_code_object.h"

namespace tetra::gpu {
namespace {

using dsl::Failure;
using dsl::FailureKind;
using dsl::Result;
using dsl::Status;

// The file of the job's program: "source" itself, or the code object of the device's arch when a HIP job
// offers one per arch.
Result<std::string> source_file(const nlohmann::json& source, Device& device) {
  if (source.is_string()) return source.get<std::string>();
  const auto* hip = dynamic_cast<const HipDevice*>(&device);
  if (!hip || !source.is_object() || source.empty() ||
      !std::all_of(source.begin(), source.end(), [](const nlohmann::json& f) { return f.is_string(); }))
    return Failure{
        FailureKind::BadJson, "device job",
        "\"source\" must be a file, or for a hip job an object of code-object files by arch, not " + source.dump()};
  return pick_code_object(source.get<std::map<std::string, std::string>>(), hip->arch());
}

}  // namespace

Status launch(Device& device, const dsl::LaunchPlan& plan, const std::map<std::string, int64_t>& inputs) {
  Status st = device.launch(plan, inputs);
  if (st || plan.node.empty()) return st;
  Failure named = st.failure();
  named.message = "running " + plan.node + ": " + named.message;
  return named;
}

Status LoadedJob::enqueue(Device& device) const {
  for (const dsl::LaunchPlan& plan : plans)
    if (Status st = launch(device, plan, inputs); !st) return st;
  return dsl::ok_status();
}

Result<LoadedJob> load_job(const nlohmann::json& job, const JobFileReader& read_file, Device& device) {
  dsl::JsonReader r(job, "device job");
  const nlohmann::json* source_field = r.field("source");
  const nlohmann::json* kernels = r.field("kernels");
  const nlohmann::json* buffers = r.field("buffers");
  const nlohmann::json* scalars = r.field("scalars");
  if (!r.ok()) return r.failure();
  if (!kernels->is_array() || !buffers->is_object() || !scalars->is_object())
    return Failure{FailureKind::BadJson, "device job", "\"kernels\" is an array, \"buffers\" and \"scalars\" objects"};
  Result<std::string> source_name = source_file(*source_field, device);
  if (!source_name) return source_name.failure();
  Result<std::string> source = read_file(source_name.value());
  if (!source) return source.failure();

  LoadedJob loaded;
  std::map<std::string, int64_t>& inputs = loaded.inputs;
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
  if (Status st = device.build(source.value()); !st) return st.failure();
  // Views ("alias") after the buffers they view.
  std::vector<nlohmann::json::const_iterator> entries;
  for (auto it = buffers->cbegin(); it != buffers->cend(); ++it)
    if (!it->contains("alias")) entries.push_back(it);
  for (auto it = buffers->cbegin(); it != buffers->cend(); ++it)
    if (it->contains("alias")) entries.push_back(it);
  for (const nlohmann::json::const_iterator& it : entries) {
    dsl::JsonReader b(*it, "buffer " + it.key());
    dsl::KernelParam element;
    element.type = b.text("type");
    const nlohmann::json* extents = b.field("extents");
    const std::string file = it->contains("file") ? b.text("file") : "";
    const std::string output = it->contains("output") ? b.text("output") : "";
    const nlohmann::json* fill = it->contains("fill") ? b.field("fill") : nullptr;
    const nlohmann::json* strides = it->contains("strides") ? b.field("strides") : nullptr;
    auto below_2_31 = [](const nlohmann::json& e) {
      return e.is_number_integer() && e.get<int64_t>() >= 0 && e.get<int64_t>() < (int64_t(1) << 31);
    };
    if (b.ok() && !(extents->is_array() && std::all_of(extents->begin(), extents->end(), below_2_31)))
      b.fail_with("\"extents\" must be integers from 0 to 2^31");
    if (b.ok() && strides &&
        !(strides->is_array() && strides->size() == extents->size() &&
          std::all_of(strides->begin(), strides->end(), below_2_31)))
      b.fail_with("\"strides\" must be as many integers from 0 to 2^31 as \"extents\"");
    if (b.ok() && element.bytes() == 4 && element.type != "f32" && element.type != "i32" && element.type != "u32")
      b.fail_with("\"type\" must be one of f32 f16 i8 u8 i16 u16 i32 u32 i64 u64, not \"" + element.type + "\"");
    if (b.ok() && fill &&
        !(fill->is_object() && fill->contains("seed") && (*fill)["seed"].is_number_unsigned() && fill->contains("lo") &&
          (*fill)["lo"].is_number() && fill->contains("hi") && (*fill)["hi"].is_number()))
      b.fail_with("\"fill\" is {\"seed\": an unsigned integer, \"lo\": a number, \"hi\": a number}");
    if (!b.ok()) return b.failure();
    // `count`: the elements the buffer's memory spans, from the first to one past the last.
    int64_t dense = 1, last = 0;
    bool empty = false;
    for (size_t d = 0; d < extents->size(); ++d) {
      const int64_t e = (*extents)[d].get<int64_t>(), stride = strides ? (*strides)[d].get<int64_t>() : dense;
      inputs[it.key() + ".min." + std::to_string(d)] = 0;
      inputs[it.key() + ".extent." + std::to_string(d)] = e;
      inputs[it.key() + ".stride." + std::to_string(d)] = stride;
      dense *= e;
      empty = empty || e == 0;
      last += (e - 1) * stride;
      if (last >= (int64_t(1) << 40)) {
        b.fail_with("spans more than 2^40 elements");
        return b.failure();
      }
    }
    const int64_t count = empty ? 0 : last + 1;
    const int64_t bytes = count * element.bytes();
    if (it->contains("alias")) {  // a view: its own fields over another buffer's memory, which kernels bind
      const std::string of = b.text("alias");
      auto base = loaded.buffer_bytes.find(of);
      if (b.ok() && (base == loaded.buffer_bytes.end() || (*buffers)[of].contains("alias")))
        b.fail_with("\"alias\" names a buffer of the job that is no view, not \"" + of + "\"");
      if (b.ok() && (base->second < bytes || (*buffers)[of]["type"] != (*it)["type"]))
        b.fail_with("views more than " + of + " holds, or as another type");
      if (b.ok() && (!file.empty() || fill || !output.empty()))
        b.fail_with("a view has no contents of its own (\"file\", \"fill\", \"output\")");
      if (!b.ok()) return b.failure();
      continue;
    }
    if (element.type == "f32") loaded.float_elements[it.key()] = count;
    loaded.buffer_bytes[it.key()] = bytes;
    if (Status st = device.allocate(it.key(), bytes); !st) return st.failure();
    if (!file.empty()) {
      Result<std::string> data = read_file(file);
      if (!data) return data.failure();
      if (int64_t(data.value().size()) != bytes)
        return Failure{FailureKind::Run, it.key(), "its file does not hold " + std::to_string(bytes) + " bytes"};
      if (Status st = device.write(it.key(), data.value().data(), bytes); !st) return st.failure();
    } else if (fill) {
      std::vector<char> data(static_cast<size_t>(bytes));
      if (!dsl::seeded_fill(data.data(), count, element.type, (*fill)["seed"].get<uint64_t>(),
                            (*fill)["lo"].get<double>(), (*fill)["hi"].get<double>()))
        return Failure{FailureKind::BadJson, it.key(), "no fill for type " + element.type};
      if (Status st = device.write(it.key(), data.data(), bytes); !st) return st.failure();
    }
    if (!output.empty()) loaded.outputs.push_back({it.key(), output, bytes});
  }
  for (const nlohmann::json& k : *kernels) {
    auto plan = dsl::LaunchPlan::from_json(k);
    if (!plan) return plan.failure();
    if (Status st = dsl::check_touched(plan.value(), loaded.inputs); !st) return st.failure();
    loaded.plans.push_back(plan.value());
  }
  return loaded;
}

}  // namespace tetra::gpu
