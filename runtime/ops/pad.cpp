// Pad, the reference kernel: every output element maps to one input element (by the mode) or to the
// constant. Exact for every element type; int4 and bool included.
#include "runtime/ops/pad.h"

#include "runtime/ops/op_util.h"

namespace tetra {

std::optional<PadArgs> pad_args(const Node& node, int64_t rank, const Tensor* pads, const Tensor* value,
                                const Tensor* axes) {
  PadArgs a;
  a.mode = node.attr_string("mode", "constant");
  op_check(a.mode == "constant" || a.mode == "reflect" || a.mode == "edge" || (a.mode == "wrap" && node.opset >= 19),
           node, "mode '" + a.mode + "' is not a Pad mode" + (node.opset < 19 ? " of opset " + std::to_string(node.opset) : ""));
  std::vector<int64_t> list;
  std::vector<int64_t> dims(rank);
  for (int64_t d = 0; d < rank; ++d) dims[d] = d;
  if (node.opset < 11) {
    list = node.attr_ints("pads");
    a.value = node.attr_float("value", 0.0);
  } else {
    if (!pads) return std::nullopt;
    op_check(pads->dtype() == DType::Int64, node, "pads must be int64, got " + dtype_name(pads->dtype()));
    list = pads->to_ints();
    if (value) {
      op_check(value->size() == 1, node, "constant_value must hold one value, got " + shape_str(value->shape()));
      a.value = is_float(value->dtype()) ? value->get(0) : double(value->get_int(0));
    }
    if (axes) {
      op_check(axes->dtype() == DType::Int64 || axes->dtype() == DType::Int32, node, "axes must be int32 or int64");
      dims.clear();
      for (int64_t axis : axes->to_ints()) dims.push_back(normalize_axis(node, axis, rank));
    }
  }
  op_check(list.size() == 2 * dims.size(), node,
           "pads has " + std::to_string(list.size()) + " values; " + std::to_string(2 * dims.size()) +
               " expected (a begin and an end for each of " + std::to_string(dims.size()) + " axes)");
  a.begin.assign(rank, 0);
  a.end.assign(rank, 0);
  for (size_t i = 0; i < dims.size(); ++i) {
    a.begin[dims[i]] = list[i];
    a.end[dims[i]] = list[i + dims.size()];
  }
  return a;
}

std::optional<PadArgs> pad_args(const Node& node, const Graph& graph, int64_t rank) {
  auto constant = [&](size_t i) -> const Tensor* {
    if (!node.has_input(i)) return nullptr;
    auto it = graph.initializers.find(node.input(i));
    return it == graph.initializers.end() ? nullptr : &it->second;
  };
  for (size_t i = 1; i < node.inputs.size() && node.opset >= 11; ++i)
    if (node.has_input(i) && !constant(i)) return std::nullopt;
  return pad_args(node, rank, constant(1), constant(2), constant(3));
}

namespace {

const Tensor* given(const std::vector<Tensor>& in, size_t i) { return i < in.size() && !in[i].empty() ? &in[i] : nullptr; }

// The input index an output index reads along one dim of size n, or -1 for the constant.
int64_t source_index(const std::string& mode, int64_t i, int64_t n) {
  if (i >= 0 && i < n) return i;
  if (mode == "constant") return -1;
  if (mode == "edge") return i < 0 ? 0 : n - 1;
  if (mode == "wrap") return ((i % n) + n) % n;
  // reflect, without repeating the edge: period 2(n - 1)
  if (n == 1) return 0;
  int64_t period = 2 * (n - 1), r = ((i % period) + period) % period;
  return r < n ? r : period - r;
}

std::vector<Tensor> pad_compute(const Node& node, const std::vector<Tensor>& in) {
  const Tensor& x = input_required(node, in, 0);
  std::optional<PadArgs> a = pad_args(node, x.rank(), given(in, 1), given(in, 2), given(in, 3));
  op_check(bool(a), node, "pads are required");
  Shape out_shape = x.shape();
  for (int64_t d = 0; d < x.rank(); ++d) {
    out_shape[d] += a->begin[d] + a->end[d];
    op_check(out_shape[d] >= 0, node, "pads crop dim " + std::to_string(d) + " below zero");
    op_check(a->mode == "constant" || out_shape[d] == 0 || x.shape()[d] > 0, node,
             "mode '" + a->mode + "' cannot pad an empty dim " + std::to_string(d));
  }
  Tensor y(x.dtype(), out_shape);
  std::vector<int64_t> in_strides(x.rank(), 1);
  for (int64_t d = x.rank() - 1; d > 0; --d) in_strides[d - 1] = in_strides[d] * x.shape()[d];
  std::vector<int64_t> index(x.rank(), 0);  // the output index, odometer order
  for (int64_t o = 0; o < y.size(); ++o) {
    int64_t from = 0;
    for (int64_t d = 0; d < x.rank() && from >= 0; ++d) {
      int64_t i = source_index(a->mode, index[d] - a->begin[d], x.shape()[d]);
      from = i < 0 ? -1 : from + i * in_strides[d];
    }
    if (from >= 0) {
      if (is_float(x.dtype())) y.set(o, x.get(from));
      else y.set_int(o, x.get_int(from));
    } else if (a->value != 0) {
      if (is_float(x.dtype())) y.set(o, a->value);
      else y.set_int(o, static_cast<int64_t>(a->value));
    }
    for (int64_t d = x.rank(); d-- > 0;) {
      if (++index[d] < out_shape[d]) break;
      index[d] = 0;
    }
  }
  return {y};
}

std::vector<ValueInfo> pad_infer(const InferContext& ctx) {
  const ValueInfo& x = ctx.input(0);
  if (!x.has_shape) return {unknown_rank(x.dtype)};
  int64_t rank = static_cast<int64_t>(x.shape.size());
  std::optional<PadArgs> a = pad_args(ctx.node, rank, ctx.constant(1), ctx.constant(2), ctx.constant(3));
  if (!a) return {make_info(x.dtype, SymbolicShape(x.shape.size()))};  // pads computed at run time
  SymbolicShape out = x.shape;
  for (int64_t d = 0; d < rank; ++d) {
    if (!out[d].known()) {
      if (a->begin[d] != 0 || a->end[d] != 0) out[d] = Dim{};
      continue;
    }
    out[d].value += a->begin[d] + a->end[d];
    op_check(out[d].value >= 0, ctx.node, "pads crop dim " + std::to_string(d) + " below zero");
  }
  return {make_info(x.dtype, out)};
}

}  // namespace

void register_pad(OpRegistry& r) { r.add(OpDef{"", "Pad", pad_infer, pad_compute}); }

}  // namespace tetra
