// Small helpers over libonnx's protobuf classes, shared by the quantizer's passes: attributes,
// fresh names, use counts, opset imports.
#pragma once
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <onnx/onnx_pb.h>

namespace tetra::quantize {

const onnx::AttributeProto* find_attr(const onnx::NodeProto& node, const std::string& name);
int64_t attr_int(const onnx::NodeProto& node, const std::string& name, int64_t fallback);
float attr_float(const onnx::NodeProto& node, const std::string& name, float fallback);
std::string attr_string(const onnx::NodeProto& node, const std::string& name, const std::string& fallback);
void set_attr(onnx::NodeProto* node, const std::string& name, int64_t value);
void set_attr(onnx::NodeProto* node, const std::string& name, const std::string& value);
void remove_attr(onnx::NodeProto* node, const std::string& name);

std::string label(const onnx::NodeProto& node);  // "Conv 'conv1'"
bool is_default_domain(const std::string& domain);

template <class F>
void for_each_subgraph(onnx::NodeProto* node, F&& f) {
  for (auto& a : *node->mutable_attribute()) {
    if (a.has_g()) f(a.mutable_g());
    for (auto& g : *a.mutable_graphs()) f(&g);
  }
}

// Hands out names no value, initializer or node of the model uses yet.
class NameSet {
 public:
  explicit NameSet(const onnx::GraphProto& g) { collect(g); }
  std::string fresh(const std::string& base);

 private:
  void collect(const onnx::GraphProto& g);
  std::set<std::string> used_;
};

// Every read of each name: node inputs in all subgraphs, and graph outputs.
std::map<std::string, int> count_uses(const onnx::GraphProto& g);

int64_t default_opset(const onnx::ModelProto& model);
void set_opset(onnx::ModelProto* model, const std::string& domain, int64_t version);

}  // namespace tetra::quantize
