// tetra's graph IR: a topologically ordered list of nodes over named values, with shapes.
// Importing an ONNX model yields a Graph; every backend (reference, Halide) consumes one.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "importer/tensor.h"

namespace tetra {

struct Attribute {
  enum class Kind { Int, Float, String, Ints, Floats, Strings, Tensor };
  Kind kind = Kind::Int;
  int64_t i = 0;
  double f = 0;
  std::string s;
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strings;
  tetra::Tensor t;
};

// Attribute values, for code that builds nodes.
Attribute int_attr(int64_t value);
Attribute float_attr(double value);
Attribute string_attr(std::string value);
Attribute ints_attr(std::vector<int64_t> values);
Attribute tensor_attr(Tensor value);

// The constant weight of a fused GEMM or conv (tetra.QMatMul, tetra.QConv), kept in its storage format.
// An int4 weight stays packed, with the DequantizeLinear parameters that give its real values:
//   value(idx) = (q(idx) - zero_point(block of idx)) * scale(block of idx).
// Every int4 pattern (DequantizeLinear, MatMulNBits, fake-quant) is normalised into this form. A float
// weight (is_float(): float32 or float16 data, pattern "Float") has no scale or zero point, and
// value(idx) is the stored value: the weight format is one more axis of the same kernels.
struct QuantizedWeight {
  std::string name;     // the model tensor it came from
  std::string pattern;  // "DequantizeLinear", "MatMulNBits", "FakeQuant" or "Float"
  Tensor data;          // Int4 or UInt4, packed, shape = quant shape; or Float32 / Float16
  Tensor scale;         // float32 or float16; shape [] (per tensor), [dim(axis)] or blocked; empty if float
  Tensor zero_point;    // empty() when absent; same shape as scale otherwise
  int64_t axis = 0;     // meaningful when scale is not a scalar
  int64_t block_size = 0;  // 0: per-tensor or per-axis

  const Shape& shape() const { return data.shape(); }
  bool is_float() const { return data.dtype() == DType::Float32 || data.dtype() == DType::Float16; }
  DType value_dtype() const { return is_float() ? data.dtype() : scale.dtype(); }
  bool per_tensor() const { return scale.size() == 1 && scale.rank() <= 1 && block_size == 0; }
  // Index into scale/zero_point for the element at flat index `i` of `data` (quantized weights only;
  // the ops also use it over float data as a view of a quantization grid).
  int64_t param_index(int64_t i) const;
  // The dequantized value in the scale's precision (float32 arithmetic, as DequantizeLinear).
  float value(int64_t i) const;
  // Describes the quantization for tools: "per-tensor", "per-axis(1)", "blocked(axis 0, 32)".
  std::string granularity() const;
};

struct Node {
  std::string name;
  std::string op_type;
  std::string domain;  // "" for ai.onnx, "com.microsoft", or "tetra" for fused nodes
  int64_t opset = 0;   // the opset version of `domain` the model imports
  std::vector<std::string> inputs;   // "" marks an omitted optional input
  std::vector<std::string> outputs;  // "" marks an omitted optional output
  std::map<std::string, Attribute> attrs;
  // Set on nodes that consume an int4 weight kept packed (tetra.QMatMul, tetra.QConv).
  std::shared_ptr<const QuantizedWeight> weight;
  // Elementwise steps fused after a tetra.QMatMul/QConv, applied in order to its result: each is the
  // original node (an activation, or an Add of a residual). Step input 0 is the running value ("");
  // other step inputs name values that the fused node also lists as inputs (from index 2 on).
  std::vector<Node> epilogue;

  std::string label() const;  // "Conv 'conv1'" for messages
  bool has_attr(const std::string& key) const { return attrs.count(key) != 0; }
  int64_t attr_int(const std::string& key, int64_t fallback) const;
  // A 0/1 attribute (transB, keepdims, ...): any other value is an error naming the node.
  bool attr_flag(const std::string& key, bool fallback) const;
  double attr_float(const std::string& key, double fallback) const;
  std::string attr_string(const std::string& key, const std::string& fallback) const;
  std::vector<int64_t> attr_ints(const std::string& key, const std::vector<int64_t>& fallback = {}) const;
  std::vector<double> attr_floats(const std::string& key, const std::vector<double>& fallback = {}) const;
  const Tensor& attr_tensor(const std::string& key) const;
  // Input i's name or "" when omitted or out of range.
  const std::string& input(size_t i) const;
  bool has_input(size_t i) const { return !input(i).empty(); }
};

// A dimension: a known size, or unknown (-1) with an optional symbolic name from the model.
struct Dim {
  int64_t value = -1;
  std::string symbol;
  bool known() const { return value >= 0; }
};
using SymbolicShape = std::vector<Dim>;
std::string shape_str(const SymbolicShape& shape);
bool fully_known(const SymbolicShape& shape);
Shape to_shape(const SymbolicShape& shape);  // requires fully_known
SymbolicShape to_symbolic(const Shape& shape);

struct ValueInfo {
  std::string name;
  DType dtype = DType::Undefined;
  SymbolicShape shape;
  bool has_shape = false;  // false: rank unknown
};

struct Graph {
  std::string name;
  int64_t ir_version = 0;
  std::map<std::string, int64_t> opsets;  // domain -> version ("" for ai.onnx)
  std::vector<ValueInfo> inputs;   // runtime inputs only (initializers excluded)
  std::vector<ValueInfo> outputs;
  std::map<std::string, Tensor> initializers;
  std::vector<Node> nodes;  // topologically sorted
  std::map<std::string, ValueInfo> values;  // every value's inferred type and shape

  const ValueInfo* find_value(const std::string& name) const;
  bool is_constant(const std::string& name) const { return initializers.count(name) != 0; }
  // The fused nodes whose weight is int4 (kept packed), for reporting.
  std::vector<const Node*> quantized_nodes() const;
};

}  // namespace tetra
