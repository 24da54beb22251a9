#include "importer/graph.h"

#include <sstream>

#include "importer/error.h"

namespace tetra {

Attribute int_attr(int64_t value) {
  Attribute a;
  a.kind = Attribute::Kind::Int;
  a.i = value;
  return a;
}
Attribute float_attr(double value) {
  Attribute a;
  a.kind = Attribute::Kind::Float;
  a.f = value;
  return a;
}
Attribute string_attr(std::string value) {
  Attribute a;
  a.kind = Attribute::Kind::String;
  a.s = std::move(value);
  return a;
}
Attribute ints_attr(std::vector<int64_t> values) {
  Attribute a;
  a.kind = Attribute::Kind::Ints;
  a.ints = std::move(values);
  return a;
}
Attribute tensor_attr(Tensor value) {
  Attribute a;
  a.kind = Attribute::Kind::Tensor;
  a.t = std::move(value);
  return a;
}

int64_t QuantizedWeight::param_index(int64_t i) const {
  if (scale.size() == 1 && block_size == 0) return 0;
  const Shape& s = data.shape();
  int64_t inner = 1;
  for (size_t d = axis + 1; d < s.size(); ++d) inner *= s[d];
  int64_t along = (i / inner) % s[axis];
  int64_t outer = i / (inner * s[axis]);
  if (block_size == 0) return along;
  int64_t blocks = scale.shape()[axis];
  return (outer * blocks + along / block_size) * inner + i % inner;
}

float QuantizedWeight::value(int64_t i) const {
  if (is_float()) return static_cast<float>(data.get(i));
  int64_t p = param_index(i);
  float q = static_cast<float>(data.get_int(i));
  float zp = zero_point.empty() ? 0.0f : static_cast<float>(zero_point.get_int(p));
  float v = (q - zp) * static_cast<float>(scale.get(p));
  if (scale.dtype() == DType::Float16) v = half_to_float(float_to_half(v));
  return v;
}

std::string QuantizedWeight::granularity() const {
  if (is_float()) return "unquantized";
  if (block_size > 0) return "blocked(axis " + std::to_string(axis) + ", " + std::to_string(block_size) + ")";
  if (scale.size() == 1 && scale.rank() <= 1) return "per-tensor";
  return "per-axis(" + std::to_string(axis) + ")";
}

std::string Node::label() const {
  std::string op = domain.empty() ? op_type : domain + "." + op_type;
  return op + " '" + name + "'";
}

static const Attribute& expect_attr(const Node& n, const std::string& key, Attribute::Kind kind) {
  const Attribute& a = n.attrs.at(key);
  check(a.kind == kind, ErrorKind::Malformed, n.label() + ": attribute '" + key + "' has the wrong type");
  return a;
}

int64_t Node::attr_int(const std::string& key, int64_t fallback) const {
  return has_attr(key) ? expect_attr(*this, key, Attribute::Kind::Int).i : fallback;
}
bool Node::attr_flag(const std::string& key, bool fallback) const {
  int64_t v = attr_int(key, fallback ? 1 : 0);
  if (v != 0 && v != 1)
    fail(ErrorKind::Invalid, label() + ": attribute '" + key + "' must be 0 or 1, got " + std::to_string(v));
  return v == 1;
}
double Node::attr_float(const std::string& key, double fallback) const {
  return has_attr(key) ? expect_attr(*this, key, Attribute::Kind::Float).f : fallback;
}
std::string Node::attr_string(const std::string& key, const std::string& fallback) const {
  return has_attr(key) ? expect_attr(*this, key, Attribute::Kind::String).s : fallback;
}
std::vector<int64_t> Node::attr_ints(const std::string& key, const std::vector<int64_t>& fallback) const {
  return has_attr(key) ? expect_attr(*this, key, Attribute::Kind::Ints).ints : fallback;
}
std::vector<double> Node::attr_floats(const std::string& key, const std::vector<double>& fallback) const {
  return has_attr(key) ? expect_attr(*this, key, Attribute::Kind::Floats).floats : fallback;
}
const Tensor& Node::attr_tensor(const std::string& key) const {
  check(has_attr(key), ErrorKind::Malformed, label() + ": missing attribute '" + key + "'");
  return expect_attr(*this, key, Attribute::Kind::Tensor).t;
}
const std::string& Node::input(size_t i) const {
  static const std::string none;
  return i < inputs.size() ? inputs[i] : none;
}

std::string shape_str(const SymbolicShape& shape) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    s << (i ? "," : "");
    if (shape[i].known()) s << shape[i].value;
    else s << (shape[i].symbol.empty() ? "?" : shape[i].symbol);
  }
  s << "]";
  return s.str();
}

bool fully_known(const SymbolicShape& shape) {
  for (const Dim& d : shape)
    if (!d.known()) return false;
  return true;
}

Shape to_shape(const SymbolicShape& shape) {
  Shape out;
  for (const Dim& d : shape) {
    if (!d.known()) fail(ErrorKind::Invalid, "shape " + shape_str(shape) + " has unbound dimensions");
    out.push_back(d.value);
  }
  return out;
}

SymbolicShape to_symbolic(const Shape& shape) {
  SymbolicShape out;
  for (int64_t d : shape) out.push_back(Dim{d, ""});
  return out;
}

const ValueInfo* Graph::find_value(const std::string& name) const {
  auto it = values.find(name);
  return it == values.end() ? nullptr : &it->second;
}

std::vector<const Node*> Graph::quantized_nodes() const {
  std::vector<const Node*> out;
  for (const Node& n : nodes)
    if (n.weight && !n.weight->is_float()) out.push_back(&n);
  return out;
}

}  // namespace tetra
