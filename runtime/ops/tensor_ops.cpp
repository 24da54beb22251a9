// Data-movement operators: Reshape, Transpose, Flatten, Squeeze, Unsqueeze, Concat, Split, Slice,
// Gather, Shape, ConstantOfShape, Constant. They move elements without arithmetic, so they work on
// every supported element type (int4 and bool included). Each op's shape logic lives in one
// function over symbolic shapes, used by `infer` and, with known shapes, by `compute`.
#include <algorithm>
#include <functional>
#include <numeric>
#include <optional>

#include "runtime/ops/op_util.h"
#include "runtime/ops/tensor_ops.h"

namespace tetra {

namespace {

// ---- shared helpers ------------------------------------------------------------------------------


// Element copy that is exact for every type: integers (int64 included) never go through double.
void copy_element(const Tensor& src, int64_t i, Tensor& dst, int64_t j) {
  if (is_float(src.dtype())) dst.set(j, src.get(i));
  else dst.set_int(j, src.get_int(i));
}

// out[j] = src[from[j]].
Tensor take(const Tensor& src, const Shape& shape, const std::vector<int64_t>& from) {
  Tensor out(src.dtype(), shape);
  for (int64_t j = 0; j < out.size(); ++j) copy_element(src, from[j], out, j);
  return out;
}

std::string ints_str(const std::vector<int64_t>& v) { return shape_str(Shape(v)); }

int64_t product(const Shape& s, size_t begin, size_t end) {
  int64_t p = 1;
  for (size_t i = begin; i < end; ++i) p *= s[i];
  return p;
}

// Symbolic shape of a ValueInfo, or nullptr when its rank is unknown.
const SymbolicShape* shape_of(const ValueInfo& v) { return v.has_shape ? &v.shape : nullptr; }

SymbolicShape unknown_dims(size_t rank) { return SymbolicShape(rank, Dim{}); }

// The static length of 1-D input i (a shape or axes list), or -1 when not known.
int64_t list_length(const InferContext& ctx, size_t i) {
  if (!ctx.has(i)) return -1;
  const ValueInfo& v = ctx.input(i);
  return v.has_shape && v.shape.size() == 1 ? v.shape[0].value : -1;
}

// An int list given by an attribute (opset < since) or by an optional input (opset >= since).
// `known` is false when the input is given but its value is not known statically.
struct IntsArg {
  bool present = false;
  bool known = true;
  std::vector<int64_t> values;
};

IntsArg ints_arg(const Node& node, const std::string& attr, int64_t since, bool input_present, const Tensor* value) {
  IntsArg a;
  if (node.opset < since) {
    a.present = node.has_attr(attr);
    if (a.present) a.values = node.attr_ints(attr);
  } else {
    a.present = input_present;
    a.known = !input_present || value != nullptr;
    if (input_present && value) a.values = value->to_ints();
  }
  return a;
}
IntsArg ints_arg(const InferContext& ctx, size_t i, const std::string& attr, int64_t since) {
  return ints_arg(ctx.node, attr, since, ctx.has(i), ctx.constant(i));
}
IntsArg ints_arg(const Node& node, const std::vector<Tensor>& in, size_t i, const std::string& attr, int64_t since) {
  const Tensor* t = input_if_given(in, i);
  return ints_arg(node, attr, since, t != nullptr, t);
}

// Normalises a list of axes against `rank`, rejecting duplicates.
std::vector<int64_t> normalize_axes(const Node& node, const std::vector<int64_t>& axes, int64_t rank) {
  std::vector<int64_t> out;
  for (int64_t a : axes) {
    int64_t n = normalize_axis(node, a, rank);
    op_check(std::find(out.begin(), out.end(), n) == out.end(), node, "axes " + ints_str(axes) + " repeat an axis");
    out.push_back(n);
  }
  return out;
}

// Copies `count` slices along `axis` from src (starting at slice src_first) into dst (at dst_first);
// src and dst agree on every other axis. Concat and Split are this with different offsets.
void copy_along_axis(const Tensor& src, int64_t src_first, Tensor& dst, int64_t dst_first, int64_t axis,
                     int64_t count) {
  const Shape& s = src.shape();
  int64_t outer = product(s, 0, axis), inner = product(s, axis + 1, s.size());
  int64_t src_dim = s[axis], dst_dim = dst.shape()[axis];
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t c = 0; c < count; ++c)
      for (int64_t i = 0; i < inner; ++i)
        copy_element(src, (o * src_dim + src_first + c) * inner + i, dst, (o * dst_dim + dst_first + c) * inner + i);
}

// Registers an ai.onnx operator.
void add(OpRegistry& r, const std::string& op, InferFn infer, ComputeFn compute) {
  r.add(OpDef{"", op, std::move(infer), std::move(compute)});
}
// Registers an ai.onnx operator whose output is a view of its input (OpDef::output_views_input).
void add_view(OpRegistry& r, const std::string& op, InferFn infer, ComputeFn compute) {
  r.add(OpDef{"", op, std::move(infer), std::move(compute), true});
}

// ---- Reshape ---------------------------------------------------------------------------------------

// Target dims: 0 copies the input dim (unless allowzero), -1 takes what is left. `in` may be null
// (rank unknown); unknown input dims only cancel when a 0 copies them across.
SymbolicShape reshape_shape(const Node& node, const SymbolicShape* in, const std::vector<int64_t>& target,
                            bool allowzero) {
  int64_t infer_at = -1;
  for (size_t i = 0; i < target.size(); ++i) {
    op_check(target[i] >= -1, node, "shape " + ints_str(target) + " has a dimension below -1");
    if (target[i] == -1) {
      op_check(infer_at < 0, node, "shape " + ints_str(target) + " has more than one -1");
      infer_at = int64_t(i);
    }
  }
  const bool has_zero = std::count(target.begin(), target.end(), 0) > 0;
  op_check(!(allowzero && has_zero && infer_at >= 0), node,
           "shape " + ints_str(target) + " mixes 0 and -1 while allowzero is set");
  SymbolicShape out(target.size());
  std::vector<bool> copied(in ? in->size() : 0, false);
  for (size_t i = 0; i < target.size(); ++i) {
    if (target[i] == 0 && !allowzero) {
      if (!in) continue;  // unknown
      op_check(i < in->size(), node, "shape " + ints_str(target) + " copies dim " + std::to_string(i) +
                                         " of an input of rank " + std::to_string(in->size()));
      out[i] = (*in)[i];
      copied[i] = true;
    } else if (target[i] >= 0) {
      out[i] = Dim{target[i], ""};
    }
  }
  if (!in) return out;
  // Elements not accounted for by copied dims must match on both sides.
  bool in_rest_known = true;
  int64_t in_rest = 1, out_rest = 1;
  for (size_t i = 0; i < in->size(); ++i) {
    if (copied[i]) continue;
    if ((*in)[i].known()) in_rest *= (*in)[i].value;
    else in_rest_known = false;
  }
  for (size_t i = 0; i < target.size(); ++i) {
    if (int64_t(i) == infer_at || (i < copied.size() && copied[i])) continue;
    out_rest *= out[i].value;  // known: only copied dims may be unknown
  }
  if (!in_rest_known) return out;
  if (infer_at >= 0) {
    op_check(out_rest != 0 || in_rest == 0, node,
             "cannot reshape " + shape_str(*in) + " to " + ints_str(target));
    op_check(out_rest == 0 || in_rest % out_rest == 0, node,
             "cannot reshape " + shape_str(*in) + " to " + ints_str(target));
    // With a zero-size remainder on both sides -1 is ambiguous; ONNX runtimes take 0.
    out[infer_at] = Dim{out_rest == 0 ? 0 : in_rest / out_rest, ""};
  } else {
    op_check(in_rest == out_rest, node, "cannot reshape " + shape_str(*in) + " to " + ints_str(target));
  }
  return out;
}

bool reshape_allowzero(const Node& node) { return node.opset >= 14 && node.attr_flag("allowzero", false); }

void register_reshape(OpRegistry& r) {
  add_view(
      r, "Reshape",
      [](const InferContext& ctx) {
        const ValueInfo& x = ctx.input(0);
        if (const Tensor* target = ctx.constant(1))
          return std::vector<ValueInfo>{
              make_info(x.dtype, reshape_shape(ctx.node, shape_of(x), target->to_ints(), reshape_allowzero(ctx.node)))};
        int64_t rank = list_length(ctx, 1);
        return std::vector<ValueInfo>{rank >= 0 ? make_info(x.dtype, unknown_dims(rank)) : unknown_rank(x.dtype)};
      },
      [](const Node& node, const std::vector<Tensor>& in) {
        const Tensor& x = input_required(node, in, 0);
        SymbolicShape xs = to_symbolic(x.shape());
        SymbolicShape out = reshape_shape(node, &xs, input_required(node, in, 1).to_ints(), reshape_allowzero(node));
        return std::vector<Tensor>{x.reshaped(to_shape(out))};
      });
}

// ---- Transpose ---------------------------------------------------------------------------------------

std::vector<int64_t> transpose_perm(const Node& node, int64_t rank) {
  std::vector<int64_t> perm(rank);
  for (int64_t i = 0; i < rank; ++i) perm[i] = rank - 1 - i;  // default: reverse the axes
  perm = node.attr_ints("perm", perm);
  op_check(int64_t(perm.size()) == rank, node, "perm " + ints_str(perm) + " does not have rank " + std::to_string(rank) + " entries");
  std::vector<int64_t> sorted = perm;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < rank; ++i)
    op_check(sorted[i] == i, node, "perm " + ints_str(perm) + " is not a permutation of 0.." + std::to_string(rank - 1));
  return perm;
}

