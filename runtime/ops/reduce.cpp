// Reductions and normalisations of the reference evaluator: ReduceSum, ReduceMean, ReduceMax, ReduceMin, Softmax,
// LayerNormalization and (inference-mode) BatchNormalization. Sums accumulate in double for float
// inputs and in int64 for integer inputs; results are rounded once into the output type.
#include <algorithm>
#include <cmath>
#include <optional>

#include "runtime/ops/op_util.h"
#include "runtime/ops/reduce.h"

namespace tetra {
namespace {

// ---------------------------------------------------------------------------------------------
// Shared helpers

const Tensor& input(const Node& node, const std::vector<Tensor>& in, size_t i) {
  op_check(i < in.size() && !in[i].empty(), node, "input " + std::to_string(i) + " is required but missing");
  return in[i];
}

const Tensor* optional_input(const std::vector<Tensor>& in, size_t i) {
  return i < in.size() && !in[i].empty() ? &in[i] : nullptr;
}

void check_float(const Node& node, DType t, const std::string& what) {
  op_check(t == DType::Undefined || is_float(t), node, what + " must be a float tensor, got " + dtype_name(t));
}

ValueInfo with_dtype(const ValueInfo& v, DType dtype) {
  return v.has_shape ? make_info(dtype, v.shape) : unknown_rank(dtype);
}

// Product of shape[begin, end).
int64_t span(const Shape& shape, int64_t begin, int64_t end) {
  int64_t n = 1;
  for (int64_t d = begin; d < end; ++d) n *= shape[d];
  return n;
}

// A node reports its outputs by position; omitted trailing outputs are simply not asked for.
size_t output_count(const Node& node) { return std::max<size_t>(1, node.outputs.size()); }

// ---------------------------------------------------------------------------------------------
// ReduceSum, ReduceMean, ReduceMax, ReduceMin
//
// Axes are the 'axes' attribute before `axes_input_opset` (13 for ReduceSum, 18 for the others) and
// the optional input 1 from then on. No axes means every axis, unless noop_with_empty_axes is set.

// The requested axes; nullopt when they come from an input whose value is not known yet.
std::optional<std::vector<int64_t>> requested_axes(const Node& node, int64_t axes_input_opset, bool axes_given,
                                                   const Tensor* axes_value) {
  if (node.opset < axes_input_opset) return node.attr_ints("axes");
  if (!axes_given) return std::vector<int64_t>{};
  if (!axes_value) return std::nullopt;
  op_check(axes_value->dtype() == DType::Int64, node, "axes must be int64, got " + dtype_name(axes_value->dtype()));
  return axes_value->to_ints();
}

// Which axes are reduced; all false for a no-op.
std::vector<bool> reduced_axes(const Node& node, const std::vector<int64_t>& axes, int64_t rank) {
  bool empty = axes.empty();
  std::vector<bool> reduced(rank, empty && !node.attr_flag("noop_with_empty_axes", false));
  for (int64_t a : axes) {
    int64_t axis = normalize_axis(node, a, rank);
    op_check(!reduced[axis], node, "axis " + std::to_string(a) + " is listed twice");
    reduced[axis] = true;
  }
  return reduced;
}

template <class DimT>
std::vector<DimT> reduced_shape(const std::vector<DimT>& shape, const std::vector<bool>& reduced, bool keepdims,
                                DimT one) {
  std::vector<DimT> out;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (!reduced[d])
      out.push_back(shape[d]);
    else if (keepdims)
      out.push_back(one);
  }
  return out;
}

enum class Reduction { Sum, Mean, Max, Min };

Tensor reduce(const Node& node, const Tensor& x, const std::vector<bool>& reduced, bool keepdims, Reduction how) {
  op_check(x.dtype() != DType::Bool, node, "cannot reduce a bool tensor");
  bool mean = how == Reduction::Mean;
  Shape kept = reduced_shape<int64_t>(x.shape(), reduced, true, 1);
  int64_t count = 1;  // elements per output
  for (int64_t d = 0; d < x.rank(); ++d)
    if (reduced[d]) count *= x.shape()[d];
  // Each input element's slot in the output: the input shape broadcast from the kept shape.
  std::vector<int64_t> slot = broadcast_index_map(kept, x.shape());
  Tensor y(x.dtype(), kept);
  if (how == Reduction::Max || how == Reduction::Min) {
    // Over no elements: the identity, -inf / +inf (the type's lowest / highest for integers).
    bool is_max = how == Reduction::Max;
    if (is_float(x.dtype())) {
      std::vector<double> acc(y.size(), is_max ? -INFINITY : INFINITY);
      for (int64_t i = 0; i < x.size(); ++i) {
        double v = x.get(i);
        if (std::isnan(v) || (is_max ? v > acc[slot[i]] : v < acc[slot[i]])) acc[slot[i]] = v;
      }
      for (int64_t k = 0; k < y.size(); ++k) y.set(k, acc[k]);
    } else {
      op_check(count > 0, node, "max or min over zero elements of an integer tensor");
      std::vector<int64_t> acc(y.size());
      std::vector<bool> seen(y.size(), false);
      for (int64_t i = 0; i < x.size(); ++i) {
        int64_t v = x.get_int(i);
        if (!seen[slot[i]] || (is_max ? v > acc[slot[i]] : v < acc[slot[i]])) acc[slot[i]] = v;
        seen[slot[i]] = true;
      }
      for (int64_t k = 0; k < y.size(); ++k) y.set_int(k, acc[k]);
    }
  } else if (is_float(x.dtype())) {
    std::vector<double> acc(y.size(), 0.0);
    for (int64_t i = 0; i < x.size(); ++i) acc[slot[i]] += x.get(i);
    for (int64_t k = 0; k < y.size(); ++k) y.set(k, mean ? acc[k] / static_cast<double>(count) : acc[k]);
  } else {
    op_check(!mean || count > 0, node, "mean over zero elements of an integer tensor");
    std::vector<uint64_t> acc(y.size(), 0);  // unsigned: wraps like the integer type instead of overflowing
    for (int64_t i = 0; i < x.size(); ++i) acc[slot[i]] += static_cast<uint64_t>(x.get_int(i));
    for (int64_t k = 0; k < y.size(); ++k) {
      int64_t sum = static_cast<int64_t>(acc[k]);
      y.set_int(k, mean ? sum / count : sum);  // integer mean truncates toward zero, as numpy's astype
    }
  }
  return keepdims ? y : y.reshaped(reduced_shape<int64_t>(x.shape(), reduced, false, 1));
}

// From this opset on the axes are input 1 rather than an attribute.
int64_t axes_input_since(const std::string& op) { return op == "ReduceSum" ? 13 : 18; }

void add_reduce(OpRegistry& r, const std::string& op, Reduction how) {
  const int64_t axes_input_opset = axes_input_since(op);
  r.add({"", op,
         [=](const InferContext& ctx) {
           const ValueInfo& x = ctx.input(0);
           op_check(x.dtype != DType::Bool, ctx.node, "cannot reduce a bool tensor");
           bool keepdims = ctx.node.attr_flag("keepdims", true);
           auto axes = requested_axes(ctx.node, axes_input_opset, ctx.has(1), ctx.constant(1));
           if (!x.has_shape) return std::vector<ValueInfo>{unknown_rank(x.dtype)};
           if (!axes) {  // which axes is unknown: with keepdims the rank stays, every dim may become 1
             if (!keepdims) return std::vector<ValueInfo>{unknown_rank(x.dtype)};
             return std::vector<ValueInfo>{make_info(x.dtype, SymbolicShape(x.shape.size()))};
           }
           auto reduced = reduced_axes(ctx.node, *axes, static_cast<int64_t>(x.shape.size()));
           return std::vector<ValueInfo>{make_info(x.dtype, reduced_shape<Dim>(x.shape, reduced, keepdims, Dim{1, ""}))};
         },
         [=](const Node& node, const std::vector<Tensor>& in) {
           const Tensor& x = input(node, in, 0);
           ReduceAxes axes = reduce_axes(node, in, x.rank());
           return std::vector<Tensor>{reduce(node, x, axes.reduced, axes.keepdims, how)};
         }});
}

// ---------------------------------------------------------------------------------------------
// Softmax
//
// Before opset 13 the input is coerced to 2-D [prod(dims < axis), prod(dims >= axis)] (axis default
// 1) and each row is normalised; from 13 on it is normalised along `axis` alone (default -1).

int64_t softmax_axis(const Node& node, int64_t rank) {
  return normalize_axis(node, node.attr_int("axis", node.opset < 13 ? 1 : -1), rank);
}

std::vector<Tensor> softmax_compute(const Node& node, const std::vector<Tensor>& in) {
  const Tensor& x = input(node, in, 0);
  check_float(node, x.dtype(), "input");
  const Shape& s = x.shape();
  int64_t axis = softmax_axis(node, x.rank());
  // Each softmax runs over `n` elements spaced `inner` apart.
  int64_t outer = span(s, 0, axis);
  int64_t n = node.opset < 13 ? span(s, axis, x.rank()) : (x.rank() ? s[axis] : 1);
  int64_t inner = node.opset < 13 ? 1 : span(s, axis + 1, x.rank());
  Tensor y(x.dtype(), s);
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      int64_t base = o * n * inner + i;
      double max = -INFINITY;
      for (int64_t k = 0; k < n; ++k) max = std::max(max, x.get(base + k * inner));
      double sum = 0;
      for (int64_t k = 0; k < n; ++k) sum += std::exp(x.get(base + k * inner) - max);
      for (int64_t k = 0; k < n; ++k) y.set(base + k * inner, std::exp(x.get(base + k * inner) - max) / sum);
    }
  }
  return {y};
}

