// Small helpers shared by the operator families: broadcasting, axes, output infos.
#pragma once
#include <string>
#include <vector>

#include "importer/error.h"
#include "runtime/op_registry.h"

namespace tetra {

// "Conv 'conv1': message" — every op error names its node.
[[noreturn]] void op_fail(const Node& node, const std::string& message, ErrorKind kind = ErrorKind::Invalid);
inline void op_check(bool ok, const Node& node, const std::string& message, ErrorKind kind = ErrorKind::Invalid) {
  if (!ok) op_fail(node, message, kind);
}

// Input i of a kernel: nullptr when omitted (an empty Tensor) or past the end.
const Tensor* input_if_given(const std::vector<Tensor>& inputs, size_t i);
// Input i, failing with the node's name when it is omitted.
const Tensor& input_required(const Node& node, const std::vector<Tensor>& inputs, size_t i);

// Normalises a possibly negative axis into [0, rank), failing with the node's name if out of range
// (always at rank 0).
int64_t normalize_axis(const Node& node, int64_t axis, int64_t rank);

// Numpy-style multidirectional broadcast of concrete and symbolic shapes.
Shape broadcast_shapes(const Node& node, const Shape& a, const Shape& b);
SymbolicShape broadcast_shapes(const Node& node, const SymbolicShape& a, const SymbolicShape& b);

// Expand's shape input as dims, checked: a 1-D int64 tensor of dims of at least 0.
Shape expand_dims(const Node& node, const Tensor& shape);
// For each flat index of `out`, the flat index into an input of shape `in` broadcast to `out`.
std::vector<int64_t> broadcast_index_map(const Shape& in, const Shape& out);

ValueInfo make_info(DType dtype, SymbolicShape shape);
ValueInfo make_info(DType dtype, const Shape& shape);
ValueInfo unknown_rank(DType dtype);  // rank not known statically

// Rounds half to even (as ONNX's QuantizeLinear and Round).
double round_half_even(double x);

}  // namespace tetra