void register_transpose(OpRegistry& r) {
  add(r, "Transpose",
      [](const InferContext& ctx) {
        const ValueInfo& x = ctx.input(0);
        if (!x.has_shape) {
          if (!ctx.node.has_attr("perm")) return std::vector<ValueInfo>{unknown_rank(x.dtype)};
          return std::vector<ValueInfo>{make_info(x.dtype, unknown_dims(ctx.node.attr_ints("perm").size()))};
        }
        std::vector<int64_t> perm = transpose_perm(ctx.node, x.shape.size());
        SymbolicShape out;
        for (int64_t p : perm) out.push_back(x.shape[p]);
        return std::vector<ValueInfo>{make_info(x.dtype, out)};
      },
      [](const Node& node, const std::vector<Tensor>& in) {
        const Tensor& x = input_required(node, in, 0);
        const Shape& s = x.shape();
        std::vector<int64_t> perm = transpose_perm(node, x.rank());
        Shape out_shape;
        for (int64_t p : perm) out_shape.push_back(s[p]);
        // Walk the output in order; `src` follows along using the input strides of the permuted axes.
        std::vector<int64_t> in_strides = strides_of(s), idx(perm.size(), 0), from(x.size());
        int64_t src = 0;
        for (int64_t j = 0; j < x.size(); ++j) {
          from[j] = src;
          for (int64_t d = int64_t(perm.size()) - 1; d >= 0; --d) {
            src += in_strides[perm[d]];
            if (++idx[d] < out_shape[d]) break;
            src -= in_strides[perm[d]] * out_shape[d];
            idx[d] = 0;
          }
        }
        return std::vector<Tensor>{take(x, out_shape, from)};
      });
}

