#include "runtime/executor.h"

#include <chrono>
#include <set>

#include "importer/error.h"
#include "runtime/kernel_source.h"
#include "runtime/op_registry.h"

namespace tetra {

Backend parse_backend(const std::string& name) {
  if (name == "reference") return Backend::Reference;
  if (name == "halide") return Backend::Halide;
  fail(ErrorKind::Invalid, "unknown backend '" + name + "' (available: halide, reference)");
}

std::string backend_name(Backend backend) { return backend == Backend::Halide ? "halide" : "reference"; }

namespace {

class ReferenceKernel : public NodeKernel {
 public:
  ReferenceKernel(const Node& node, std::string why) : node_(node), def_(op_for(node)), why_(std::move(why)) {}
  std::vector<Tensor> run(const std::vector<Tensor>& inputs) override { return def_.compute(node_, inputs); }
  KernelInfo info() const override { return {node_.label(), "reference", why_, 0}; }

 private:
  const Node& node_;
  const OpDef& def_;
  std::string why_;
};

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

std::unique_ptr<NodeKernel> make_reference_kernel(const Node& node, const std::string& why) {
  return std::make_unique<ReferenceKernel>(node, why);
}

Executor::Executor(const Graph& graph, std::shared_ptr<KernelSource> kernels)
    : graph_(graph), source_(std::move(kernels)) {
  for (const Node& n : graph_.nodes) {
    std::unique_ptr<NodeKernel> kernel;
    std::string why_not;
    if (source_) kernel = make_halide_kernel(n, graph_, *source_, &why_not);
    kernels_.push_back(kernel ? std::move(kernel) : make_reference_kernel(n, why_not));
  }
}

Executor::~Executor() = default;

std::vector<KernelInfo> Executor::kernels() const {
  std::vector<KernelInfo> out;
  for (const auto& k : kernels_) out.push_back(k->info());
  return out;
}

TensorMap Executor::run(const TensorMap& inputs, std::vector<double>* node_ms) {
  Graph bound = bind_inputs(graph_, inputs);

  // Free each intermediate after its last reader.
  std::map<std::string, size_t> last_use;
  for (size_t k = 0; k < graph_.nodes.size(); ++k)
    for (const std::string& name : graph_.nodes[k].inputs) last_use[name] = k;
  std::set<std::string> keep;
  for (const ValueInfo& out : graph_.outputs) keep.insert(out.name);

  TensorMap env = graph_.initializers;
  for (const ValueInfo& in : graph_.inputs) env[in.name] = inputs.at(in.name);
  if (node_ms) node_ms->assign(graph_.nodes.size(), 0.0);
  for (size_t k = 0; k < graph_.nodes.size(); ++k) {
    const Node& n = graph_.nodes[k];
    std::vector<Tensor> args;
    for (const std::string& name : n.inputs) args.push_back(name.empty() ? Tensor() : env.at(name));
    auto start = std::chrono::steady_clock::now();
    std::vector<Tensor> results = kernels_[k]->run(args);
    if (node_ms) (*node_ms)[k] = ms_since(start);
    for (size_t i = 0; i < n.outputs.size(); ++i) {
      if (n.outputs[i].empty()) continue;
      check(i < results.size(), ErrorKind::Invalid, n.label() + ": kernel produced no output " + std::to_string(i));
      const ValueInfo& expected = bound.values.at(n.outputs[i]);
      check(results[i].dtype() == expected.dtype &&
                (!expected.has_shape || !fully_known(expected.shape) || to_shape(expected.shape) == results[i].shape()),
            ErrorKind::Invalid,
            n.label() + ": computed " + dtype_name(results[i].dtype()) + shape_str(results[i].shape()) +
                " for output '" + n.outputs[i] + "' but inference said " + dtype_name(expected.dtype) +
                shape_str(expected.shape));
      env[n.outputs[i]] = std::move(results[i]);
    }
    for (const std::string& name : n.inputs)
      if (!name.empty() && last_use[name] == k && !keep.count(name) && !graph_.initializers.count(name)) env.erase(name);
  }
  TensorMap outputs;
  for (const ValueInfo& out : graph_.outputs) outputs[out.name] = env.at(out.name);
  return outputs;
}

int mark_int8_activations(Graph& graph) {
  int marked = 0;
  for (Node& node : graph.nodes) {
    if (node.domain != "tetra" || node.op_type != "QMatMul") continue;
    node.attrs[kInt8ActivationsAttr] = int_attr(1);
    ++marked;
  }
  return marked;
}

}  // namespace tetra
