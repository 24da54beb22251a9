// The operator table: for each (domain, op_type), how to infer its output types and shapes and how
// the reference evaluator computes it. One OpDef per operator; families of ops live in runtime/ops/.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "importer/graph.h"

namespace tetra {

struct InferContext {
  const Node& node;
  std::vector<const ValueInfo*> inputs;  // nullptr for an omitted optional input
  std::vector<const Tensor*> constants;  // the input's value when known before running, else nullptr

  size_t count() const { return inputs.size(); }
  bool has(size_t i) const { return i < inputs.size() && inputs[i] != nullptr; }
  const ValueInfo& input(size_t i) const;  // throws naming the node when missing
  const Tensor* constant(size_t i) const { return i < constants.size() ? constants[i] : nullptr; }
};

using InferFn = std::function<std::vector<ValueInfo>(const InferContext&)>;
// Inputs are empty Tensors where an optional input is omitted.
using ComputeFn = std::function<std::vector<Tensor>(const Node&, const std::vector<Tensor>&)>;

struct OpDef {
  std::string domain;  // "" = ai.onnx
  std::string op_type;
  InferFn infer;
  ComputeFn compute;
  // Output 0 is input 0's bytes under another shape (Reshape, Identity): every kernel of the op
  // returns a view, and the memory plan keeps the input's storage live as long as the view.
  bool output_views_input = false;
};

class OpRegistry {
 public:
  void add(OpDef def);
  const OpDef* find(const std::string& domain, const std::string& op_type) const;
  std::vector<std::string> names() const;
  // Every operator tetra supports, with the reference kernels.
  static const OpRegistry& get();

 private:
  std::map<std::pair<std::string, std::string>, OpDef> defs_;
};

// How many inputs and outputs an operator may have, as its ONNX (or contrib) schema says; nullptr for an
// operator without an entry. Every operator in the table has one (a test checks).
struct OpArity {
  int max_inputs;
  int max_outputs;
};
const OpArity* op_arity(const std::string& domain, const std::string& op_type);
// Fails naming the node when it has more inputs or outputs than its schema allows (ONNX's checker's rule).
void check_arity(const Node& node);

// Each family registers itself here (runtime/ops/*.cpp).
void register_elementwise_ops(OpRegistry& r);  // unary, binary, activations, Where, Clip, Cast...
void register_tensor_ops(OpRegistry& r);       // Reshape, Transpose, Concat, Slice, Gather, Shape...
void register_pad(OpRegistry& r);              // Pad, every mode and opset form (ops/pad.cpp)
void register_attention(OpRegistry& r);        // tetra.Attention: softmax(A·B)·V (ops/attention.cpp)
void register_reduce_ops(OpRegistry& r);       // ReduceMean/Sum/Max/Min, Softmax, LayerNorm, BatchNorm
void register_nn_ops(OpRegistry& r);           // MatMul, Gemm, Conv, ConvTranspose, pools, Resize
void register_quant_ops(OpRegistry& r);        // Q/DQ, MatMulNBits, integer & QLinear ops, tetra.Q*

}  // namespace tetra
