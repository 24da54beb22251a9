#include "runtime/ops/op_util.h"

#include <algorithm>
#include <cmath>

namespace tetra {

void op_fail(const Node& node, const std::string& message, ErrorKind kind) {
  fail(kind, node.label() + ": " + message);
}

const Tensor* input_if_given(const std::vector<Tensor>& inputs, size_t i) {
  return i < inputs.size() && !inputs[i].empty() ? &inputs[i] : nullptr;
}

const Tensor& input_required(const Node& node, const std::vector<Tensor>& inputs, size_t i) {
  const Tensor* t = input_if_given(inputs, i);
  op_check(t != nullptr, node, "input " + std::to_string(i) + " is required but missing");
  return *t;
}

int64_t normalize_axis(const Node& node, int64_t axis, int64_t rank) {
  // A scalar has no axis at all: rank 0 accepts none, so callers never index an empty shape.
  op_check(axis >= -rank && axis < rank, node,
           "axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(rank));
  return axis < 0 ? axis + rank : axis;
}

Shape broadcast_shapes(const Node& node, const Shape& a, const Shape& b) {
  size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    int64_t da = i + a.size() >= rank ? a[i + a.size() - rank] : 1;
    int64_t db = i + b.size() >= rank ? b[i + b.size() - rank] : 1;
    op_check(da == db || da == 1 || db == 1, node,
             "shapes " + shape_str(a) + " and " + shape_str(b) + " do not broadcast");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

SymbolicShape broadcast_shapes(const Node& node, const SymbolicShape& a, const SymbolicShape& b) {
  size_t rank = std::max(a.size(), b.size());
  SymbolicShape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    Dim da = i + a.size() >= rank ? a[i + a.size() - rank] : Dim{1, ""};
    Dim db = i + b.size() >= rank ? b[i + b.size() - rank] : Dim{1, ""};
    if (da.known() && db.known()) {
      op_check(da.value == db.value || da.value == 1 || db.value == 1, node,
               "shapes " + shape_str(a) + " and " + shape_str(b) + " do not broadcast");
      out[i] = da.value == 1 ? db : da;
    } else if (da.known() && da.value != 1) {
      out[i] = da;
    } else if (db.known() && db.value != 1) {
      out[i] = db;
    } else if (da.known()) {
      out[i] = db;  // 1 vs unknown: the unknown one
    } else if (db.known()) {
      out[i] = da;
    } else {
      out[i] = da.symbol == db.symbol ? da : Dim{};
    }
  }
  return out;
}

Shape expand_dims(const Node& node, const Tensor& shape) {
  op_check(shape.dtype() == DType::Int64 && shape.rank() == 1, node,
           "the shape must be a 1-D int64 tensor, got " + dtype_name(shape.dtype()) + shape_str(shape.shape()));
  Shape dims = shape.to_ints();
  for (int64_t d : dims) op_check(d >= 0, node, "the shape " + shape_str(dims) + " has a negative dim");
  return dims;
}

std::vector<int64_t> broadcast_index_map(const Shape& in, const Shape& out) {
  int64_t n = num_elements(out);
  std::vector<int64_t> map(n);
  size_t rank = out.size();
  std::vector<int64_t> in_strides(rank, 0);
  auto s = strides_of(in);
  for (size_t i = 0; i < in.size(); ++i) {
    size_t o = i + rank - in.size();
    in_strides[o] = in[i] == 1 ? 0 : s[i];
  }
  std::vector<int64_t> idx(rank, 0);
  int64_t offset = 0;
  for (int64_t k = 0; k < n; ++k) {
    map[k] = offset;
    for (int64_t d = static_cast<int64_t>(rank) - 1; d >= 0; --d) {
      if (++idx[d] < out[d]) {
        offset += in_strides[d];
        break;
      }
      offset -= in_strides[d] * (out[d] - 1);
      idx[d] = 0;
    }
  }
  return map;
}

ValueInfo make_info(DType dtype, SymbolicShape shape) {
  ValueInfo v;
  v.dtype = dtype;
  v.shape = std::move(shape);
  v.has_shape = true;
  return v;
}

ValueInfo make_info(DType dtype, const Shape& shape) { return make_info(dtype, to_symbolic(shape)); }

ValueInfo unknown_rank(DType dtype) {
  ValueInfo v;
  v.dtype = dtype;
  v.has_shape = false;
  return v;
}

double round_half_even(double x) { return std::nearbyint(x); }

}  // namespace tetra
