// The runtime of model libraries compiled by `tetra compile`: the same Executor and node kernels as
// the JIT runtime, with their code from the library's kernel table instead of the Halide compiler.
// Every entry point catches everything: a bad argument or a failed kernel is a status code and a
// message (tetra_aot_last_error, per thread), never an exception or an abort.
//
// Thread safety: instances are independent; one instance runs one call at a time (its calls are
// serialised by a mutex). The deserialised graph is shared by the instances of a library.
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <new>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "HalideRuntime.h"
#include "importer/error.h"
#include "runtime/aot/aot_abi.h"
#include "runtime/executor.h"
#include "runtime/gpu/device_job.h"
#include "runtime/graph_io.h"
#include "runtime/kernel_source.h"

namespace tetra {
namespace {

thread_local std::string last_error;

int failed(int code, std::string message) {
  last_error = std::move(message);
  return code;
}

// Halide's runtime reports errors through this handler; the kernel call that failed reads it.
void halide_error_to_message(void*, const char* message) { dsl::set_last_pipeline_error(message); }

// The library's kernel table as a KernelSource.
class TableKernelSource : public KernelSource {
 public:
  explicit TableKernelSource(const tetra_aot_model& model) : model_(model) {
    for (size_t i = 0; i < model.num_kernels; ++i) by_key_[model.kernels[i].key] = &model.kernels[i];
  }

  KernelCode get(const KernelRequest& request) override {
    std::string key = request.key();
    auto it = by_key_.find(key);
    check(it != by_key_.end(), ErrorKind::Invalid,
          request.node + ": the library has no kernel for '" + key +
              "' (it was compiled for other shapes; compile it again with --shape)");
    const tetra_aot_kernel& k = *it->second;
    KernelCode code;
    code.pipeline = std::make_shared<dsl::ArgvFunction>(k.fn);
    code.schedule = k.schedule;
    code.source = std::string("compiled ahead of time, ") + k.source;
    if (*k.spec) {
      nlohmann::json j = nlohmann::json::parse(k.spec, nullptr, /*allow_exceptions=*/false);
      dsl::Result<dsl::KernelSpec> spec = dsl::KernelSpec::from_json(j);
      check(spec.ok(), ErrorKind::Malformed,
            "the library's kernel '" + key + "' has a bad spec: " + (spec.ok() ? "" : spec.failure().describe()));
      code.spec = spec.value();
    }
    code.layout = {k.panel, k.k_align, code.spec.layout == dsl::LayoutKind::Vnni};
    return code;
  }
  int vector_lanes() const override { return model_.vector_lanes; }

