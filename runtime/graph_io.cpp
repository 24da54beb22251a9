#include "runtime/graph_io.h"

#include <cstring>

#include "importer/error.h"

namespace tetra {
namespace {

constexpr char kMagic[8] = {'T', 'E', 'T', 'R', 'A', 'G', 'R', 'F'};
constexpr uint32_t kVersion = 1;

class Writer {
 public:
  void raw(const void* p, size_t n) {
    const uint8_t* b = static_cast<const uint8_t*>(p);
    out.insert(out.end(), b, b + n);
  }
  void u8(uint8_t v) { raw(&v, 1); }
  void i64(int64_t v) { raw(&v, 8); }  // tetra builds for little-endian targets only
  void f64(double v) { raw(&v, 8); }
  void str(const std::string& s) {
    i64(int64_t(s.size()));
    raw(s.data(), s.size());
  }
  void ints(const std::vector<int64_t>& v) {
    i64(int64_t(v.size()));
    for (int64_t x : v) i64(x);
  }
  void strs(const std::vector<std::string>& v) {
    i64(int64_t(v.size()));
    for (const std::string& s : v) str(s);
  }
  void tensor(const Tensor& t) {
    i64(int64_t(t.dtype()));
    if (t.empty()) return;
    ints(t.shape());
    i64(t.byte_size());
    raw(t.bytes(), size_t(t.byte_size()));
  }
  void value(const ValueInfo& v) {
    str(v.name);
    i64(int64_t(v.dtype));
    u8(v.has_shape);
    i64(int64_t(v.shape.size()));
    for (const Dim& d : v.shape) {
      i64(d.value);
      str(d.symbol);
    }
  }
  void attribute(const Attribute& a) {
    u8(uint8_t(a.kind));
    i64(a.i);
    f64(a.f);
    str(a.s);
    ints(a.ints);
    i64(int64_t(a.floats.size()));
    for (double f : a.floats) f64(f);
    strs(a.strings);
    tensor(a.t);
  }
  void node(const Node& n) {
    str(n.name);
    str(n.op_type);
    str(n.domain);
    i64(n.opset);
    strs(n.inputs);
    strs(n.outputs);
    i64(int64_t(n.attrs.size()));
    for (const auto& [key, a] : n.attrs) {
      str(key);
      attribute(a);
    }
    u8(n.weight != nullptr);
    if (n.weight) {
      const QuantizedWeight& w = *n.weight;
      str(w.name);
      str(w.pattern);
      tensor(w.data);
      tensor(w.scale);
      tensor(w.zero_point);
      i64(w.axis);
      i64(w.block_size);
    }
    i64(int64_t(n.epilogue.size()));
    for (const Node& step : n.epilogue) node(step);
  }
  std::vector<uint8_t> out;
};

class Reader {
 public:
  Reader(const uint8_t* data, size_t size, std::string what) : p_(data), end_(data + size), what_(std::move(what)) {}

