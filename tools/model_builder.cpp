#include "tools/model_builder.h"

#include <fstream>
#include <stdexcept>

#include "importer/onnx_loader.h"

namespace tetra {

Attr::Attr(const std::string& name, int64_t value) {
  proto.set_name(name);
  proto.set_type(onnx::AttributeProto::INT);
  proto.set_i(value);
}
Attr::Attr(const std::string& name, float value) {
  proto.set_name(name);
  proto.set_type(onnx::AttributeProto::FLOAT);
  proto.set_f(value);
}
Attr::Attr(const std::string& name, const std::string& value) {
  proto.set_name(name);
  proto.set_type(onnx::AttributeProto::STRING);
  proto.set_s(value);
}
Attr::Attr(const std::string& name, const std::vector<int64_t>& values) {
  proto.set_name(name);
  proto.set_type(onnx::AttributeProto::INTS);
  for (int64_t v : values) proto.add_ints(v);
}
Attr::Attr(const std::string& name, const std::vector<float>& values) {
  proto.set_name(name);
  proto.set_type(onnx::AttributeProto::FLOATS);
  for (float v : values) proto.add_floats(v);
}
Attr::Attr(const std::string& name, const Tensor& value) {
  proto.set_name(name);
  proto.set_type(onnx::AttributeProto::TENSOR);
  tensor_to_proto(value, name, proto.mutable_t());
}

ModelBuilder::ModelBuilder(int64_t opset_version, const std::string& name) {
  model_.set_ir_version(10);
  model_.set_producer_name("tetra-tests");
  model_.mutable_graph()->set_name(name);
  opset("", opset_version);
}

ModelBuilder& ModelBuilder::opset(const std::string& domain, int64_t version) {
  for (auto& imp : *model_.mutable_opset_import()) {
    if (imp.domain() == domain) {
      imp.set_version(version);
      return *this;
    }
  }
  auto* imp = model_.add_opset_import();
  imp->set_domain(domain);
  imp->set_version(version);
  return *this;
}

ModelBuilder& ModelBuilder::input(const std::string& name, DType dtype, const Shape& shape) {
  auto* type = model_.mutable_graph()->add_input();
  type->set_name(name);
  auto* tensor_type = type->mutable_type()->mutable_tensor_type();
  tensor_type->set_elem_type(static_cast<int32_t>(dtype));
  auto* s = tensor_type->mutable_shape();
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) s->add_dim()->set_dim_param(name + "_d" + std::to_string(i));
    else s->add_dim()->set_dim_value(shape[i]);
  }
  return *this;
}

ModelBuilder& ModelBuilder::output(const std::string& name, DType dtype) {
  auto* value = model_.mutable_graph()->add_output();
  value->set_name(name);
  value->mutable_type()->mutable_tensor_type()->set_elem_type(static_cast<int32_t>(dtype));
  return *this;
}

ModelBuilder& ModelBuilder::initializer(const std::string& name, const Tensor& tensor) {
  tensor_to_proto(tensor, name, model_.mutable_graph()->add_initializer());
  return *this;
}

onnx::NodeProto& ModelBuilder::node(const std::string& op_type, const std::vector<std::string>& inputs,
                                    const std::vector<std::string>& outputs, const std::vector<Attr>& attrs,
                                    const std::string& domain) {
  auto* n = model_.mutable_graph()->add_node();
  n->set_op_type(op_type);
  n->set_name(op_type + "_" + std::to_string(node_count_++));
  n->set_domain(domain);
  for (const auto& in : inputs) n->add_input(in);
  for (const auto& out : outputs) n->add_output(out);
  for (const auto& a : attrs) *n->add_attribute() = a.proto;
  return *n;
}

std::string ModelBuilder::save(const std::string& path) const {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  if (!file || !model_.SerializeToOstream(&file)) throw std::runtime_error("cannot write model " + path);
  return path;
}

}  // namespace tetra