 private:
  const tetra_aot_model& model_;
  std::map<std::string, const tetra_aot_kernel*> by_key_;
};

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  check(bool(in), ErrorKind::Io, "cannot open the weights file '" + path + "'");
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// The graph of a library (from a weights file when given), deserialised once and shared.
std::shared_ptr<const Graph> graph_of(const tetra_aot_model& model, const char* weights_path) {
  static std::mutex mutex;
  static std::map<std::pair<const tetra_aot_model*, std::string>, std::shared_ptr<const Graph>> graphs;
  std::string path = weights_path ? weights_path : "";
  std::lock_guard<std::mutex> lock(mutex);
  auto key = std::make_pair(&model, path);
  auto it = graphs.find(key);
  if (it != graphs.end()) return it->second;
  std::shared_ptr<const Graph> graph;
  if (model.graph) {
    check(path.empty(), ErrorKind::Invalid,
          std::string("model '") + model.name + "' has its weights built in; create it without a weights file");
    graph = std::make_shared<Graph>(deserialize_graph(model.graph, model.graph_size, model.name));
  } else {
    check(!path.empty(), ErrorKind::Invalid,
          std::string("model '") + model.name + "' keeps its weights in a file: create it from that file");
    std::vector<uint8_t> bytes = read_file(path);
    check(fnv1a64(bytes.data(), bytes.size()) == model.weights_checksum, ErrorKind::Io,
          "the weights file '" + path + "' does not match model '" + model.name + "' (checksum differs)");
    graph = std::make_shared<Graph>(deserialize_graph(bytes.data(), bytes.size(), path));
  }
  graphs.emplace(key, graph);
  return graph;
}

// The library's GPU job, loaded on its device: what an instance runs when create chose a GPU.
struct GpuInstance {
  std::unique_ptr<gpu::Device> device;
  gpu::LoadedJob job;
  std::vector<std::string> input_buffers, output_buffers;  // the job's buffers, by graph input/output index
};

bool is_dialect(const std::string& s) { return s == "hip" || s == "cuda" || s == "opencl"; }

// Whether a device of `device_arch` runs a program built for `arch`: an AMD code object runs on its own
// processor (the target ID before ':'), PTX on its SM version and newer, OpenCL C anywhere.
bool runs_program(const tetra_aot_gpu_job& job, const std::string& device_arch) {
  const std::string dialect = job.dialect, arch = job.arch;
  if (dialect == "hip") return device_arch.substr(0, device_arch.find(':')) == arch;
  if (dialect == "cuda") {
    auto sm = [](const std::string& a) { return a.rfind("sm_", 0) == 0 ? std::atoi(a.c_str() + 3) : -1; };
    return sm(arch) > 0 && sm(device_arch) >= sm(arch);
  }
  return true;
}

// Loads `job` on `device`, its files read from the library's bytes.
std::unique_ptr<GpuInstance> load_gpu_job(const tetra_aot_gpu_job& job, std::unique_ptr<gpu::Device> device,
                                          const Graph& graph) {
  nlohmann::json j = nlohmann::json::parse(job.job.data, job.job.data + job.job.size, nullptr, false);
  check(!j.is_discarded() && j.contains("model"), ErrorKind::Malformed,
        std::string("the library's GPU job for ") + job.target + " is not a model job");
  auto read_file = [&](const std::string& name) -> dsl::Result<std::string> {
    for (size_t i = 0; i < job.num_files; ++i)
      if (name == job.files[i].name)
        return std::string(reinterpret_cast<const char*>(job.files[i].data), size_t(job.files[i].size));
    return dsl::Failure{dsl::FailureKind::Run, name, "is not built into the library"};
  };
  dsl::Result<gpu::LoadedJob> loaded = gpu::load_job(j, read_file, *device);
  check(loaded.ok(), ErrorKind::Unsupported,
        std::string(job.target) + ": " + (loaded.ok() ? "" : loaded.failure().describe()));
  auto g = std::make_unique<GpuInstance>();
  g->device = std::move(device);
  g->job = std::move(loaded).value();
  for (auto [values, list, buffers] : {std::tuple{&graph.inputs, "inputs", &g->input_buffers},
                                       std::tuple{&graph.outputs, "outputs", &g->output_buffers}})
    for (const ValueInfo& v : *values) {
      const nlohmann::json& named = j["model"][list];
      check(named.contains(v.name) && named[v.name].is_string() && g->job.buffer_bytes.count(named[v.name]),
            ErrorKind::Malformed,
            std::string("the library's GPU job for ") + job.target + " has no buffer for '" + v.name + "'");
      buffers->push_back(named[v.name].get<std::string>());
    }
  return g;
}

}  // namespace
}  // namespace tetra

struct tetra_aot_instance {
  static constexpr uint64_t kLive = 0x7465747261414f54ull;  // "tetraAOT"
  uint64_t magic = kLive;                                    // cleared by destroy
  std::mutex mutex;
  std::shared_ptr<const tetra::Graph> graph;
  std::unique_ptr<tetra::Executor> executor;
  std::unique_ptr<tetra::GpuInstance> gpu;  // set when the instance runs on a GPU
  std::string device = "cpu", device_note;
  std::vector<void*> inputs, outputs;  // bound caller memory, nullptr until bound
  std::vector<bool> input_on_device, output_on_device;  // bound device memory (GPU instances)
  std::vector<std::vector<int64_t>> input_shapes, output_shapes;
};

using namespace tetra;