  void raw(void* dst, size_t n) {
    check(size_t(end_ - p_) >= n, ErrorKind::Malformed, what_ + ": the model data is truncated or corrupt");
    std::memcpy(dst, p_, n);
    p_ += n;
  }
  uint8_t u8() {
    uint8_t v;
    raw(&v, 1);
    return v;
  }
  int64_t i64() {
    int64_t v;
    raw(&v, 8);
    return v;
  }
  double f64() {
    double v;
    raw(&v, 8);
    return v;
  }
  // A count of items that take at least `min_bytes` each: never more than the bytes left allow.
  size_t count(size_t min_bytes = 1) {
    int64_t n = i64();
    check(n >= 0 && uint64_t(n) <= uint64_t(end_ - p_) / min_bytes, ErrorKind::Malformed,
          what_ + ": the model data is truncated or corrupt (a count of " + std::to_string(n) + ")");
    return size_t(n);
  }
  std::string str() {
    std::string s(count(), '\0');
    raw(s.data(), s.size());
    return s;
  }
  std::vector<int64_t> ints() {
    std::vector<int64_t> v(count(8));
    for (int64_t& x : v) x = i64();
    return v;
  }
  std::vector<std::string> strs() {
    std::vector<std::string> v(count(8));
    for (std::string& s : v) s = str();
    return v;
  }
  DType dtype() {
    int64_t code = i64();
    DType t = code >= 0 && code < 64 ? dtype_from_onnx(int32_t(code)) : DType::Undefined;
    check(code == 0 || t != DType::Undefined, ErrorKind::Malformed, what_ + ": unknown element type " + std::to_string(code));
    return t;
  }
  Tensor tensor() {
    DType t = dtype();
    if (t == DType::Undefined) return Tensor();
    Shape shape = ints();
    std::vector<uint8_t> bytes(count());
    raw(bytes.data(), bytes.size());
    return Tensor(t, shape, std::move(bytes));  // checks the byte count against type and shape
  }
  ValueInfo value() {
    ValueInfo v;
    v.name = str();
    v.dtype = dtype();
    v.has_shape = u8() != 0;
    v.shape.resize(count(16));
    for (Dim& d : v.shape) {
      d.value = i64();
      d.symbol = str();
    }
    return v;
  }
  Attribute attribute() {
    Attribute a;
    int kind = u8();
    check(kind <= int(Attribute::Kind::Tensor), ErrorKind::Malformed, what_ + ": unknown attribute kind");
    a.kind = static_cast<Attribute::Kind>(kind);
    a.i = i64();
    a.f = f64();
    a.s = str();
    a.ints = ints();
    a.floats.resize(count(8));
    for (double& f : a.floats) f = f64();
    a.strings = strs();
    a.t = tensor();
    return a;
  }
  Node node(int depth = 0) {
    check(depth < 4, ErrorKind::Malformed, what_ + ": epilogues nest too deep");
    Node n;
    n.name = str();
    n.op_type = str();
    n.domain = str();
    n.opset = i64();
    n.inputs = strs();
    n.outputs = strs();
    for (size_t k = count(8); k-- > 0;) {
      std::string key = str();
      n.attrs[key] = attribute();
    }
    if (u8()) {
      auto w = std::make_shared<QuantizedWeight>();
      w->name = str();
      w->pattern = str();
      w->data = tensor();
      w->scale = tensor();
      w->zero_point = tensor();
      w->axis = i64();
      w->block_size = i64();
      n.weight = w;
    }
    n.epilogue.resize(count(8));
    for (Node& step : n.epilogue) step = node(depth + 1);
    return n;
  }
  bool at_end() const { return p_ == end_; }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
  std::string what_;
};

}  // namespace

std::vector<uint8_t> serialize_graph(const Graph& g) {
  Writer w;
  w.raw(kMagic, sizeof kMagic);
  w.i64(kVersion);
  w.str(g.name);
  w.i64(g.ir_version);
  w.i64(int64_t(g.opsets.size()));
  for (const auto& [domain, version] : g.opsets) {
    w.str(domain);
    w.i64(version);
  }
  for (const auto* list : {&g.inputs, &g.outputs}) {
    w.i64(int64_t(list->size()));
    for (const ValueInfo& v : *list) w.value(v);
  }
  w.i64(int64_t(g.initializers.size()));
  for (const auto& [name, t] : g.initializers) {
    w.str(name);
    w.tensor(t);
  }
  w.i64(int64_t(g.nodes.size()));
  for (const Node& n : g.nodes) w.node(n);
  w.i64(int64_t(g.values.size()));
  for (const auto& [name, v] : g.values) w.value(v);
  return std::move(w.out);
}

Graph deserialize_graph(const uint8_t* data, size_t size, const std::string& what) {
  Reader r(data, size, what);
  char magic[sizeof kMagic];
  r.raw(magic, sizeof magic);
  check(std::memcmp(magic, kMagic, sizeof kMagic) == 0, ErrorKind::Malformed, what + ": not tetra model data");
  int64_t version = r.i64();
  check(version == kVersion, ErrorKind::Malformed,
        what + ": model data version " + std::to_string(version) + ", this runtime reads " + std::to_string(kVersion));
  Graph g;
  g.name = r.str();
  g.ir_version = r.i64();
  for (size_t k = r.count(16); k-- > 0;) {
    std::string domain = r.str();
    g.opsets[domain] = r.i64();
  }
  for (auto* list : {&g.inputs, &g.outputs}) {
    list->resize(r.count(16));
    for (ValueInfo& v : *list) v = r.value();
  }
  for (size_t k = r.count(16); k-- > 0;) {
    std::string name = r.str();
    g.initializers[name] = r.tensor();
  }
  g.nodes.resize(r.count(16));
  for (Node& n : g.nodes) n = r.node();
  for (size_t k = r.count(16); k-- > 0;) {
    ValueInfo v = r.value();
    g.values[v.name] = v;
  }
  check(r.at_end(), ErrorKind::Malformed, what + ": trailing bytes after the model data");
  return g;
}

uint64_t fnv1a64(const uint8_t* data, size_t size) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < size; ++i) h = (h ^ data[i]) * 1099511628211ull;
  return h;
}

}  // namespace tetra