// ---- Flatten, Squeeze, Unsqueeze: reshapes with a rule for the new shape -----------------------------

Dim dim_product(const SymbolicShape& s, size_t begin, size_t end) {
  int64_t p = 1;
  for (size_t i = begin; i < end; ++i) {
    if (s[i].known() && s[i].value == 0) return Dim{0, ""};
  }
  for (size_t i = begin; i < end; ++i) {
    if (!s[i].known()) return end - begin == 1 ? s[i] : Dim{};
    p *= s[i].value;
  }
  return Dim{p, ""};
}

SymbolicShape flatten_shape(const Node& node, const SymbolicShape& in) {
  int64_t rank = in.size(), axis = node.attr_int("axis", 1);
  op_check(axis >= -rank && axis <= rank, node,
           "axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(rank));
  if (axis < 0) axis += rank;
  return {dim_product(in, 0, axis), dim_product(in, axis, rank)};
}

// Squeeze: `axes` absent removes every dim of size 1. Returns nullopt when that needs unknown dims.
std::optional<SymbolicShape> squeeze_shape(const Node& node, const SymbolicShape& in, const IntsArg& axes) {
  int64_t rank = in.size();
  std::vector<int64_t> drop;
  if (axes.present) {
    drop = normalize_axes(node, axes.values, rank);
    for (int64_t a : drop)
      op_check(!in[a].known() || in[a].value == 1, node,
               "cannot squeeze axis " + std::to_string(a) + " of size " + std::to_string(in[a].value) + " in " + shape_str(in));
  } else {
    for (int64_t a = 0; a < rank; ++a) {
      if (!in[a].known()) return std::nullopt;
      if (in[a].value == 1) drop.push_back(a);
    }
  }
  SymbolicShape out;
  for (int64_t a = 0; a < rank; ++a)
    if (std::find(drop.begin(), drop.end(), a) == drop.end()) out.push_back(in[a]);
  return out;
}

SymbolicShape unsqueeze_shape(const Node& node, const SymbolicShape& in, const std::vector<int64_t>& axes) {
  int64_t rank = int64_t(in.size() + axes.size());
  std::vector<int64_t> at = normalize_axes(node, axes, rank);
  SymbolicShape out;
  size_t next = 0;
  for (int64_t a = 0; a < rank; ++a)
    out.push_back(std::find(at.begin(), at.end(), a) != at.end() ? Dim{1, ""} : in[next++]);
  return out;
}

void register_reshape_like(OpRegistry& r) {
  add_view(
      r, "Flatten",
      [](const InferContext& ctx) {
        const ValueInfo& x = ctx.input(0);
        if (!x.has_shape) return std::vector<ValueInfo>{make_info(x.dtype, unknown_dims(2))};
        return std::vector<ValueInfo>{make_info(x.dtype, flatten_shape(ctx.node, x.shape))};
      },
      [](const Node& node, const std::vector<Tensor>& in) {
        const Tensor& x = input_required(node, in, 0);
        return std::vector<Tensor>{x.reshaped(to_shape(flatten_shape(node, to_symbolic(x.shape()))))};
      });
  add_view(
      r, "Squeeze",
      [](const InferContext& ctx) {
        const ValueInfo& x = ctx.input(0);
        IntsArg axes = ints_arg(ctx, 1, "axes", 13);
        const int64_t removed = list_length(ctx, 1);
        if (x.has_shape && !axes.known && removed >= 0 && removed <= int64_t(x.shape.size()))
          return std::vector<ValueInfo>{make_info(x.dtype, unknown_dims(x.shape.size() - removed))};
        if (!x.has_shape || !axes.known) return std::vector<ValueInfo>{unknown_rank(x.dtype)};
        auto out = squeeze_shape(ctx.node, x.shape, axes);
        return std::vector<ValueInfo>{out ? make_info(x.dtype, *out) : unknown_rank(x.dtype)};
      },
      [](const Node& node, const std::vector<Tensor>& in) {
        const Tensor& x = input_required(node, in, 0);
        auto out = squeeze_shape(node, to_symbolic(x.shape()), ints_arg(node, in, 1, "axes", 13));
        return std::vector<Tensor>{x.reshaped(to_shape(*out))};
      });
  add_view(
      r, "Unsqueeze",
      [](const InferContext& ctx) {
        const ValueInfo& x = ctx.input(0);
        IntsArg axes = ints_arg(ctx, 1, "axes", 13);
        op_check(axes.present, ctx.node, "axes are required");
        if (x.has_shape && !axes.known && list_length(ctx, 1) >= 0)
          return std::vector<ValueInfo>{make_info(x.dtype, unknown_dims(x.shape.size() + list_length(ctx, 1)))};
        if (!x.has_shape || !axes.known) return std::vector<ValueInfo>{unknown_rank(x.dtype)};
        return std::vector<ValueInfo>{make_info(x.dtype, unsqueeze_shape(ctx.node, x.shape, axes.values))};
      },
      [](const Node& node, const std::vector<Tensor>& in) {
        const Tensor& x = input_required(node, in, 0);
        IntsArg axes = ints_arg(node, in, 1, "axes", 13);
        op_check(axes.present, node, "axes are required");
        return std::vector<Tensor>{x.reshaped(to_shape(unsqueeze_shape(node, to_symbolic(x.shape()), axes.values)))};
      });
}

// ---- Concat, Split ---------------------------------------------------------------------------------

// Concatenated shape; `inputs` must all have known rank. Returns the normalised axis too.
SymbolicShape concat_shape(const Node& node, const std::vector<SymbolicShape>& inputs, int64_t* axis_out) {
  op_check(!inputs.empty(), node, "needs at least one input");
  op_check(node.has_attr("axis"), node, "attribute 'axis' is required");
  const size_t rank = inputs[0].size();
  int64_t axis = normalize_axis(node, node.attr_int("axis", 0), rank);
  SymbolicShape out = inputs[0];
  for (size_t j = 1; j < inputs.size(); ++j) {
    const SymbolicShape& s = inputs[j];
    op_check(s.size() == rank, node, "input " + std::to_string(j) + " " + shape_str(s) +
                                         " does not have the rank of " + shape_str(inputs[0]));
    for (size_t d = 0; d < rank; ++d) {
      if (int64_t(d) == axis) {
        out[d] = out[d].known() && s[d].known() ? Dim{out[d].value + s[d].value, ""} : Dim{};
      } else if (s[d].known() && out[d].known()) {
        op_check(s[d].value == out[d].value, node, "input " + std::to_string(j) + " " + shape_str(s) +
                                                       " does not match " + shape_str(inputs[0]) + " off the axis");
      } else if (!out[d].known() && s[d].known()) {
        out[d] = s[d];
      }
    }
  }
  *axis_out = axis;
  return out;
}

// Sizes of the Split outputs along the axis of size `dim` (-1 when unknown); -1 entries when unknown.
std::vector<int64_t> split_sizes(const Node& node, const IntsArg& split, int64_t dim, size_t outputs) {
  if (split.present) {
    if (!split.known) return std::vector<int64_t>(outputs, -1);
    op_check(split.values.size() == outputs, node, "split " + ints_str(split.values) + " does not have one entry per output (" +
                                                       std::to_string(outputs) + ")");
    for (int64_t s : split.values) op_check(s >= 0, node, "split " + ints_str(split.values) + " has a negative size");
    int64_t total = std::accumulate(split.values.begin(), split.values.end(), int64_t(0));
    op_check(dim < 0 || total == dim, node,
             "split " + ints_str(split.values) + " sums to " + std::to_string(total) + ", the axis has " + std::to_string(dim));
    return split.values;
  }
  int64_t parts = int64_t(outputs);
  if (node.opset >= 18 && node.has_attr("num_outputs")) {
    parts = node.attr_int("num_outputs", 0);
    op_check(parts == int64_t(outputs), node, "num_outputs " + std::to_string(parts) + " does not match the " +
                                                  std::to_string(outputs) + " outputs");
  }
  op_check(parts >= 1, node, "needs at least one output");
  if (dim < 0) return std::vector<int64_t>(outputs, -1);
  if (node.opset < 18)
    op_check(dim % parts == 0, node, "axis of size " + std::to_string(dim) + " does not split evenly into " +
                                         std::to_string(parts));
  // From opset 18 an uneven split makes the last chunk smaller.
  int64_t chunk = (dim + parts - 1) / parts;
  std::vector<int64_t> sizes(parts, chunk);
  sizes.back() = dim - chunk * (parts - 1);
  op_check(sizes.back() >= 0, node, "axis of size " + std::to_string(dim) + " cannot be split into " + std::to_string(parts));
  return sizes;
}

void register_concat_split(OpRegistry& r) {
  add(r, "Concat",
      [](const InferContext& ctx) {
        DType dtype = ctx.input(0).dtype;
        const ValueInfo* ranked = nullptr;
        for (size_t j = 0; j < ctx.count(); ++j) {
          const ValueInfo& v = ctx.input(j);
          op_check(v.dtype == dtype, ctx.node, "inputs mix " + dtype_name(dtype) + " and " + dtype_name(v.dtype));
          if (v.has_shape) ranked = &v;
        }
        if (!ranked) return std::vector<ValueInfo>{unknown_rank(dtype)};
        // An input of unknown rank still has the common rank, just no known dims.
        std::vector<SymbolicShape> shapes;
        for (size_t j = 0; j < ctx.count(); ++j)
          shapes.push_back(ctx.input(j).has_shape ? ctx.input(j).shape : unknown_dims(ranked->shape.size()));
        int64_t axis;
        return std::vector<ValueInfo>{make_info(dtype, concat_shape(ctx.node, shapes, &axis))};
      },
      [](const Node& node, const std::vector<Tensor>& in) {
        int64_t axis;
        Tensor out(in[0].dtype(), concat_output_shape(node, in, &axis));
        int64_t offset = 0;
        for (const Tensor& t : in) {
          copy_along_axis(t, 0, out, offset, axis, t.shape()[axis]);
          offset += t.shape()[axis];
        }
        return std::vector<Tensor>{out};
      });
  add(r, "Split",
      [](const InferContext& ctx) {
        const ValueInfo& x = ctx.input(0);
        size_t outputs = ctx.node.outputs.size();
        if (!x.has_shape) return std::vector<ValueInfo>(outputs, unknown_rank(x.dtype));
        int64_t axis = normalize_axis(ctx.node, ctx.node.attr_int("axis", 0), x.shape.size());
        std::vector<int64_t> sizes = split_sizes(ctx.node, ints_arg(ctx, 1, "split", 13), x.shape[axis].value, outputs);
        std::vector<ValueInfo> out;
        for (int64_t s : sizes) {
          SymbolicShape shape = x.shape;
          shape[axis] = Dim{s, ""};
          out.push_back(make_info(x.dtype, shape));
        }
        return out;
      },
      [](const Node& node, const std::vector<Tensor>& in) {
        const Tensor& x = input_required(node, in, 0);
        int64_t axis;
        std::vector<int64_t> sizes = split_output_sizes(node, in, &axis);
        std::vector<Tensor> out;
        int64_t offset = 0;
        for (int64_t s : sizes) {
          Shape shape = x.shape();
          shape[axis] = s;
          Tensor t(x.dtype(), shape);
          copy_along_axis(x, offset, t, 0, axis, s);
          offset += s;
          out.push_back(t);
        }
        return out;
      });
}

// ---- Slice ----------------------------------------------------------------------------------------

// ONNX's clamping rules for one axis of size `dim`.
SliceRange slice_range(int64_t dim, int64_t start, int64_t end, int64_t step) {
  if (dim == 0) return SliceRange{0, step, 0};
  if (start < 0) start += dim;
  if (end < 0) end += dim;
  SliceRange r;
  r.step = step;
  if (step > 0) {
    r.start = std::clamp<int64_t>(start, 0, dim);
    end = std::clamp<int64_t>(end, 0, dim);
    r.count = end > r.start ? (end - r.start + step - 1) / step : 0;
  } else {
    r.start = std::clamp<int64_t>(start, 0, dim - 1);
    end = std::clamp<int64_t>(end, -1, dim - 1);
    r.count = r.start > end ? (r.start - end - step - 1) / -step : 0;
  }
  return r;
}

struct SliceArgs {
  bool known = false;  // starts, ends, axes and steps all known
  std::vector<int64_t> starts, ends, axes, steps;
  bool axes_known = true;
};

// `arg(i, name)` reads starts/ends/axes/steps from the attributes or inputs (infer or compute side).
SliceArgs slice_args(const Node& node, const std::function<IntsArg(size_t, const std::string&)>& arg, int64_t rank) {
  SliceArgs a;
  IntsArg starts = arg(1, "starts"), ends = arg(2, "ends"), axes = arg(3, "axes"), steps = arg(4, "steps");
  op_check(starts.present && ends.present, node, "starts and ends are required");
  a.axes_known = axes.known;
  a.known = starts.known && ends.known && axes.known && steps.known;
  if (!a.known) {
    if (axes.present && axes.known) a.axes = normalize_axes(node, axes.values, rank);
    return a;
  }
  a.starts = starts.values;
  a.ends = ends.values;
  op_check(a.starts.size() == a.ends.size(), node, "starts " + ints_str(a.starts) + " and ends " + ints_str(a.ends) +
                                                       " differ in length");
  std::vector<int64_t> default_axes(a.starts.size());
  std::iota(default_axes.begin(), default_axes.end(), 0);
  a.axes = normalize_axes(node, axes.present ? axes.values : default_axes, rank);
  a.steps = steps.present ? steps.values : std::vector<int64_t>(a.starts.size(), 1);
  op_check(a.axes.size() == a.starts.size() && a.steps.size() == a.starts.size(), node,
           "starts, ends, axes and steps must have the same length");
  for (int64_t s : a.steps) op_check(s != 0, node, "steps " + ints_str(a.steps) + " contain 0");
  return a;
}

// Per-axis ranges over the whole input: unsliced axes keep everything.
std::vector<SliceRange> slice_ranges(const SliceArgs& a, const SymbolicShape& in) {
  std::vector<SliceRange> r(in.size());
  for (size_t d = 0; d < in.size(); ++d) r[d].count = in[d].value;
  for (size_t i = 0; i < a.axes.size(); ++i) {
    int64_t d = a.axes[i];
    r[d] = in[d].known() ? slice_range(in[d].value, a.starts[i], a.ends[i], a.steps[i]) : SliceRange{};
  }
  return r;
}

void register_slice(OpRegistry& r) {
  add(r, "Slice",
      [](const InferContext& ctx) {
        const ValueInfo& x = ctx.input(0);
        if (!x.has_shape) return std::vector<ValueInfo>{unknown_rank(x.dtype)};
        auto arg = [&](size_t i, const std::string& name) { return ints_arg(ctx, i, name, 10); };
        SliceArgs a = slice_args(ctx.node, arg, x.shape.size());
        SymbolicShape out = x.shape;
        if (!a.known) {
          // Without the values only the sliced axes (all, if axes are unknown or defaulted) become unknown.
          bool all = !a.axes_known || a.axes.empty();
          for (size_t d = 0; d < out.size(); ++d)
            if (all || std::count(a.axes.begin(), a.axes.end(), int64_t(d))) out[d] = Dim{};
        } else {
          std::vector<SliceRange> ranges = slice_ranges(a, x.shape);
          for (int64_t d : a.axes) out[d] = Dim{ranges[d].count, ""};
        }
        return std::vector<ValueInfo>{make_info(x.dtype, out)};
      },
      [](const Node& node, const std::vector<Tensor>& in) {
        const Tensor& x = input_required(node, in, 0);
        std::vector<SliceRange> ranges = slice_ranges(node, in);
        Shape out_shape;
        for (const SliceRange& r : ranges) out_shape.push_back(r.count);
        // Odometer over the output; each output index maps to start + i * step on its axis.
        std::vector<int64_t> strides = strides_of(x.shape()), idx(ranges.size(), 0), from(num_elements(out_shape));
        for (int64_t j = 0; j < int64_t(from.size()); ++j) {
          int64_t src = 0;
          for (size_t d = 0; d < ranges.size(); ++d) src += (ranges[d].start + idx[d] * ranges[d].step) * strides[d];
          from[j] = src;
          for (int64_t d = int64_t(idx.size()) - 1; d >= 0; --d) {
            if (++idx[d] < out_shape[d]) break;
            idx[d] = 0;
          }
        }
        return std::vector<Tensor>{take(x, out_shape, from)};
      });
}

// ---- Gather ---------------------------------------------------------------------------------------

SymbolicShape gather_shape(const SymbolicShape& data, const SymbolicShape& indices, int64_t axis) {
  SymbolicShape out(data.begin(), data.begin() + axis);
  out.insert(out.end(), indices.begin(), indices.end());
  out.insert(out.end(), data.begin() + axis + 1, data.end());
  return out;
}

void register_gather(OpRegistry& r) {
  add(r, "Gather",
      [](const InferContext& ctx) {
        const ValueInfo &x = ctx.input(0), &idx = ctx.input(1);
        op_check(idx.dtype == DType::Int32 || idx.dtype == DType::Int64, ctx.node,
                 "indices must be int32 or int64, got " + dtype_name(idx.dtype));
        if (!x.has_shape || !idx.has_shape) return std::vector<ValueInfo>{unknown_rank(x.dtype)};
        op_check(!x.shape.empty(), ctx.node, "data must have rank >= 1");
        int64_t axis = normalize_axis(ctx.node, ctx.node.attr_int("axis", 0), x.shape.size());
        return std::vector<ValueInfo>{make_info(x.dtype, gather_shape(x.shape, idx.shape, axis))};
      },
      [](const Node& node, const std::vector<Tensor>& in) {
        const Tensor &x = input_required(node, in, 0), &indices = input_required(node, in, 1);
        op_check(x.rank() >= 1, node, "data must have rank >= 1");
        int64_t axis = normalize_axis(node, node.attr_int("axis", 0), x.rank());
        const Shape& s = x.shape();
        int64_t outer = product(s, 0, axis), dim = s[axis], inner = product(s, axis + 1, s.size());
        std::vector<int64_t> idx = indices.to_ints();
        for (int64_t& i : idx) {
          op_check(i >= -dim && i < dim, node,
                   "index " + std::to_string(i) + " is out of range for axis " + std::to_string(axis) + " of size " +
                       std::to_string(dim));
          if (i < 0) i += dim;
        }
        std::vector<int64_t> from;
        from.reserve(outer * idx.size() * inner);
        for (int64_t o = 0; o < outer; ++o)
          for (int64_t i : idx)
            for (int64_t k = 0; k < inner; ++k) from.push_back((o * dim + i) * inner + k);
        Shape out_shape = to_shape(gather_shape(to_symbolic(s), to_symbolic(indices.shape()), axis));
        return std::vector<Tensor>{take(x, out_shape, from)};
      });
}

// ---- Shape, ConstantOfShape, Constant ----------------------------------------------------------------

// The [start, end) range of dims Shape returns (attributes from opset 15).
std::pair<int64_t, int64_t> shape_range(const Node& node, int64_t rank) {
  auto clamp_dim = [rank](int64_t v) { return std::clamp<int64_t>(v < 0 ? v + rank : v, 0, rank); };
  if (node.opset < 15) return {0, rank};
  int64_t start = clamp_dim(node.attr_int("start", 0)), end = clamp_dim(node.attr_int("end", rank));
  return {start, std::max(start, end)};
}

Tensor constant_of_shape_value(const Node& node) {
  if (!node.has_attr("value")) return Tensor::scalar(DType::Float32, 0.0);
  const Tensor& v = node.attr_tensor("value");
  op_check(v.size() == 1, node, "value must hold exactly one element, has " + std::to_string(v.size()));
  return v;
}

Shape constant_of_shape_dims(const Node& node, const Tensor& shape) {
  op_check(shape.rank() == 1, node, "the shape input must be 1-D, got " + shape_str(shape.shape()));
  Shape dims = shape.to_ints();
  for (int64_t d : dims) op_check(d >= 0, node, "shape " + shape_str(dims) + " has a negative dimension");
  return dims;
}

Tensor constant_value(const Node& node) {
  if (node.has_attr("value")) return node.attr_tensor("value");
  if (node.has_attr("value_float")) return Tensor::scalar(DType::Float32, node.attr_float("value_float", 0));
  if (node.has_attr("value_int")) return Tensor::from_ints(DType::Int64, {}, {node.attr_int("value_int", 0)});
  if (node.has_attr("value_floats")) {
    std::vector<double> v = node.attr_floats("value_floats");
    return Tensor::from_doubles(DType::Float32, {int64_t(v.size())}, v);
  }
  if (node.has_attr("value_ints")) {
    std::vector<int64_t> v = node.attr_ints("value_ints");
    return Tensor::from_ints(DType::Int64, {int64_t(v.size())}, v);
  }
  for (const char* key : {"sparse_value", "value_string", "value_strings"})
    op_check(!node.has_attr(key), node, std::string("attribute '") + key + "' is not supported", ErrorKind::Unsupported);
  op_fail(node, "has none of the value attributes");
}

void register_shape_and_constants(OpRegistry& r) {
  add(r, "Shape",
      [](const InferContext& ctx) {
        const ValueInfo& x = ctx.input(0);
        if (!x.has_shape) return std::vector<ValueInfo>{make_info(DType::Int64, unknown_dims(1))};
        auto [start, end] = shape_range(ctx.node, x.shape.size());
        return std::vector<ValueInfo>{make_info(DType::Int64, Shape{end - start})};
      },
      [](const Node& node, const std::vector<Tensor>& in) {
        const Tensor& x = input_required(node, in, 0);
        auto [start, end] = shape_range(node, x.rank());
        std::vector<int64_t> dims(x.shape().begin() + start, x.shape().begin() + end);
        return std::vector<Tensor>{Tensor::from_ints(DType::Int64, {end - start}, dims)};
      });
  add(r, "ConstantOfShape",
      [](const InferContext& ctx) {
        DType dtype = constant_of_shape_value(ctx.node).dtype();
        if (const Tensor* shape = ctx.constant(0))
          return std::vector<ValueInfo>{make_info(dtype, constant_of_shape_dims(ctx.node, *shape))};
        int64_t rank = list_length(ctx, 0);
        return std::vector<ValueInfo>{rank >= 0 ? make_info(dtype, unknown_dims(rank)) : unknown_rank(dtype)};
      },
      [](const Node& node, const std::vector<Tensor>& in) {
        Tensor value = constant_of_shape_value(node);
        Tensor out(value.dtype(), constant_of_shape_dims(node, input_required(node, in, 0)));
        for (int64_t j = 0; j < out.size(); ++j) copy_element(value, 0, out, j);
        return std::vector<Tensor>{out};
      });
  add(r, "Constant",
      [](const InferContext& ctx) {
        Tensor v = constant_value(ctx.node);
        return std::vector<ValueInfo>{make_info(v.dtype(), v.shape())};
      },
      [](const Node& node, const std::vector<Tensor>&) { return std::vector<Tensor>{constant_value(node)}; });
}

}  // namespace