std::vector<ValueInfo> softmax_infer(const InferContext& ctx) {
  const ValueInfo& x = ctx.input(0);
  check_float(ctx.node, x.dtype, "input");
  if (x.has_shape) softmax_axis(ctx.node, static_cast<int64_t>(x.shape.size()));  // validates the axis
  return {with_dtype(x, x.dtype)};
}

// ---------------------------------------------------------------------------------------------
// LayerNormalization (opset 17): normalises over dims [axis, rank) (axis default -1), then applies
// Scale and the optional B, both unidirectionally broadcastable to X. Optional outputs Mean and
// InvStdDev have X's shape with dims [axis, rank) set to 1, in the stash type (float32).

struct LayerNormParams {
  int64_t axis;
  double epsilon;
};

LayerNormParams layer_norm_params(const Node& node, int64_t rank) {
  int64_t stash = node.attr_int("stash_type", 1);
  op_check(dtype_from_onnx(static_cast<int32_t>(stash)) == DType::Float32, node,
           "stash_type " + std::to_string(stash) + " is not supported (only float32)", ErrorKind::Unsupported);
  return {normalize_axis(node, node.attr_int("axis", -1), rank), node.attr_float("epsilon", 1e-5)};
}

// Flat index into `param` for each element of `x`, checking that `param` broadcasts onto x's shape.
std::vector<int64_t> param_index(const Node& node, const Tensor& param, const Shape& x_shape, const char* what) {
  op_check(broadcast_shapes(node, x_shape, param.shape()) == x_shape, node,
           std::string(what) + " of shape " + shape_str(param.shape()) + " does not broadcast to " + shape_str(x_shape));
  return broadcast_index_map(param.shape(), x_shape);
}

