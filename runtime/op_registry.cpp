#include "runtime/op_registry.h"

#include <climits>
#include <string_view>

#include "importer/error.h"

namespace tetra {

const ValueInfo& InferContext::input(size_t i) const {
  check(has(i), ErrorKind::Invalid, node.label() + ": input " + std::to_string(i) + " is required but missing");
  return *inputs[i];
}

void OpRegistry::add(OpDef def) {
  auto key = std::make_pair(def.domain, def.op_type);
  defs_[key] = std::move(def);
}

const OpDef* OpRegistry::find(const std::string& domain, const std::string& op_type) const {
  std::string d = domain == "ai.onnx" ? "" : domain;
  auto it = defs_.find({d, op_type});
  return it == defs_.end() ? nullptr : &it->second;
}

std::vector<std::string> OpRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& [key, def] : defs_) out.push_back(key.first.empty() ? key.second : key.first + "." + key.second);
  return out;
}

namespace {

constexpr int kVariadic = INT_MAX;

// The most inputs and outputs each schema allows, at the newest opset tetra reads (ONNX 1.18's
// operator docs; com.microsoft from ONNX Runtime's contrib ops). Older opsets never allow more.
// By domain, then operator; std::less<> finds without copying the names (this runs for every node).
using ArityTable = std::map<std::string, std::map<std::string, OpArity, std::less<>>, std::less<>>;

const ArityTable& arity_table() {
  static const ArityTable table = [] {
    ArityTable t;
    auto set = [&](std::initializer_list<const char*> ops, int in, int out, const char* domain = "") {
      for (const char* op : ops) t[domain][op] = {in, out};
    };
    set({"Relu",
         "LeakyRelu",
         "Sigmoid",
         "Tanh",
         "HardSigmoid",
         "HardSwish",
         "Gelu",
         "Erf",
         "Sqrt",
         "Exp",
         "Log",
         "Reciprocal",
         "Neg",
         "Abs",
         "Identity",
         "Cast",
         "Softmax",
         "Transpose",
         "Flatten",
         "Shape",
         "ConstantOfShape",
         "AveragePool",
         "GlobalAveragePool",
         "GlobalMaxPool",
         "Not"},
        1, 1);
    set({"Add",        "Sub",       "Mul",         "Div",      "Pow",
         "Equal",      "Less",      "LessOrEqual", "Greater",  "GreaterOrEqual",
         "And",        "Or",        "Xor",         "CastLike", "MatMul",
         "Reshape",    "Squeeze",   "Unsqueeze",   "Gather",   "ReduceSum",
         "ReduceMean", "ReduceMax", "ReduceMin",   "Expand"},
        2, 1);
    set({"Where", "Clip", "Gemm", "Conv", "ConvTranspose", "QuantizeLinear", "DequantizeLinear"}, 3, 1);
    set({"Resize", "MatMulInteger", "ConvInteger", "Pad"}, 4, 1);
    set({"Slice"}, 5, 1);
    set({"QLinearMatMul"}, 8, 1);
    set({"QLinearConv"}, 9, 1);
    set({"Min", "Max", "Concat"}, kVariadic, 1);
    set({"Constant"}, 0, 1);
    set({"MaxPool"}, 1, 2);
    set({"LayerNormalization"}, 3, 3);
    set({"BatchNormalization"}, 5, 3);
    set({"Split"}, 2, kVariadic);
    set({"MatMulNBits"}, 6, 1, "com.microsoft");
    return t;
  }();
  return table;
}

}  // namespace

const OpArity* op_arity(const std::string& domain, const std::string& op_type) {
  auto by_op = arity_table().find(domain == "ai.onnx" ? std::string_view() : std::string_view(domain));
  if (by_op == arity_table().end()) return nullptr;
  auto it = by_op->second.find(op_type);
  return it == by_op->second.end() ? nullptr : &it->second;
}

void check_arity(const Node& node) {
  const OpArity* arity = op_arity(node.domain, node.op_type);
  if (!arity) return;  // an operator tetra does not run: loading reports it as unsupported
  if (node.inputs.size() > size_t(arity->max_inputs))
    fail(ErrorKind::Invalid, node.label() + ": has " + std::to_string(node.inputs.size()) + " inputs, but " +
                                 node.op_type + " takes at most " + std::to_string(arity->max_inputs));
  if (node.outputs.size() > size_t(arity->max_outputs))
    fail(ErrorKind::Invalid, node.label() + ": has " + std::to_string(node.outputs.size()) + " outputs, but " +
                                 node.op_type + " makes at most " + std::to_string(arity->max_outputs));
}

const OpRegistry& OpRegistry::get() {
  static const OpRegistry registry = [] {
    OpRegistry r;
    register_elementwise_ops(r);
    register_tensor_ops(r);
    register_pad(r);
    register_attention(r);
    register_reduce_ops(r);
    register_nn_ops(r);
    register_quant_ops(r);
    return r;
  }();
  return registry;
}

}  // namespace tetra
