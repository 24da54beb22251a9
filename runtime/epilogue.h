// Applies a fused node's epilogue steps (Node::epilogue) to its result with the steps' own
// reference kernels, so a fused node computes exactly what the unfused nodes did.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "dsl/core/output_epilogue.h"
#include "importer/graph.h"

namespace tetra {

// `inputs` are the fused node's inputs; a step's extra inputs are found among them by name.
Tensor apply_epilogue(const Node& node, Tensor y, const std::vector<Tensor>& inputs, size_t first_step = 0);

// The arguments of epilogue step `step` of `node`: the running value `y`, then the step's other
// inputs, found among the fused node's `inputs` by name.
std::vector<Tensor> epilogue_step_args(const Node& node, const Node& step, const Tensor& y,
                                       const std::vector<Tensor>& inputs);

// "+residual, Relu": the steps from `first_step` on, for kernel descriptions and workload keys.
std::string describe_epilogue(const Node& node, size_t first_step = 0);

// An activation step as an op key of dsl/elementwise_expr.h ("Relu", "Clip:min,max", "Gelu:none") and
// its float attributes, for kernels that apply it in their output stage. nullopt for other steps, and
// for Clip bounds that are not constants of `graph`.
struct ActivationCall {
  std::string key;
  std::vector<float> params;
};
std::optional<ActivationCall> activation_call(const Node& step, const Graph& graph);

// The node's epilogue steps (Node::epilogue) a conv or matmul kernel applies in its output stage: a
// leading residual Add of a float tensor shaped as the output, then an activation with an expression
// (dsl/elementwise_expr.h); or the activation, then the residual Add. Later steps run after the kernel.
// `residual_input` is the fused node's input that holds the residual.
struct KernelEpilogue {
  dsl::OutputEpilogue epilogue;
  size_t steps = 0;
  size_t residual_input = 0;
};
KernelEpilogue kernel_epilogue(const Node& node, const Graph& graph);

}  // namespace tetra
