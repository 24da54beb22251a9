#include "runtime/executor.h"

#include <chrono>

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
  // Free each intermediate after its last reader (never graph outputs or initializers).
  std::map<std::string, size_t> last_use;
  for (size_t k = 0; k < graph_.nodes.size(); ++k)
    for (const std::string& name : graph_.nodes[k].inputs)
      if (!name.empty()) last_use[name] = k;
  for (const ValueInfo& out : graph_.outputs) last_use.erase(out.name);
  free_after_.resize(graph_.nodes.size());
  for (const auto& [name, k] : last_use)
    if (!graph_.initializers.count(name)) free_after_[k].push_back(name);
}

Executor::~Executor() = default;

std::vector<KernelInfo> Executor::kernels() const {
  std::vector<KernelInfo> out;
  for (const auto& k : kernels_) out.push_back(k->info());
  return out;
}

const std::map<std::string, ValueInfo>& Executor::values_for(const TensorMap& inputs) {
  std::vector<Shape> shapes;
  for (const ValueInfo& in : graph_.inputs) {
    auto it = inputs.find(in.name);
    shapes.push_back(it == inputs.end() ? Shape{-1} : it->second.shape());
  }
  if (!bound_ || shapes != bound_shapes_) {
    values_ = bind_inputs(graph_, inputs).values;  // validates the inputs, naming the one at fault
    bound_shapes_ = std::move(shapes);
    bound_ = true;
  } else {
    for (const ValueInfo& in : graph_.inputs)  // same shapes: only the types are left to check
      check(inputs.at(in.name).dtype() == in.dtype, ErrorKind::Invalid,
            "input '" + in.name + "' must be " + dtype_name(in.dtype) + ", got " + dtype_name(inputs.at(in.name).dtype()));
  }
  return values_;
}

TensorMap Executor::run(const TensorMap& inputs, std::vector<double>* node_ms) {
  const std::map<std::string, ValueInfo>& values = values_for(inputs);
  TensorMap env;  // inputs and intermediates; initializers are read from the graph
  for (const ValueInfo& in : graph_.inputs) env[in.name] = inputs.at(in.name);
  auto value = [&](const std::string& name) -> const Tensor& {
    auto it = env.find(name);
    return it != env.end() ? it->second : graph_.initializers.at(name);
  };
  if (node_ms) node_ms->assign(graph_.nodes.size(), 0.0);
  std::vector<Tensor> args;
  for (size_t k = 0; k < graph_.nodes.size(); ++k) {
    const Node& n = graph_.nodes[k];
    args.clear();
    for (const std::string& name : n.inputs) args.push_back(name.empty() ? Tensor() : value(name));
    auto start = std::chrono::steady_clock::now();
    std::vector<Tensor> results = kernels_[k]->run(args);
    if (node_ms) (*node_ms)[k] = ms_since(start);
    for (size_t i = 0; i < n.outputs.size(); ++i) {
      if (n.outputs[i].empty()) continue;
      check(i < results.size(), ErrorKind::Invalid,
            [&] { return n.label() + ": kernel produced no output " + std::to_string(i); });
      const ValueInfo& expected = values.at(n.outputs[i]);
      check(results[i].dtype() == expected.dtype &&
                (!expected.has_shape || !fully_known(expected.shape) || to_shape(expected.shape) == results[i].shape()),
            ErrorKind::Invalid, [&] {
              return n.label() + ": computed " + dtype_name(results[i].dtype()) + shape_str(results[i].shape()) +
                     " for output '" + n.outputs[i] + "' but inference said " + dtype_name(expected.dtype) +
                     shape_str(expected.shape);
            });
      env[n.outputs[i]] = std::move(results[i]);
    }
    for (const std::string& name : free_after_[k]) env.erase(name);
  }
  TensorMap outputs;
  for (const ValueInfo& out : graph_.outputs) outputs[out.name] = value(out.name);
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