std::vector<Tensor> layer_norm_compute(const Node& node, const std::vector<Tensor>& in) {
  const Tensor& x = input(node, in, 0);
  const Tensor& scale = input(node, in, 1);
  const Tensor* bias = optional_input(in, 2);
  check_float(node, x.dtype(), "X");
  auto p = layer_norm_params(node, x.rank());
  std::vector<int64_t> scale_at = param_index(node, scale, x.shape(), "Scale");
  std::vector<int64_t> bias_at = bias ? param_index(node, *bias, x.shape(), "B") : std::vector<int64_t>{};

  int64_t outer = span(x.shape(), 0, p.axis), n = span(x.shape(), p.axis, x.rank());
  Shape stat_shape = x.shape();
  for (int64_t d = p.axis; d < x.rank(); ++d) stat_shape[d] = 1;
  Tensor y(x.dtype(), x.shape()), mean_t(DType::Float32, stat_shape), inv_t(DType::Float32, stat_shape);
  for (int64_t o = 0; o < outer; ++o) {
    int64_t base = o * n;
    double sum = 0;
    for (int64_t k = 0; k < n; ++k) sum += x.get(base + k);
    double mean = sum / static_cast<double>(n);
    double sq = 0;
    for (int64_t k = 0; k < n; ++k) sq += (x.get(base + k) - mean) * (x.get(base + k) - mean);
    double inv_std = 1.0 / std::sqrt(sq / static_cast<double>(n) + p.epsilon);
    for (int64_t k = 0; k < n; ++k) {
      int64_t i = base + k;
      double v = (x.get(i) - mean) * inv_std * scale.get(scale_at[i]);
      y.set(i, bias ? v + bias->get(bias_at[i]) : v);
    }
    mean_t.set(o, mean);
    inv_t.set(o, inv_std);
  }
  std::vector<Tensor> out{y, mean_t, inv_t};
  out.resize(std::min<size_t>(3, output_count(node)));
  return out;
}

