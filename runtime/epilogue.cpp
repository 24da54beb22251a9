#include "runtime/epilogue.h"

#include "importer/error.h"
#include "runtime/reference_evaluator.h"
#include "runtime/op_registry.h"

namespace tetra {

std::vector<Tensor> epilogue_step_args(const Node& node, const Node& step, const Tensor& y,
                                       const std::vector<Tensor>& inputs) {
  std::vector<Tensor> args = {y};
  for (size_t i = 1; i < step.inputs.size(); ++i) {
    Tensor arg;
    for (size_t j = 2; j < node.inputs.size() && j < inputs.size(); ++j)
      if (!step.inputs[i].empty() && node.inputs[j] == step.inputs[i]) arg = inputs[j];
    check(step.inputs[i].empty() || !arg.empty(), ErrorKind::Invalid,
          [&] { return node.label() + ": epilogue step " + step.label() + " lacks input '" + step.inputs[i] + "'"; });
    args.push_back(arg);
  }
  return args;
}

Tensor apply_epilogue(const Node& node, Tensor y, const std::vector<Tensor>& inputs, size_t first_step) {
  for (size_t s = first_step; s < node.epilogue.size(); ++s) {
    const Node& step = node.epilogue[s];
    y = op_for(step).compute(step, epilogue_step_args(node, step, y, inputs)).at(0);
  }
  return y;
}

std::string describe_epilogue(const Node& node, size_t first_step) {
  std::string out;
  for (size_t s = first_step; s < node.epilogue.size(); ++s) {
    const Node& step = node.epilogue[s];
    out += (out.empty() ? "" : ", ") + (step.op_type == "Add" ? "+residual" : step.op_type);
  }
  return out;
}

std::optional<ActivationCall> activation_call(const Node& step, const Graph& graph) {
  if (!step.domain.empty()) return std::nullopt;
  const std::string& op = step.op_type;
  auto f = [](double v) { return static_cast<float>(v); };
  if (op == "Relu" || op == "Sigmoid" || op == "Tanh" || op == "HardSwish") return ActivationCall{op, {}};
  if (op == "LeakyRelu") return ActivationCall{op, {f(step.attr_float("alpha", 0.01))}};
  if (op == "HardSigmoid") return ActivationCall{op, {f(step.attr_float("alpha", 0.2)), f(step.attr_float("beta", 0.5))}};
  if (op == "Gelu") return ActivationCall{"Gelu:" + step.attr_string("approximate", "none"), {}};
  if (op != "Clip") return std::nullopt;
  // Bounds: attributes before opset 11, optional constant inputs after.
  ActivationCall call{"Clip:", {}};
  const char* names[2] = {"min", "max"};
  for (size_t i = 1; i <= 2; ++i) {
    if (step.opset < 11) {
      if (!step.has_attr(names[i - 1])) continue;
      call.params.push_back(f(step.attr_float(names[i - 1], 0)));
    } else {
      if (!step.has_input(i)) continue;
      auto c = graph.initializers.find(step.input(i));
      if (c == graph.initializers.end() || c->second.size() != 1 || !is_float(c->second.dtype())) return std::nullopt;
      call.params.push_back(f(c->second.get(0)));
    }
    call.key += std::string(call.key.back() == ':' ? "" : ",") + names[i - 1];
  }
  return call;
}

namespace {

// The fused node's input that step `s` adds as a residual (a float tensor of the output's shape),
// or nullopt.
std::optional<size_t> residual_input(const Node& node, const Graph& graph, size_t s) {
  if (s >= node.epilogue.size() || !node.epilogue[s].domain.empty() || node.epilogue[s].op_type != "Add")
    return std::nullopt;
  const ValueInfo* y = graph.find_value(node.outputs[0]);
  const std::string& residual = node.epilogue[s].input(1);
  const ValueInfo* r = graph.find_value(residual);
  if (!y || !r || !y->has_shape || !fully_known(y->shape) || !r->has_shape || !fully_known(r->shape) ||
      to_shape(r->shape) != to_shape(y->shape) || (r->dtype != DType::Float32 && r->dtype != DType::Float16))
    return std::nullopt;
  for (size_t j = 2; j < node.inputs.size(); ++j)
    if (node.inputs[j] == residual) return j;
  return std::nullopt;
}

}  // namespace

KernelEpilogue kernel_epilogue(const Node& node, const Graph& graph) {
  KernelEpilogue k;
  if (std::optional<size_t> j = residual_input(node, graph, 0)) {
    k.epilogue.residual = true;
    k.residual_input = *j;
    k.steps = 1;
  }
  if (k.steps < node.epilogue.size())
    if (std::optional<ActivationCall> act = activation_call(node.epilogue[k.steps], graph)) {
      k.epilogue.activation = act->key;
      k.epilogue.params = act->params;
      ++k.steps;
    }
  // An activation, then the residual (a block that adds its skip connection after the Relu).
  if (!k.epilogue.residual && k.steps == 1)
    if (std::optional<size_t> j = residual_input(node, graph, 1)) {
      k.epilogue.residual = true;
      k.epilogue.activation_first = true;
      k.residual_input = *j;
      k.steps = 2;
    }
  return k;
}

}  // namespace tetra
