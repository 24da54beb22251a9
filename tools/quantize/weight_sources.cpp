#include "tools/quantize/weight_sources.h"

#include <map>
#include <set>

#include <onnx/onnx_pb.h>

#include "importer/error.h"
#include "importer/onnx_loader.h"
#include "runtime/op_registry.h"
#include "runtime/reference_evaluator.h"
#include "tools/quantize/proto_util.h"

namespace tetra::quantize {
namespace {

constexpr int64_t kIrInitializersApart = 4;  // from IR 4 on, initializers need not be graph inputs

// A Constant node's value as a tensor, or an empty tensor for the kinds that never make a weight
// (sparse tensors, strings).
Tensor constant_value(const onnx::NodeProto& node) {
  for (const auto& a : node.attribute()) {
    if (a.name() == "value") return tensor_from_proto(a.t());
    if (a.name() == "value_float") return Tensor::scalar(DType::Float32, a.f());
    if (a.name() == "value_int") return Tensor::scalar(DType::Int64, static_cast<double>(a.i()));
    if (a.name() == "value_floats") {
      std::vector<double> v(a.floats().begin(), a.floats().end());
      return Tensor::from_doubles(DType::Float32, {a.floats_size()}, v);
    }
    if (a.name() == "value_ints") {
      std::vector<int64_t> v(a.ints().begin(), a.ints().end());
      return Tensor::from_ints(DType::Int64, {a.ints_size()}, v);
    }
  }
  return {};
}

// Layout-only operators that a weight may pass through between its constant and its consumer.
bool is_layout_op(const onnx::NodeProto& node) {
  const std::string& op = node.op_type();
  return is_default_domain(node.domain()) && node.output_size() == 1 &&
         (op == "Transpose" || op == "Reshape" || op == "Cast" || op == "Identity");
}

// Computes a layout op on constant inputs with tetra's reference kernel, the oracle for every op.
Tensor evaluate(const onnx::NodeProto& proto, const std::vector<Tensor>& inputs, int64_t opset) {
  Node node;
  node.op_type = proto.op_type();
  node.name = proto.name();
  node.opset = opset;
  for (const auto& a : proto.attribute()) {
    if (a.type() == onnx::AttributeProto::INT) node.attrs[a.name()] = int_attr(a.i());
    else if (a.type() == onnx::AttributeProto::INTS)
      node.attrs[a.name()] = ints_attr(std::vector<int64_t>(a.ints().begin(), a.ints().end()));
  }
  return op_for(node).compute(node, inputs).at(0);
}

class WeightGatherer {
 public:
  WeightGatherer(onnx::ModelProto& model, const std::string& base_dir)
      : model_(model), g_(*model.mutable_graph()), base_dir_(base_dir), opset_(default_opset(model)) {}

  std::vector<std::string> run() {
    constants_to_initializers();
    initializer_inputs();
    for (const auto& t : g_.initializer()) initializers_.insert(t.name());
    for (int k = 0; k < g_.node_size(); ++k)
      for (const auto& out : g_.node(k).output()) producer_[out] = k;
    for (int k = 0; k < g_.node_size(); ++k)
      if (reads_weight(g_.node(k)) && g_.node(k).input_size() > 1) fold(g_.node(k).input(1));
    remove_folded();
    return notes_;
  }

 private:
  void constants_to_initializers() {
    google::protobuf::RepeatedPtrField<onnx::NodeProto> kept;
    int moved = 0;
    for (auto& node : *g_.mutable_node()) {
      Tensor value;
      if (node.op_type() == "Constant" && is_default_domain(node.domain()) && node.output_size() == 1)
        value = constant_value(node);
      if (value.empty()) {
        *kept.Add() = node;
        continue;
      }
      tensor_to_proto(value, node.output(0), g_.add_initializer());
      ++moved;
    }
    g_.mutable_node()->Swap(&kept);
    if (moved) notes_.push_back("read " + std::to_string(moved) + " Constant node(s) as initializers");
  }

  // IR < 4 lists every initializer as a graph input too; there they are constants, not inputs.
  void initializer_inputs() {
    if (model_.ir_version() >= kIrInitializersApart) return;
    std::set<std::string> inits;
    for (const auto& t : g_.initializer()) inits.insert(t.name());
    auto* inputs = g_.mutable_input();
    int dropped = 0;
    for (int i = inputs->size() - 1; i >= 0; --i)
      if (inits.count(inputs->Get(i).name())) {
        inputs->DeleteSubrange(i, 1);
        ++dropped;
      }
    model_.set_ir_version(kIrInitializersApart);
    if (dropped)
      notes_.push_back("IR version < 4 lists initializers as graph inputs: " + std::to_string(dropped) +
                       " treated as constants and dropped from the inputs");
  }

  // Makes `value` an initializer when it is one, or a layout op over values that fold; returns whether it is.
  bool fold(const std::string& value) {
    if (initializers_.count(value)) return true;
    auto it = producer_.find(value);
    if (it == producer_.end()) return false;
    const onnx::NodeProto& node = g_.node(it->second);
    if (!is_layout_op(node)) return false;
    std::vector<Tensor> inputs;
    for (const auto& in : node.input()) {
      if (!fold(in)) return false;
      inputs.push_back(load(in));
    }
    tensor_to_proto(evaluate(node, inputs, opset_), value, g_.add_initializer());
    initializers_.insert(value);
    folded_.insert(it->second);
    ++folded_ops_[node.op_type()];
    return true;
  }

  Tensor load(const std::string& name) {
    for (const auto& t : g_.initializer())
      if (t.name() == name) return tensor_from_proto(t, base_dir_);
    fail(ErrorKind::Invalid, "initializer '" + name + "' is missing");
  }

  // Drops the folded nodes, then the constants only they read.
  void remove_folded() {
    if (folded_.empty()) return;
    std::set<std::string> sources;
    google::protobuf::RepeatedPtrField<onnx::NodeProto> kept;
    for (int k = 0; k < g_.node_size(); ++k) {
      if (folded_.count(k)) sources.insert(g_.node(k).input().begin(), g_.node(k).input().end());
      else *kept.Add() = g_.node(k);
    }
    g_.mutable_node()->Swap(&kept);
    std::map<std::string, int> uses = count_uses(g_);
    auto* inits = g_.mutable_initializer();
    for (int i = inits->size() - 1; i >= 0; --i)
      if (sources.count(inits->Get(i).name()) && uses[inits->Get(i).name()] == 0) inits->DeleteSubrange(i, 1);
    std::string what;
    for (const auto& [op, count] : folded_ops_) what += (what.empty() ? "" : ", ") + std::to_string(count) + " " + op;
    notes_.push_back("folded constant weight layout ops: " + what);
  }

  onnx::ModelProto& model_;
  onnx::GraphProto& g_;
  std::string base_dir_;
  int64_t opset_;
  std::set<std::string> initializers_;
  std::map<std::string, int> producer_;
  std::set<int> folded_;
  std::map<std::string, int> folded_ops_;
  std::vector<std::string> notes_;
};

}  // namespace

bool reads_weight(const onnx::NodeProto& node) {
  const std::string& op = node.op_type();
  return is_default_domain(node.domain()) && (op == "MatMul" || op == "Gemm" || op == "Conv" || op == "ConvTranspose");
}

std::vector<std::string> gather_weights(onnx::ModelProto& model, const std::string& base_dir) {
  return WeightGatherer(model, base_dir).run();
}

}  // namespace tetra::quantize