std::vector<ValueInfo> layer_norm_infer(const InferContext& ctx) {
  const ValueInfo& x = ctx.input(0);
  ctx.input(1);  // Scale is required
  check_float(ctx.node, x.dtype, "X");
  std::vector<ValueInfo> out{with_dtype(x, x.dtype), unknown_rank(DType::Float32), unknown_rank(DType::Float32)};
  if (x.has_shape) {
    auto p = layer_norm_params(ctx.node, static_cast<int64_t>(x.shape.size()));
    SymbolicShape stat = x.shape;
    for (size_t d = p.axis; d < stat.size(); ++d) stat[d] = Dim{1, ""};
    out[1] = out[2] = make_info(DType::Float32, stat);
  }
  out.resize(std::min<size_t>(3, output_count(ctx.node)));
  return out;
}

// ---------------------------------------------------------------------------------------------
// BatchNormalization, inference mode only: y = (x - mean[c]) / sqrt(var[c] + epsilon) * scale[c] + B[c]
// over X = [N, C, D1, ...]. Training (extra outputs, training_mode=1) and the pre-opset-9
// spatial=0 form are not supported.

void check_inference_mode(const Node& node) {
  for (size_t i = 1; i < node.outputs.size(); ++i)
    op_check(node.outputs[i].empty(), node, "training-mode outputs (running mean/var) are not supported",
             ErrorKind::Unsupported);
  op_check(!node.attr_flag("training_mode", false), node, "training_mode=1 is not supported", ErrorKind::Unsupported);
  op_check(node.attr_flag("spatial", true), node, "spatial=0 is not supported", ErrorKind::Unsupported);
}

const char* const kBatchNormParams[] = {"scale", "B", "input_mean", "input_var"};

std::vector<Tensor> batch_norm_compute(const Node& node, const std::vector<Tensor>& in) {
  check_inference_mode(node);
  const Tensor& x = input(node, in, 0);
  check_float(node, x.dtype(), "X");
  op_check(x.rank() >= 2, node, "X must have rank >= 2, got shape " + shape_str(x.shape()));
  int64_t channels = x.shape()[1];
  const Tensor* params[4];
  for (size_t i = 0; i < 4; ++i) {
    params[i] = &input(node, in, i + 1);
    check_float(node, params[i]->dtype(), kBatchNormParams[i]);
    op_check(params[i]->shape() == Shape{channels}, node,
             std::string(kBatchNormParams[i]) + " must have shape [" + std::to_string(channels) + "], got " +
                 shape_str(params[i]->shape()));
  }
  double epsilon = node.attr_float("epsilon", 1e-5);
  int64_t inner = span(x.shape(), 2, x.rank());
  Tensor y(x.dtype(), x.shape());
  for (int64_t i = 0; i < x.size(); ++i) {
    int64_t c = (i / inner) % channels;
    double normalized = (x.get(i) - params[2]->get(c)) / std::sqrt(params[3]->get(c) + epsilon);
    y.set(i, normalized * params[0]->get(c) + params[1]->get(c));
  }
  return {y};
}

std::vector<ValueInfo> batch_norm_infer(const InferContext& ctx) {
  check_inference_mode(ctx.node);
  const ValueInfo& x = ctx.input(0);
  check_float(ctx.node, x.dtype, "X");
  if (x.has_shape) {
    op_check(x.shape.size() >= 2, ctx.node, "X must have rank >= 2, got " + shape_str(x.shape));
    Dim c = x.shape[1];
    for (size_t i = 0; i < 4; ++i) {
      const ValueInfo& p = ctx.input(i + 1);
      if (!p.has_shape) continue;
      op_check(p.shape.size() == 1 && (!c.known() || !p.shape[0].known() || p.shape[0].value == c.value), ctx.node,
               std::string(kBatchNormParams[i]) + " of shape " + shape_str(p.shape) + " does not match X " +
                   shape_str(x.shape));
    }
  }
  return {with_dtype(x, x.dtype)};
}

}  // namespace

ReduceAxes reduce_axes(const Node& node, const std::vector<Tensor>& in, int64_t rank) {
  const Tensor* axes_value = optional_input(in, 1);
  auto axes = requested_axes(node, axes_input_since(node.op_type), axes_value != nullptr, axes_value);
  return {reduced_axes(node, *axes, rank), node.attr_flag("keepdims", true)};
}

void register_reduce_ops(OpRegistry& r) {
  add_reduce(r, "ReduceSum", Reduction::Sum);
  add_reduce(r, "ReduceMean", Reduction::Mean);
  add_reduce(r, "ReduceMax", Reduction::Max);
  add_reduce(r, "ReduceMin", Reduction::Min);
  r.add({"", "Softmax", softmax_infer, softmax_compute});
  r.add({"", "LayerNormalization", layer_norm_infer, layer_norm_compute});
  r.add({"", "BatchNormalization", batch_norm_infer, batch_norm_compute});
}

}  // namespace tetra