std::vector<int64_t> transpose_permutation(const Node& node, int64_t rank) { return transpose_perm(node, rank); }

Shape concat_output_shape(const Node& node, const std::vector<Tensor>& in, int64_t* axis) {
  std::vector<SymbolicShape> shapes;
  for (size_t j = 0; j < in.size(); ++j) {
    const Tensor& t = input_required(node, in, j);
    op_check(t.dtype() == in[0].dtype(), node,
             "inputs mix " + dtype_name(in[0].dtype()) + " and " + dtype_name(t.dtype()));
    shapes.push_back(to_symbolic(t.shape()));
  }
  return to_shape(concat_shape(node, shapes, axis));
}

std::vector<int64_t> split_output_sizes(const Node& node, const std::vector<Tensor>& in, int64_t* axis) {
  const Tensor& x = input_required(node, in, 0);
  *axis = normalize_axis(node, node.attr_int("axis", 0), x.rank());
  return split_sizes(node, ints_arg(node, in, 1, "split", 13), x.shape()[*axis], node.outputs.size());
}

std::vector<SliceRange> slice_ranges(const Node& node, const std::vector<Tensor>& in) {
  const Tensor& x = input_required(node, in, 0);
  auto arg = [&](size_t i, const std::string& name) { return ints_arg(node, in, i, name, 10); };
  return slice_ranges(slice_args(node, arg, x.rank()), to_symbolic(x.shape()));
}

void register_tensor_ops(OpRegistry& r) {
  register_reshape(r);
  register_transpose(r);
  register_reshape_like(r);
  register_concat_split(r);
  register_slice(r);
  register_gather(r);
  register_shape_and_constants(r);
}

}  // namespace tetra
