#include "runtime/executor.h"

#include <algorithm>
#include <chrono>

#include "importer/error.h"
#include "runtime/kernel_source.h"
#include "runtime/memory_plan.h"
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

const std::map<std::string, ValueInfo>& Executor::values_for(const TensorMap& inputs, bool* rebound) {
  std::vector<Shape> shapes;
  for (const ValueInfo& in : graph_.inputs) {
    auto it = inputs.find(in.name);
    shapes.push_back(it == inputs.end() ? Shape{-1} : it->second.shape());
  }
  *rebound = !bound_ || shapes != bound_shapes_;
  if (*rebound) {
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

void Executor::drop_memory_plan() {
  if (!memory_plan_) return;
  for (auto& kernel : kernels_) kernel->set_places({});
  memory_plan_.reset();
}

void Executor::use_memory_plan(MemoryPlan plan, bool predicted) {
  memory_plan_ = std::make_unique<MemoryPlan>(std::move(plan));
  plan_predicted_ = predicted;
  for (size_t k = 0; k < kernels_.size() && k < memory_plan_->places.size(); ++k)
    kernels_[k]->set_places(memory_plan_->places[k]);
}

Executor::MemoryStats Executor::memory_stats() const {
  if (!memory_plan_) return {};
  return {memory_plan_->arena.byte_size(), memory_plan_->value_bytes, memory_plan_->concats_in_place, plan_predicted_};
}

namespace {

// The input (or earlier output) of node `n` whose storage result `i` shares; "" when none.
std::string storage_shared_with(const Node& n, const std::vector<Tensor>& args, const std::vector<Tensor>& results,
                                size_t i) {
  for (size_t j = 0; j < args.size(); ++j)
    if (!n.inputs[j].empty() && !args[j].empty() && results[i].same_storage(args[j])) return n.inputs[j];
  for (size_t j = 0; j < i; ++j)
    if (!n.outputs[j].empty() && results[i].same_storage(results[j])) return n.outputs[j];
  return "";
}

// A fresh copy of `t` (a result found where the memory plan did not put it).
Tensor fresh_copy(const Tensor& t) {
  Tensor copy = Tensor::for_overwrite(t.dtype(), t.shape());
  std::copy_n(t.bytes(), t.byte_size(), copy.mutable_bytes());
  return copy;
}

}  // namespace

TensorMap Executor::run(const TensorMap& inputs, std::vector<double>* node_ms) {
  bool rebound = false;
  const std::map<std::string, ValueInfo>& values = values_for(inputs, &rebound);
  if (rebound) {
    drop_memory_plan();
    plan_from_a_run_ = false;
  }
  if (!memory_plan_ && !plan_from_a_run_) {
    std::optional<RunObservation> predicted = predicted_writes(graph_, values, inputs);
    if (predicted) use_memory_plan(plan_memory(graph_, *predicted), true);
  }
  // Without a plan, this run records what each node writes and the plan is made from it.
  const bool observe = !memory_plan_;
  bool plan_broken = false;
  RunObservation seen;
  TensorMap env;  // inputs and intermediates; initializers are read from the graph
  for (const ValueInfo& in : graph_.inputs) {
    env[in.name] = inputs.at(in.name);
    if (observe) seen[in.name] = {env[in.name].dtype(), env[in.name].shape(), env[in.name].byte_size(), ""};
  }
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
      if (observe) {
        seen[n.outputs[i]] = {results[i].dtype(), results[i].shape(), results[i].byte_size(),
                              storage_shared_with(n, args, results, i)};
      } else if (results[i].same_storage(memory_plan_->arena)) {
        // In the arena only where the plan put it: a kernel that returns a view the plan did not
        // expect gets a copy, and the next plan is made from a run.
        auto a = memory_plan_->address.find(n.outputs[i]);
        if (a == memory_plan_->address.end() || results[i].bytes() != memory_plan_->arena.bytes() + a->second) {
          results[i] = fresh_copy(results[i]);
          plan_broken = true;
        }
      }
      env[n.outputs[i]] = std::move(results[i]);
    }
    for (const std::string& name : free_after_[k]) env.erase(name);
  }
  TensorMap outputs;
  for (const ValueInfo& out : graph_.outputs) outputs[out.name] = value(out.name);
  if (plan_broken) {
    drop_memory_plan();
    plan_from_a_run_ = true;
  }
  if (observe) use_memory_plan(plan_memory(graph_, seen), false);
  return outputs;
}

namespace {
int mark_qmatmuls(Graph& graph, const char* attr) {
  int marked = 0;
  for (Node& node : graph.nodes) {
    if (node.domain != "tetra" || node.op_type != "QMatMul") continue;
    node.attrs[attr] = int_attr(1);
    ++marked;
  }
  return marked;
}
}  // namespace

int mark_int8_activations(Graph& graph) { return mark_qmatmuls(graph, kInt8ActivationsAttr); }
int mark_f16_activations(Graph& graph) { return mark_qmatmuls(graph, kF16ActivationsAttr); }

int mark_activation_opt_in(Graph& graph, ActivationOptIn opt_in) {
  switch (opt_in) {
    case ActivationOptIn::Int8:
      return mark_int8_activations(graph);
    case ActivationOptIn::Float16:
      return mark_f16_activations(graph);
    case ActivationOptIn::Exact:
      break;
  }
  return 0;
}

}  // namespace tetra
