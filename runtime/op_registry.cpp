#include "runtime/op_registry.h"

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

const OpRegistry& OpRegistry::get() {
  static const OpRegistry registry = [] {
    OpRegistry r;
    register_elementwise_ops(r);
    register_tensor_ops(r);
    register_reduce_ops(r);
    register_nn_ops(r);
    register_quant_ops(r);
    return r;
  }();
  return registry;
}

}  // namespace tetra
