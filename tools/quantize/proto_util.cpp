#include "tools/quantize/proto_util.h"

#include "importer/error.h"

namespace tetra::quantize {

const onnx::AttributeProto* find_attr(const onnx::NodeProto& node, const std::string& name) {
  for (const auto& a : node.attribute())
    if (a.name() == name) return &a;
  return nullptr;
}
int64_t attr_int(const onnx::NodeProto& node, const std::string& name, int64_t fallback) {
  const auto* a = find_attr(node, name);
  return a ? a->i() : fallback;
}
float attr_float(const onnx::NodeProto& node, const std::string& name, float fallback) {
  const auto* a = find_attr(node, name);
  return a ? a->f() : fallback;
}
std::string attr_string(const onnx::NodeProto& node, const std::string& name, const std::string& fallback) {
  const auto* a = find_attr(node, name);
  return a ? a->s() : fallback;
}
void set_attr(onnx::NodeProto* node, const std::string& name, int64_t value) {
  remove_attr(node, name);
  auto* a = node->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(value);
}
void set_attr(onnx::NodeProto* node, const std::string& name, const std::string& value) {
  remove_attr(node, name);
  auto* a = node->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::STRING);
  a->set_s(value);
}
void remove_attr(onnx::NodeProto* node, const std::string& name) {
  auto* attrs = node->mutable_attribute();
  for (int i = 0; i < attrs->size(); ++i)
    if (attrs->Get(i).name() == name) {
      attrs->DeleteSubrange(i, 1);
      return;
    }
}

std::string label(const onnx::NodeProto& node) { return node.op_type() + " '" + node.name() + "'"; }
bool is_default_domain(const std::string& domain) { return domain.empty() || domain == "ai.onnx"; }

std::string NameSet::fresh(const std::string& base) {
  std::string name = base;
  for (int k = 1; used_.count(name); ++k) name = base + "_" + std::to_string(k);
  used_.insert(name);
  return name;
}

void NameSet::collect(const onnx::GraphProto& g) {
  for (const auto& t : g.initializer()) used_.insert(t.name());
  for (const auto& v : g.input()) used_.insert(v.name());
  for (const auto& n : g.node()) {
    used_.insert(n.name());
    used_.insert(n.output().begin(), n.output().end());
    for (const auto& a : n.attribute()) {
      if (a.has_g()) collect(a.g());
      for (const auto& sub : a.graphs()) collect(sub);
    }
  }
}

namespace {
void count_uses_into(const onnx::GraphProto& g, std::map<std::string, int>& uses) {
  for (const auto& n : g.node()) {
    for (const auto& in : n.input()) ++uses[in];
    for (const auto& a : n.attribute()) {
      if (a.has_g()) count_uses_into(a.g(), uses);
      for (const auto& sub : a.graphs()) count_uses_into(sub, uses);
    }
  }
  for (const auto& out : g.output()) ++uses[out.name()];
}
}  // namespace

std::map<std::string, int> count_uses(const onnx::GraphProto& g) {
  std::map<std::string, int> uses;
  count_uses_into(g, uses);
  return uses;
}

int64_t default_opset(const onnx::ModelProto& model) {
  for (const auto& imp : model.opset_import())
    if (is_default_domain(imp.domain())) return imp.version();
  fail(ErrorKind::Invalid, "the model imports no ai.onnx opset");
}

void set_opset(onnx::ModelProto* model, const std::string& domain, int64_t version) {
  for (auto& imp : *model->mutable_opset_import()) {
    if (imp.domain() == domain || (domain.empty() && imp.domain() == "ai.onnx")) {
      imp.set_version(version);
      return;
    }
  }
  auto* imp = model->add_opset_import();
  imp->set_domain(domain);
  imp->set_version(version);
}

}  // namespace tetra::quantize