namespace {

// Every instance that create made and destroy has not yet freed. A handle is checked here before it
// is read, so a destroyed or foreign pointer is an error code, never a read of freed memory.
std::mutex live_mutex;
std::set<const tetra_aot_instance*>& live_instances() {
  static auto* live = new std::set<const tetra_aot_instance*>;  // never destroyed: handles may outlive statics
  return *live;
}

bool is_live(const tetra_aot_instance* m) {
  std::lock_guard<std::mutex> lock(live_mutex);
  return m && live_instances().count(m) && m->magic == tetra_aot_instance::kLive;
}

// The message for a handle that fails is_live.
std::string bad_handle(const char* call, const tetra_aot_instance* m) {
  return std::string(call) + (m ? ": the model handle is not a live instance (destroyed, or never created)"
                                : ": the model is NULL");
}

const ValueInfo* value_of(const tetra_aot_instance* m, int outputs, int index) {
  if (!is_live(m)) return nullptr;
  const std::vector<ValueInfo>& list = outputs ? m->graph->outputs : m->graph->inputs;
  if (index < 0 || size_t(index) >= list.size()) return nullptr;
  return &list[size_t(index)];
}

// Runs `body`, turning every exception into a status code and the thread's last error: unreadable or
// foreign model data is BAD_WEIGHTS, other errors `invalid`.
template <class F>
int guarded(int invalid, F&& body) {
  try {
    last_error.clear();
    return body();
  } catch (const Error& e) {
    bool data = e.kind() == ErrorKind::Io || e.kind() == ErrorKind::Malformed;
    return failed(data ? TETRA_AOT_BAD_WEIGHTS : invalid, e.what());
  } catch (const std::bad_alloc&) {
    return failed(TETRA_AOT_OUT_OF_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    return failed(TETRA_AOT_RUN_FAILED, e.what());
  }
}

}  // namespace

extern "C" {

int tetra_aot_create(const tetra_aot_model* model, const char* weights_path, tetra_aot_instance** out) {
  return tetra_aot_create_on(model, weights_path, "auto", out);
}

int tetra_aot_create_on(const tetra_aot_model* model, const char* weights_path, const char* device,
                        tetra_aot_instance** out) {
  if (!out) return failed(TETRA_AOT_INVALID_ARGUMENT, "create: the result pointer is NULL");
  *out = nullptr;
  if (!model || model->abi_version != TETRA_AOT_ABI_VERSION)
    return failed(TETRA_AOT_INVALID_ARGUMENT, "create: the library's glue and runtime do not match");
  std::string wanted = device && *device ? device : "auto";
  if (size_t colon = wanted.find(':'); colon != std::string::npos) wanted[colon] = '-';  // hip:gfx942 = hip-gfx942
  std::string targets;
  bool known = wanted == "auto" || wanted == "cpu" || wanted == "gpu" || is_dialect(wanted);
  for (size_t i = 0; i < model->num_gpu_jobs; ++i) {
    known = known || wanted == model->gpu_jobs[i].target;
    targets += std::string(", ") + model->gpu_jobs[i].target;
  }
  if (!known)
    return failed(TETRA_AOT_INVALID_ARGUMENT, "create: no device '" + wanted +
                                                  "': ask for auto, cpu, gpu, hip, cuda, opencl or one of the "
                                                  "library's GPU targets (" +
                                                  (targets.empty() ? "it has none" : targets.substr(2)) + ")");
  return guarded(TETRA_AOT_INVALID_ARGUMENT, [&] {
    halide_set_error_handler(halide_error_to_message);
    auto m = std::make_unique<tetra_aot_instance>();
    m->graph = graph_of(*model, weights_path);
    // The first of the library's GPU jobs whose device is here, in the order of its targets.
    std::vector<std::string> notes;
    std::set<std::string> unavailable;  // drivers that did not open, said once in the notes
    for (size_t i = 0; i < model->num_gpu_jobs && wanted != "cpu" && !m->gpu; ++i) {
      const tetra_aot_gpu_job& job = model->gpu_jobs[i];
      if (wanted != "auto" && wanted != "gpu" && wanted != job.dialect && wanted != job.target) continue;
      if (unavailable.count(job.dialect)) continue;
      dsl::Result<std::unique_ptr<gpu::Device>> opened = gpu::open_device(job.dialect);
      if (!opened) {
        unavailable.insert(job.dialect);
        notes.push_back(std::string(job.dialect) + ": " + opened.failure().describe());
        continue;
      }
      if (!runs_program(job, opened.value()->arch())) {
        notes.push_back(std::string(job.target) + ": the device is " + opened.value()->name());
        continue;
      }
      try {  // the device is here and runs the code: a failure now is a fault to report, not a reason to fall back
        m->gpu = load_gpu_job(job, std::move(opened).value(), *m->graph);
      } catch (const Error& e) {
        return failed(TETRA_AOT_RUN_FAILED, std::string("create: ") + e.what());
      }
      m->device = job.target;
    }
    std::string note;
    for (const std::string& n : notes) note += (note.empty() ? "" : "; ") + n;
    if (!m->gpu && wanted != "auto" && wanted != "cpu")
      return failed(TETRA_AOT_NO_DEVICE, "create: no device for '" + wanted +
                                             "': " + (note.empty() ? "the library has no GPU code for it" : note));
    if (!m->gpu) {
      m->executor = std::make_unique<Executor>(*m->graph, std::make_shared<TableKernelSource>(*model));
      m->device_note = note;
    }
    m->inputs.resize(m->graph->inputs.size());
    m->outputs.resize(m->graph->outputs.size());
    m->input_on_device.resize(m->inputs.size());
    m->output_on_device.resize(m->outputs.size());
    for (const ValueInfo& v : m->graph->inputs) m->input_shapes.push_back(to_shape(v.shape));
    for (const ValueInfo& v : m->graph->outputs) m->output_shapes.push_back(to_shape(v.shape));
    std::lock_guard<std::mutex> lock(live_mutex);
    live_instances().insert(m.get());
    *out = m.release();
    return int(TETRA_AOT_OK);
  });
}

void tetra_aot_destroy(tetra_aot_instance* instance) {
  if (!instance) return;
  {
    std::lock_guard<std::mutex> lock(live_mutex);
    if (!live_instances().erase(instance)) {  // destroyed twice, or never created: nothing to free
      failed(TETRA_AOT_INVALID_ARGUMENT, bad_handle("destroy", instance));
      return;
    }
    instance->magic = 0;
  }
  {
    std::lock_guard<std::mutex> wait_for_run(instance->mutex);  // a call already running finishes first
  }
  delete instance;
}

const char* tetra_aot_last_error(void) { return last_error.c_str(); }

extern "C" void tetra_par_for_set_threads(int threads);

int tetra_aot_set_num_threads(int threads) {
  if (threads < 1) return failed(TETRA_AOT_INVALID_ARGUMENT, "set_num_threads: threads must be at least 1");
  halide_set_num_threads(threads);   // nested loops
  tetra_par_for_set_threads(threads);  // the rest (dsl/par_for_chunks.h, in the library's glue)
  return TETRA_AOT_OK;
}

int tetra_aot_count(const tetra_aot_instance* m, int outputs) {
  if (!is_live(m)) {
    failed(TETRA_AOT_INVALID_ARGUMENT, bad_handle("count", m));
    return -1;
  }
  return int(outputs ? m->graph->outputs.size() : m->graph->inputs.size());
}

const char* tetra_aot_name(const tetra_aot_instance* m, int outputs, int index) {
  const ValueInfo* v = value_of(m, outputs, index);
  return v ? v->name.c_str() : nullptr;
}

int tetra_aot_dtype(const tetra_aot_instance* m, int outputs, int index) {
  const ValueInfo* v = value_of(m, outputs, index);
  return v ? int(v->dtype) : 0;
}

int tetra_aot_rank(const tetra_aot_instance* m, int outputs, int index) {
  const ValueInfo* v = value_of(m, outputs, index);
  return v ? int(v->shape.size()) : -1;
}

const int64_t* tetra_aot_shape(const tetra_aot_instance* m, int outputs, int index) {
  if (!value_of(m, outputs, index)) return nullptr;
  return (outputs ? m->output_shapes : m->input_shapes)[size_t(index)].data();
}

const char* tetra_aot_device(const tetra_aot_instance* m) { return is_live(m) ? m->device.c_str() : nullptr; }

const char* tetra_aot_device_note(const tetra_aot_instance* m) { return is_live(m) ? m->device_note.c_str() : nullptr; }

}  // extern "C"

namespace {

// Binds caller memory, host or device, after checking the value's type and shape.
int bind(tetra_aot_instance* m, int outputs, int index, int dtype, const int64_t* shape, int rank, void* data,
         bool on_device) {
  const char* what = outputs ? "output" : "input";
  const std::string call = on_device ? "bind_device" : "bind";
  const ValueInfo* v = value_of(m, outputs, index);
  if (!v)
    return failed(TETRA_AOT_INVALID_ARGUMENT,
                  is_live(m) ? call + ": no " + what + " " + std::to_string(index) : bad_handle(call.c_str(), m));
  std::string label = call + " " + what + " '" + v->name + "'";
  if (!data) return failed(TETRA_AOT_INVALID_ARGUMENT, label + ": the data pointer is NULL");
  if (dtype != int(v->dtype))
    return failed(TETRA_AOT_INVALID_ARGUMENT, label + ": it is " + dtype_name(v->dtype) + ", not " +
                                                  dtype_name(dtype_from_onnx(dtype)) + " (code " +
                                                  std::to_string(dtype) + ")");
  const std::vector<int64_t>& expected = (outputs ? m->output_shapes : m->input_shapes)[size_t(index)];
  bool shape_given = rank == 0 || (rank > 0 && shape);
  std::vector<int64_t> got = shape_given ? std::vector<int64_t>(shape, shape + rank) : std::vector<int64_t>{};
  if (!shape_given || got != expected)
    return failed(TETRA_AOT_INVALID_ARGUMENT, label + ": its shape is " + shape_str(expected) + ", not " +
                                                  (shape_given ? shape_str(got) : std::string("(no shape given)")));
  std::lock_guard<std::mutex> lock(m->mutex);
  if (on_device && !m->gpu)
    return failed(TETRA_AOT_INVALID_ARGUMENT,
                  label + ": the instance runs on the cpu, which has no device memory: bind host memory");
  if (on_device && v->dtype != DType::Float32 && v->dtype != DType::Int32)
    return failed(TETRA_AOT_INVALID_ARGUMENT, label + ": the GPU holds it as " +
                                                  (v->dtype == DType::Int64 ? "int32" : "float32") + ", not " +
                                                  dtype_name(v->dtype) + ": bind host memory");
  if (on_device && uintptr_t(data) % dsl::kDeviceBufferAlignment != 0)
    return failed(TETRA_AOT_INVALID_ARGUMENT, label + ": device memory must start at a multiple of " +
                                                  std::to_string(dsl::kDeviceBufferAlignment) +
                                                  " bytes (the kernels load 16 bytes at a time)");
  if (m->gpu) {
    const std::string& buffer = (outputs ? m->gpu->output_buffers : m->gpu->input_buffers)[size_t(index)];
    std::vector<bool>& on = outputs ? m->output_on_device : m->input_on_device;
    const int64_t bytes = m->gpu->job.buffer_bytes.at(buffer);
    dsl::Status st = on_device           ? m->gpu->device->adopt(buffer, uint64_t(uintptr_t(data)), bytes)
                     : on[size_t(index)] ? m->gpu->device->allocate(buffer, bytes)  // the device's own again
                                         : dsl::ok_status();
    if (!st)
      return failed(on_device ? TETRA_AOT_INVALID_ARGUMENT : TETRA_AOT_RUN_FAILED,
                    label + " on " + m->device + ": " + st.failure().describe());
    on[size_t(index)] = on_device;
  }
  (outputs ? m->outputs : m->inputs)[size_t(index)] = data;
  return TETRA_AOT_OK;
}

// One run on the instance's GPU: host inputs written, the launches, host outputs read back.
int run_on_gpu(tetra_aot_instance* m) {
  GpuInstance& g = *m->gpu;
  auto fault = [&](const dsl::Status& st) {
    return failed(TETRA_AOT_RUN_FAILED, "run on " + m->device + ": " + st.failure().describe());
  };
  // Float16 values are float32 on the device, int64 inputs (indices) int32: converted on the way in
  // and out.
  std::vector<float> staging;
  std::vector<int32_t> indices;
  for (size_t i = 0; i < m->inputs.size(); ++i) {
    if (m->input_on_device[i]) continue;
    const int64_t bytes = g.job.buffer_bytes.at(g.input_buffers[i]);
    const void* data = m->inputs[i];
    if (m->graph->inputs[i].dtype == DType::Float16) {
      staging.resize(size_t(bytes / 4));
      for (size_t k = 0; k < staging.size(); ++k) staging[k] = half_to_float(static_cast<const uint16_t*>(data)[k]);
      data = staging.data();
    }
    if (m->graph->inputs[i].dtype == DType::Int64) {
      indices.resize(size_t(bytes / 4));
      for (size_t k = 0; k < indices.size(); ++k) {
        const int64_t v = static_cast<const int64_t*>(data)[k];
        if (v < INT32_MIN || v > INT32_MAX)
          return failed(TETRA_AOT_INVALID_ARGUMENT, "run: input '" + m->graph->inputs[i].name + "' holds " +
                                                        std::to_string(v) + ", beyond the int32 the GPU holds it in");
        indices[k] = int32_t(v);
      }
      data = indices.data();
    }
    if (dsl::Status st = g.device->write(g.input_buffers[i], data, bytes); !st) return fault(st);
  }
  if (dsl::Status st = g.job.enqueue(*g.device); !st) return fault(st);
  for (size_t i = 0; i < m->outputs.size(); ++i) {
    if (m->output_on_device[i]) continue;
    const int64_t bytes = g.job.buffer_bytes.at(g.output_buffers[i]);
    const bool half = m->graph->outputs[i].dtype == DType::Float16;
    if (half) staging.resize(size_t(bytes / 4));
    if (dsl::Status st = g.device->read(g.output_buffers[i], half ? staging.data() : m->outputs[i], bytes); !st)
      return fault(st);
    if (half)
      for (size_t k = 0; k < staging.size(); ++k) static_cast<uint16_t*>(m->outputs[i])[k] = float_to_half(staging[k]);
  }
  if (dsl::Status st = g.device->finish(); !st) return fault(st);  // device outputs are written on return
  return TETRA_AOT_OK;
}

}  // namespace

extern "C" {

int tetra_aot_bind(tetra_aot_instance* m, int outputs, int index, int dtype, const int64_t* shape, int rank,
                   void* data) {
  return bind(m, outputs, index, dtype, shape, rank, data, false);
}

int tetra_aot_bind_device(tetra_aot_instance* m, int outputs, int index, int dtype, const int64_t* shape, int rank,
                          void* device_ptr) {
  return bind(m, outputs, index, dtype, shape, rank, device_ptr, true);
}

int tetra_aot_run(tetra_aot_instance* m) {
  if (!is_live(m)) return failed(TETRA_AOT_INVALID_ARGUMENT, bad_handle("run", m));
  std::lock_guard<std::mutex> lock(m->mutex);
  last_error.clear();
  for (size_t i = 0; i < m->inputs.size(); ++i)
    if (!m->inputs[i]) return failed(TETRA_AOT_INVALID_ARGUMENT, "run: input '" + m->graph->inputs[i].name + "' is not bound");
  for (size_t i = 0; i < m->outputs.size(); ++i)
    if (!m->outputs[i])
      return failed(TETRA_AOT_INVALID_ARGUMENT, "run: output '" + m->graph->outputs[i].name + "' is not bound");
  if (m->gpu) return guarded(TETRA_AOT_RUN_FAILED, [&] { return run_on_gpu(m); });
  return guarded(TETRA_AOT_RUN_FAILED, [&] {
    TensorMap inputs;
    for (size_t i = 0; i < m->inputs.size(); ++i) {
      const ValueInfo& v = m->graph->inputs[i];
      Tensor t(v.dtype, m->input_shapes[i]);
      std::memcpy(t.mutable_bytes(), m->inputs[i], size_t(t.byte_size()));
      inputs[v.name] = std::move(t);
    }
    TensorMap results = m->executor->run(inputs);
    for (size_t i = 0; i < m->outputs.size(); ++i) {
      const Tensor& t = results.at(m->graph->outputs[i].name);
      std::memcpy(m->outputs[i], t.bytes(), size_t(t.byte_size()));
    }
    return TETRA_AOT_OK;
  });
}

}  // extern "C"
