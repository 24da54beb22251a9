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
          node.label() + ": epilogue step " + step.label() + " lacks input '" + step.inputs[i] + "'");
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

}  // namespace tetra
