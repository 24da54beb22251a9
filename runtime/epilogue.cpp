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

std::string describe_epilogue(const Node& node) {
  std::string out;
  for (const Node& step : node.epilogue) out += (out.empty() ? "" : ", ") + (step.op_type == "Add" ? "+residual" : step.op_type);
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

}  // namespace tetra
