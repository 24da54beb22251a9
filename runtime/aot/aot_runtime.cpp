// The runtime of model libraries compiled by `tetra compile`: the same Executor and node kernels as
// the JIT runtime, with their code from the library's kernel table instead of the Halide compiler.
// Every entry point catches everything: a bad argument or a failed kernel is a status code and a
// message (tetra_aot_last_error, per thread), never an exception or an abort.
//
// Thread safety: instances are independent; one instance runs one call at a time (its calls are
// serialised by a mutex). The deserialised graph is shared by the instances of a library.
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

}  // namespace
}  // namespace tetra

struct tetra_aot_instance {
  static constexpr uint64_t kLive = 0x7465747261414f54ull;  // "tetraAOT"
  uint64_t magic = kLive;                                    // cleared by destroy
  std::mutex mutex;
  std::shared_ptr<const tetra::Graph> graph;
  std::unique_ptr<tetra::Executor> executor;
  std::vector<void*> inputs, outputs;  // bound caller memory, nullptr until bound
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
  if (!out) return failed(TETRA_AOT_INVALID_ARGUMENT, "create: the result pointer is NULL");
  *out = nullptr;
  if (!model || model->abi_version != TETRA_AOT_ABI_VERSION)
    return failed(TETRA_AOT_INVALID_ARGUMENT, "create: the library's glue and runtime do not match");
  return guarded(TETRA_AOT_INVALID_ARGUMENT, [&] {
    halide_set_error_handler(halide_error_to_message);
    auto m = std::make_unique<tetra_aot_instance>();
    m->graph = graph_of(*model, weights_path);
    m->executor = std::make_unique<Executor>(*m->graph, std::make_shared<TableKernelSource>(*model));
    m->inputs.resize(m->graph->inputs.size());
    m->outputs.resize(m->graph->outputs.size());
    for (const ValueInfo& v : m->graph->inputs) m->input_shapes.push_back(to_shape(v.shape));
    for (const ValueInfo& v : m->graph->outputs) m->output_shapes.push_back(to_shape(v.shape));
    std::lock_guard<std::mutex> lock(live_mutex);
    live_instances().insert(m.get());
    *out = m.release();
    return TETRA_AOT_OK;
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

int tetra_aot_bind(tetra_aot_instance* m, int outputs, int index, int dtype, const int64_t* shape, int rank,
                   void* data) {
  const char* what = outputs ? "output" : "input";
  const ValueInfo* v = value_of(m, outputs, index);
  if (!v)
    return failed(TETRA_AOT_INVALID_ARGUMENT,
                  is_live(m) ? std::string("bind: no ") + what + " " + std::to_string(index) : bad_handle("bind", m));
  std::string label = std::string(what) + " '" + v->name + "'";
  if (!data) return failed(TETRA_AOT_INVALID_ARGUMENT, "bind " + label + ": the data pointer is NULL");
  if (dtype != int(v->dtype))
    return failed(TETRA_AOT_INVALID_ARGUMENT, "bind " + label + ": it is " + dtype_name(v->dtype) + ", not " +
                                                  dtype_name(dtype_from_onnx(dtype)) + " (code " +
                                                  std::to_string(dtype) + ")");
  const std::vector<int64_t>& expected = (outputs ? m->output_shapes : m->input_shapes)[size_t(index)];
  bool shape_given = rank == 0 || (rank > 0 && shape);
  std::vector<int64_t> got = shape_given ? std::vector<int64_t>(shape, shape + rank) : std::vector<int64_t>{};
  if (!shape_given || got != expected)
    return failed(TETRA_AOT_INVALID_ARGUMENT, "bind " + label + ": its shape is " + shape_str(expected) + ", not " +
                                                  (shape_given ? shape_str(got) : std::string("(no shape given)")));
  std::lock_guard<std::mutex> lock(m->mutex);
  (outputs ? m->outputs : m->inputs)[size_t(index)] = data;
  return TETRA_AOT_OK;
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
