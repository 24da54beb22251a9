// Neural-network operators over float32/float16: MatMul, Gemm, Conv, ConvTranspose, the pools and
// Resize. Arithmetic is in double; each result is rounded once to the output type.
#include <algorithm>
#include <cmath>
#include <limits>

#include "runtime/epilogue.h"
#include "runtime/ops/conv_core.h"
#include "runtime/ops/resize.h"

namespace tetra {

namespace {

// ---- shared helpers ------------------------------------------------------------------------------


// These ops compute in floating point only; every float operand has the first input's type.
DType check_float_inputs(const Node& node, const std::vector<DType>& types) {
  for (DType t : types) {
    op_check(t == DType::Float32 || t == DType::Float16, node,
             "element type " + dtype_name(t) + " is not supported (float32 or float16 only)", ErrorKind::Unsupported);
    op_check(t == types[0], node, "inputs mix " + dtype_name(types[0]) + " and " + dtype_name(t));
  }
  return types[0];
}

std::function<double(int64_t)> reader(const Tensor& t) {
  return [&t](int64_t i) { return t.get(i); };
}

// The element types of the inputs that are present (infer side).
std::vector<DType> input_types(const InferContext& ctx) {
  std::vector<DType> types;
  for (size_t i = 0; i < ctx.count(); ++i)
    if (ctx.has(i)) types.push_back(ctx.inputs[i]->dtype);
  return types;
}
std::vector<DType> input_types(const std::vector<Tensor>& in) {
  std::vector<DType> types;
  for (const Tensor& t : in)
    if (!t.empty()) types.push_back(t.dtype());
  return types;
}

std::vector<ValueInfo> one(ValueInfo v) { return {std::move(v)}; }

// Output with known rank whose dims are all unknown but the first `keep` copied from `x`.
SymbolicShape keep_leading(const SymbolicShape& x, size_t keep) {
  SymbolicShape out(x.size(), Dim{});
  std::copy(x.begin(), x.begin() + std::min(keep, x.size()), out.begin());
  return out;
}

std::string ints_str(const std::vector<int64_t>& v) { return shape_str(Shape(v)); }

// ---- MatMul, Gemm ----------------------------------------------------------------------------------

// Gemm's [M, N] from A, B (with transA/transB) and the unidirectional broadcast of C onto it.
SymbolicShape gemm_shape(const Node& node, const SymbolicShape& a, const SymbolicShape& b, const SymbolicShape* c) {
  op_check(a.size() == 2 && b.size() == 2, node, "A " + shape_str(a) + " and B " + shape_str(b) + " must be 2-D");
  bool ta = node.attr_flag("transA", false), tb = node.attr_flag("transB", false);
  Dim m = a[ta ? 1 : 0], ka = a[ta ? 0 : 1], kb = b[tb ? 1 : 0], n = b[tb ? 0 : 1];
  op_check(!ka.known() || !kb.known() || ka.value == kb.value, node,
           "inner dimensions of A " + shape_str(a) + " and B " + shape_str(b) + " do not match (transA=" +
               std::to_string(ta) + ", transB=" + std::to_string(tb) + ")");
  SymbolicShape out{m, n};
  if (c) {
    op_check(c->size() <= 2, node, "C " + shape_str(*c) + " must have rank <= 2");
    for (size_t i = 0; i < c->size(); ++i) {
      const Dim& cd = (*c)[i];
      const Dim& od = out[i + 2 - c->size()];
      op_check(!cd.known() || !od.known() || cd.value == 1 || cd.value == od.value, node,
               "C " + shape_str(*c) + " does not broadcast to " + shape_str(out));
    }
  }
  return out;
}

void register_matmul_gemm(OpRegistry& r) {
  r.add(OpDef{"", "MatMul",
              [](const InferContext& ctx) {
                const ValueInfo &a = ctx.input(0), &b = ctx.input(1);
                DType t = check_float_inputs(ctx.node, {a.dtype, b.dtype});
                if (!a.has_shape || !b.has_shape) return one(unknown_rank(t));
                return one(make_info(t, matmul_output_shape(ctx.node, a.shape, b.shape)));
              },
              [](const Node& node, const std::vector<Tensor>& in) {
                const Tensor &a = input_required(node, in, 0), &b = input_required(node, in, 1);
                DType t = check_float_inputs(node, {a.dtype(), b.dtype()});
                MatMulResult res = matmul_reference(node, a.shape(), reader(a), b.shape(), reader(b));
                return std::vector<Tensor>{Tensor::from_doubles(t, res.shape, res.values)};
              }});
  r.add(OpDef{"", "Gemm",
              [](const InferContext& ctx) {
                const ValueInfo &a = ctx.input(0), &b = ctx.input(1);
                DType t = check_float_inputs(ctx.node, input_types(ctx));
                if (!a.has_shape || !b.has_shape) return one(make_info(t, SymbolicShape(2, Dim{})));
                const ValueInfo* c = ctx.has(2) ? &ctx.input(2) : nullptr;
                return one(make_info(t, gemm_shape(ctx.node, a.shape, b.shape, c && c->has_shape ? &c->shape : nullptr)));
              },
              [](const Node& node, const std::vector<Tensor>& in) {
                const Tensor &a = input_required(node, in, 0), &b = input_required(node, in, 1);
                const Tensor* c = input_if_given(in, 2);
                DType t = check_float_inputs(node, input_types(in));
                SymbolicShape cs = c ? to_symbolic(c->shape()) : SymbolicShape{};
                Shape out_shape =
                    to_shape(gemm_shape(node, to_symbolic(a.shape()), to_symbolic(b.shape()), c ? &cs : nullptr));
                const bool ta = node.attr_flag("transA", false), tb = node.attr_flag("transB", false);
                const double alpha = node.attr_float("alpha", 1.0), beta = node.attr_float("beta", 1.0);
                const int64_t M = out_shape[0], N = out_shape[1], K = a.shape()[ta ? 0 : 1];
                std::vector<int64_t> c_map = c ? broadcast_index_map(c->shape(), out_shape) : std::vector<int64_t>{};
                Tensor y(t, out_shape);
                for (int64_t m = 0; m < M; ++m)
                  for (int64_t n = 0; n < N; ++n) {
                    double acc = 0;
                    for (int64_t k = 0; k < K; ++k)
                      acc += a.get(ta ? k * M + m : m * K + k) * b.get(tb ? n * K + k : k * N + n);
                    double v = alpha * acc;
                    if (c) v += beta * c->get(c_map[m * N + n]);
                    y.set(m * N + n, v);
                  }
                return std::vector<Tensor>{y};
              }});
}

// ---- Conv ------------------------------------------------------------------------------------------

void check_bias(const Node& node, const Shape& bias, int64_t channels) {
  op_check(bias.size() == 1 && bias[0] == channels, node,
           "bias " + shape_str(bias) + " must be [" + std::to_string(channels) + "]");
}

std::vector<double> bias_values(const Node& node, const Tensor* b, int64_t channels) {
  if (!b) return std::vector<double>(channels, 0.0);
  check_bias(node, b->shape(), channels);
  return b->to_doubles();
}

void register_conv(OpRegistry& r) {
  r.add(OpDef{"", "Conv",
              [](const InferContext& ctx) {
                const ValueInfo &x = ctx.input(0), &w = ctx.input(1);
                DType t = check_float_inputs(ctx.node, input_types(ctx));
                if (!x.has_shape) return one(unknown_rank(t));
                if (!w.has_shape) return one(make_info(t, keep_leading(x.shape, 1)));
                return one(make_info(t, conv_output_shape(ctx.node, x.shape, w.shape)));
              },
              [](const Node& node, const std::vector<Tensor>& in) {
                const Tensor &x = input_required(node, in, 0), &w = input_required(node, in, 1);
                DType t = check_float_inputs(node, input_types(in));
                ConvParams p = conv_params(node, x.shape(), w.shape());
                std::vector<double> bias = bias_values(node, input_if_given(in, 2), p.out_channels);
                Shape y_shape{p.batch, p.out_channels};
                y_shape.insert(y_shape.end(), p.out_spatial.begin(), p.out_spatial.end());
                return std::vector<Tensor>{Tensor::from_doubles(t, y_shape, conv_reference(p, reader(x), reader(w), &bias))};
              }});
}

// ---- Sliding windows (pools, ConvTranspose) ----------------------------------------------------------

// One kernel tap of a sliding window: output position, kernel offset, and the input position it
// reads (flat over the spatial dims), or -1 where the tap falls in the padding.
struct Tap {
  int64_t out, k, in;
};

// Every tap of the windows that `p` describes, in output order. Taps past the padded input (the
// extra windows of ceil_mode) are left out.
std::vector<Tap> window_taps(const ConvParams& p) {
  const size_t R = p.in_spatial.size();
  const int64_t out_total = num_elements(p.out_spatial), k_total = num_elements(p.kernel);
  const std::vector<int64_t> in_strides = strides_of(p.in_spatial), out_strides = strides_of(p.out_spatial),
                             k_strides = strides_of(p.kernel);
  std::vector<Tap> taps;
  for (int64_t o = 0; o < out_total; ++o)
    for (int64_t k = 0; k < k_total; ++k) {
      int64_t in = 0;
      bool pad = false, beyond = false;
      for (size_t d = 0; d < R; ++d) {
        int64_t od = o / out_strides[d] % p.out_spatial[d], kd = k / k_strides[d] % p.kernel[d];
        int64_t pos = od * p.strides[d] - p.pads_begin[d] + kd * p.dilations[d];
        if (pos >= 0 && pos < p.in_spatial[d]) in += pos * in_strides[d];
        else if (pos >= -p.pads_begin[d] && pos < p.in_spatial[d] + p.pads_end[d]) pad = true;
        else beyond = true;
      }
      if (!beyond) taps.push_back(Tap{o, k, pad ? -1 : in});
    }
  return taps;
}

// ---- ConvTranspose ---------------------------------------------------------------------------------

// ConvTranspose's attributes resolved for one spatial axis: the output size and the padding.
struct TransposeAxis {
  int64_t out, pad_begin, pad_end;
};

TransposeAxis conv_transpose_axis(const Node& node, int64_t axis, int64_t spatial, int64_t in, int64_t k) {
  std::string auto_pad = node.attr_string("auto_pad", "NOTSET");
  op_check(auto_pad == "NOTSET" || auto_pad == "VALID" || auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER", node,
           "auto_pad '" + auto_pad + "' is not NOTSET, VALID, SAME_UPPER or SAME_LOWER");
  auto per_axis = [&](const std::string& key, int64_t fallback, size_t count) {
    std::vector<int64_t> v = node.attr_ints(key, std::vector<int64_t>(count, fallback));
    op_check(v.size() == count, node, key + " " + ints_str(v) + " must have " + std::to_string(count) + " entries");
    return v;
  };
  int64_t s = per_axis("strides", 1, spatial)[axis], d = per_axis("dilations", 1, spatial)[axis];
  int64_t adj = per_axis("output_padding", 0, spatial)[axis];
  std::vector<int64_t> pads = per_axis("pads", 0, 2 * spatial);
  op_check(s >= 1 && d >= 1 && adj >= 0, node, "strides and dilations must be positive, output_padding not negative");
  // The output size when nothing is cropped.
  const int64_t full = s * (in - 1) + adj + (k - 1) * d + 1;
  TransposeAxis t{0, pads[axis], pads[axis + spatial]};
  std::vector<int64_t> output_shape = node.attr_ints("output_shape");
  const bool same = auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER";
  if (!output_shape.empty() || same) {
    if (!output_shape.empty()) {
      // Some exporters include N and C; the spatial sizes are the last ones.
      op_check(int64_t(output_shape.size()) >= spatial, node, "output_shape " + ints_str(output_shape) + " is too short");
      t.out = output_shape[output_shape.size() - spatial + axis];
    } else {
      t.out = in * s;
    }
    // The spec's split: SAME_UPPER crops more at the end, everything else more at the beginning.
    // As in ONNX Runtime, padding is never negative: an output_shape beyond `full` extends the end,
    // and SAME with a kernel smaller than the stride keeps `full`.
    int64_t total = std::max<int64_t>(0, full - t.out);
    if (output_shape.empty()) t.out = full - total;
    t.pad_begin = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
    t.pad_end = full - t.out - t.pad_begin;  // negative when extending
  } else {
    if (auto_pad == "VALID") t.pad_begin = t.pad_end = 0;
    op_check(t.pad_begin >= 0 && t.pad_end >= 0, node, "pads " + ints_str(pads) + " must not be negative");
    t.out = full - t.pad_begin - t.pad_end;
  }
  op_check(t.out >= 1, node, "spatial axis " + std::to_string(axis) + " would have output size " + std::to_string(t.out));
  return t;
}

void check_transpose_weight(const Node& node, const SymbolicShape& x, const SymbolicShape& w, int64_t group) {
  op_check(x.size() >= 3 && w.size() == x.size(), node,
           "input " + shape_str(x) + " and weight " + shape_str(w) + " must be [N, C, spatial...] and [C, M/group, k...]");
  op_check(x.size() <= 5, node, "only 1-D, 2-D and 3-D transposed convolutions are supported", ErrorKind::Unsupported);
  op_check(group >= 1, node, "group must be positive");
  if (x[1].known()) op_check(x[1].value % group == 0, node, "input channels of " + shape_str(x) + " are not divisible by group");
  if (x[1].known() && w[0].known())
    op_check(x[1].value == w[0].value, node, "weight " + shape_str(w) + " does not match the channels of input " + shape_str(x));
  std::vector<int64_t> ks = node.attr_ints("kernel_shape");
  for (size_t i = 0; i < ks.size() && i + 2 < w.size(); ++i)
    op_check(!w[i + 2].known() || ks[i] == w[i + 2].value, node,
             "kernel_shape " + ints_str(ks) + " does not match weight " + shape_str(w));
}

SymbolicShape conv_transpose_shape(const Node& node, const SymbolicShape& x, const SymbolicShape& w) {
  int64_t group = node.attr_int("group", 1);
  check_transpose_weight(node, x, w, group);
  const int64_t spatial = int64_t(x.size()) - 2;
  SymbolicShape out{x[0], w[1].known() ? Dim{w[1].value * group, ""} : Dim{}};
  for (int64_t i = 0; i < spatial; ++i) {
    const Dim &in = x[2 + i], &k = w[2 + i];
    out.push_back(in.known() && k.known() ? Dim{conv_transpose_axis(node, i, spatial, in.value, k.value).out, ""} : Dim{});
  }
  return out;
}

void register_conv_transpose(OpRegistry& r) {
  r.add(OpDef{"", "ConvTranspose",
              [](const InferContext& ctx) {
                const ValueInfo &x = ctx.input(0), &w = ctx.input(1);
                DType t = check_float_inputs(ctx.node, input_types(ctx));
                if (!x.has_shape) return one(unknown_rank(t));
                if (!w.has_shape) return one(make_info(t, keep_leading(x.shape, 1)));
                return one(make_info(t, conv_transpose_shape(ctx.node, x.shape, w.shape)));
              },
              [](const Node& node, const std::vector<Tensor>& in) {
                const Tensor &x = input_required(node, in, 0), &w = input_required(node, in, 1);
                DType t = check_float_inputs(node, input_types(in));
                ConvParams p = conv_transpose_params(node, x.shape(), w.shape());
                const int64_t C = p.out_channels, M = p.in_channels, cg = C / p.group, mg = M / p.group;
                const int64_t x_size = num_elements(p.out_spatial), y_size = num_elements(p.in_spatial),
                              k_size = num_elements(p.kernel);
                std::vector<double> bias = bias_values(node, input_if_given(in, 2), M);
                std::vector<double> xs = x.to_doubles(), ws = w.to_doubles(), y(p.batch * M * y_size);
                for (int64_t n = 0; n < p.batch; ++n)
                  for (int64_t m = 0; m < M; ++m) std::fill_n(&y[(n * M + m) * y_size], y_size, bias[m]);
                // Scatter: every input pixel adds its kernel-weighted value onto the outputs it covers.
                std::vector<Tap> taps = window_taps(p);
                for (int64_t n = 0; n < p.batch; ++n)
                  for (int64_t c = 0; c < C; ++c) {
                    const int64_t g = c / cg;
                    for (int64_t m = 0; m < mg; ++m) {
                      const double* xc = &xs[(n * C + c) * x_size];
                      const double* wc = &ws[(c * mg + m) * k_size];
                      double* yc = &y[(n * M + g * mg + m) * y_size];
                      for (const Tap& tap : taps)
                        if (tap.in >= 0) yc[tap.in] += xc[tap.out] * wc[tap.k];
                    }
                  }
                Shape y_shape{p.batch, M};
                y_shape.insert(y_shape.end(), p.in_spatial.begin(), p.in_spatial.end());
                // A fused activation (importer/epilogue_fusion.h) runs on its own op's kernel.
                return std::vector<Tensor>{apply_epilogue(node, Tensor::from_doubles(t, y_shape, y), in)};
              }});
}

// ---- Pools -----------------------------------------------------------------------------------------

// A pool's window geometry over the spatial dims of x [N, C, spatial...]: Conv's rules (auto_pad,
// pads, strides, dilations) for a single-channel kernel, then ceil_mode's extra windows.
ConvParams pool_params(const Node& node, const Shape& x) {
  op_check(x.size() >= 3, node, "input shape " + shape_str(x) + " must be [N, C, spatial...]");
  op_check(node.has_attr("kernel_shape"), node, "attribute 'kernel_shape' is required");
  op_check(!node.has_attr("group"), node, "pools take no 'group' attribute");
  std::vector<int64_t> kernel = node.attr_ints("kernel_shape");
  Shape x1{x[0], 1}, w{1, 1};
  x1.insert(x1.end(), x.begin() + 2, x.end());
  w.insert(w.end(), kernel.begin(), kernel.end());
  op_check(w.size() == x.size(), node, "kernel_shape " + ints_str(kernel) + " does not match input " + shape_str(x));
  ConvParams p = conv_params(node, x1, w);
  p.in_channels = p.out_channels = x[1];
  bool explicit_pads = node.attr_string("auto_pad", "NOTSET") == "NOTSET";
  if (node.attr_flag("ceil_mode", false) && explicit_pads) {
    for (int64_t d = 0; d < p.spatial_rank; ++d) {
      int64_t span = (p.kernel[d] - 1) * p.dilations[d] + 1;
      int64_t rest = p.in_spatial[d] + p.pads_begin[d] + p.pads_end[d] - span;
      if (rest % p.strides[d] == 0) continue;
      // A partial last window counts unless it would start inside the end padding.
      int64_t out = rest / p.strides[d] + 2;
      if ((out - 1) * p.strides[d] >= p.in_spatial[d] + p.pads_begin[d]) --out;
      p.out_spatial[d] = out;
    }
  }
  return p;
}

// Global pools: one window over all spatial dims.
ConvParams global_pool_params(const Node& node, const Shape& x) {
  op_check(x.size() >= 3, node, "input shape " + shape_str(x) + " must be [N, C, spatial...]");
  ConvParams p;
  p.spatial_rank = int64_t(x.size()) - 2;
  p.batch = x[0];
  p.in_channels = p.out_channels = x[1];
  p.in_spatial.assign(x.begin() + 2, x.end());
  p.kernel = p.in_spatial;
  p.out_spatial.assign(p.spatial_rank, 1);
  p.strides.assign(p.spatial_rank, 1);
  p.dilations.assign(p.spatial_rank, 1);
  p.pads_begin.assign(p.spatial_rank, 0);
  p.pads_end.assign(p.spatial_rank, 0);
  return p;
}

enum class PoolKind { Max, Average };

Tensor pool(const Node& node, const Tensor& x, const ConvParams& p, PoolKind kind) {
  const bool count_pad = node.attr_flag("count_include_pad", false);
  const int64_t planes = p.batch * p.in_channels, in_size = num_elements(p.in_spatial),
                out_size = num_elements(p.out_spatial);
  const std::vector<Tap> taps = window_taps(p);
  // The averaging divisor of each window: its taps inside the input, plus padding taps if counted.
  std::vector<double> divisor(out_size, 0.0);
  for (const Tap& t : taps)
    if (t.in >= 0 || count_pad) divisor[t.out] += 1;
  std::vector<double> xs = x.to_doubles();
  Shape y_shape{p.batch, p.in_channels};
  y_shape.insert(y_shape.end(), p.out_spatial.begin(), p.out_spatial.end());
  Tensor y(x.dtype(), y_shape);
  std::vector<double> acc(out_size);
  for (int64_t plane = 0; plane < planes; ++plane) {
    const double* xp = &xs[plane * in_size];
    std::fill(acc.begin(), acc.end(), kind == PoolKind::Max ? -std::numeric_limits<double>::infinity() : 0.0);
    for (const Tap& t : taps) {
      if (t.in < 0) continue;  // padding never wins a max and adds nothing to a sum
      acc[t.out] = kind == PoolKind::Max ? std::max(acc[t.out], xp[t.in]) : acc[t.out] + xp[t.in];
    }
    for (int64_t o = 0; o < out_size; ++o)
      y.set(plane * out_size + o, kind == PoolKind::Max ? acc[o] : acc[o] / divisor[o]);
  }
  return y;
}

// Static shape of a pool's output: exact when the spatial dims are known, else unknown there.
SymbolicShape pool_shape(const Node& node, const SymbolicShape& x, bool global) {
  op_check(x.size() >= 3, node, "input shape " + shape_str(x) + " must be [N, C, spatial...]");
  SymbolicShape out = keep_leading(x, 2);
  if (global) {
    std::fill(out.begin() + 2, out.end(), Dim{1, ""});
  } else if (fully_known(SymbolicShape(x.begin() + 2, x.end()))) {
    Shape x1{1, 1};
    for (size_t i = 2; i < x.size(); ++i) x1.push_back(x[i].value);
    ConvParams p = pool_params(node, x1);
    for (size_t i = 2; i < x.size(); ++i) out[i] = Dim{p.out_spatial[i - 2], ""};
  }
  return out;
}

void register_pool(OpRegistry& r, const std::string& op, PoolKind kind, bool global) {
  r.add(OpDef{"", op,
              [global](const InferContext& ctx) {
                const ValueInfo& x = ctx.input(0);
                DType t = check_float_inputs(ctx.node, {x.dtype});
                if (ctx.node.outputs.size() > 1 && !ctx.node.outputs[1].empty())
                  op_fail(ctx.node, "the Indices output is not supported", ErrorKind::Unsupported);
                if (!x.has_shape) return one(unknown_rank(t));
                return one(make_info(t, pool_shape(ctx.node, x.shape, global)));
              },
              [kind, global](const Node& node, const std::vector<Tensor>& in) {
                const Tensor& x = input_required(node, in, 0);
                check_float_inputs(node, {x.dtype()});
                if (node.outputs.size() > 1 && !node.outputs[1].empty())
                  op_fail(node, "the Indices output is not supported", ErrorKind::Unsupported);
                ConvParams p = global ? global_pool_params(node, x.shape()) : pool_params(node, x.shape());
                return std::vector<Tensor>{pool(node, x, p, kind)};
              }});
}

// ---- Resize ----------------------------------------------------------------------------------------

struct ResizeAttrs {
  std::string mode, transform, nearest;
};

// Reads and validates Resize's attributes; anything outside the supported subset fails naming it.
ResizeAttrs resize_attrs(const Node& node) {
  ResizeAttrs a;
  a.mode = node.attr_string("mode", "nearest");
  op_check(a.mode == "nearest" || a.mode == "linear", node,
           "mode '" + a.mode + "' is not supported (nearest, linear)", ErrorKind::Unsupported);
  if (node.opset < 11) {  // Resize-10 has the asymmetric transform and floors for nearest
    a.transform = "asymmetric";
    a.nearest = "floor";
    return a;
  }
  a.transform = node.attr_string("coordinate_transformation_mode", "half_pixel");
  op_check(a.transform == "half_pixel" || a.transform == "asymmetric" || a.transform == "align_corners" ||
               a.transform == "pytorch_half_pixel" || a.transform == "tf_half_pixel_for_nn",
           node, "coordinate_transformation_mode '" + a.transform + "' is not supported", ErrorKind::Unsupported);
  a.nearest = node.attr_string("nearest_mode", "round_prefer_floor");
  op_check(a.nearest == "round_prefer_floor" || a.nearest == "round_prefer_ceil" || a.nearest == "floor" ||
               a.nearest == "ceil",
           node, "nearest_mode '" + a.nearest + "' is not supported", ErrorKind::Unsupported);
  op_check(!node.attr_flag("antialias", false), node, "antialias is not supported", ErrorKind::Unsupported);
  std::string policy = node.attr_string("keep_aspect_ratio_policy", "stretch");
  op_check(policy == "stretch", node, "keep_aspect_ratio_policy '" + policy + "' is not supported",
           ErrorKind::Unsupported);
  if (node.has_attr("axes")) {
    std::vector<int64_t> axes = node.attr_ints("axes");
    op_check(axes == std::vector<int64_t>{2, 3} || axes == std::vector<int64_t>{-2, -1}, node,
             "axes " + ints_str(axes) + " are not supported (only the last two axes of a 4-D input)",
             ErrorKind::Unsupported);
  }
  return a;
}

// Inputs holding scales and sizes: Resize-10 has (X, scales), later versions (X, roi, scales, sizes).
size_t scales_input(const Node& node) { return node.opset < 11 ? 1 : 2; }
size_t sizes_input(const Node& node) { return node.opset < 11 ? 99 : 3; }

// The resized H and W and the scale each uses for coordinates, from `scales` (used when non-empty)
// or `sizes`; in_hw entries may be -1 (unknown), and so may the results. Either input may be null.
struct ResizeTarget {
  int64_t out[2] = {-1, -1};
  float scale[2] = {0, 0};  // float, like the scales input and ONNX Runtime's arithmetic
};

ResizeTarget resize_target(const Node& node, const int64_t in_nchw[4], const Tensor* scales, const Tensor* sizes) {
  const bool two_axes = node.has_attr("axes");  // validated to be the last two
  const size_t expected = two_axes ? 2 : 4;
  ResizeTarget t;
  if (scales && scales->size() > 0) {
    std::vector<double> s = scales->to_doubles();
    op_check(s.size() == expected, node, "scales must have " + std::to_string(expected) + " entries, has " +
                                             std::to_string(s.size()));
    if (!two_axes)
      op_check(s[0] == 1 && s[1] == 1, node, "scales on the N and C axes are not supported", ErrorKind::Unsupported);
    for (int i = 0; i < 2; ++i) {
      t.scale[i] = float(s[s.size() - 2 + i]);
      op_check(t.scale[i] > 0, node, "scales must be positive");
      int64_t in = in_nchw[2 + i];
      t.out[i] = in < 0 ? -1 : int64_t(std::floor(float(in) * t.scale[i]));
    }
  } else if (sizes) {
    std::vector<int64_t> s = sizes->to_ints();
    op_check(s.size() == expected, node, "sizes must have " + std::to_string(expected) + " entries, has " +
                                             std::to_string(s.size()));
    if (!two_axes)
      for (int i = 0; i < 2; ++i)
        op_check(in_nchw[i] < 0 || s[i] == in_nchw[i], node, "resizing the N and C axes is not supported",
                 ErrorKind::Unsupported);
    for (int i = 0; i < 2; ++i) {
      t.out[i] = s[s.size() - 2 + i];
      op_check(t.out[i] >= 0, node, "sizes must not be negative");
      int64_t in = in_nchw[2 + i];
      t.scale[i] = in > 0 ? float(t.out[i]) / float(in) : 0.0f;
    }
  } else {
    op_fail(node, "needs either scales or sizes");
  }
  return t;
}

// Coordinates are computed in float, as ONNX Runtime does: it decides which pixel nearest picks
// when a coordinate lands within float rounding of a .5 boundary.
std::vector<ResizeSample> resize_axis(const ResizeAttrs& a, int64_t in, int64_t out, float scale) {
  std::vector<ResizeSample> samples;
  for (int64_t o = 0; o < out; ++o) {
    const float of = float(o);
    float x;  // the output coordinate in input space
    if (a.transform == "half_pixel") x = (of + 0.5f) / scale - 0.5f;
    else if (a.transform == "pytorch_half_pixel") x = out > 1 ? (of + 0.5f) / scale - 0.5f : 0.0f;
    else if (a.transform == "align_corners") x = out > 1 ? of * float(in - 1) / float(out - 1) : 0.0f;
    else if (a.transform == "tf_half_pixel_for_nn") x = (of + 0.5f) / scale;
    else x = of / scale;  // asymmetric
    if (a.mode == "nearest") {
      float f = std::floor(x);
      int64_t i;
      if (a.nearest == "floor") i = int64_t(f);
      else if (a.nearest == "ceil") i = int64_t(std::ceil(x));
      else if (x - f == 0.5f) i = int64_t(a.nearest == "round_prefer_ceil" ? f + 1 : f);
      else i = int64_t(std::round(x));
      i = std::clamp<int64_t>(i, 0, in - 1);
      samples.push_back(ResizeSample{i, i, 0.0});
    } else {
      x = std::clamp(x, 0.0f, float(in - 1));
      int64_t i0 = int64_t(std::floor(x));
      samples.push_back(ResizeSample{i0, std::min(i0 + 1, in - 1), double(x) - double(i0)});
    }
  }
  return samples;
}

void check_resize_rank(const Node& node, size_t rank) {
  op_check(rank == 4, node, "only 4-D (NCHW) inputs are supported, got rank " + std::to_string(rank),
           ErrorKind::Unsupported);
}

void register_resize(OpRegistry& r) {
  r.add(OpDef{"", "Resize",
              [](const InferContext& ctx) {
                const Node& node = ctx.node;
                const ValueInfo& x = ctx.input(0);
                DType t = check_float_inputs(node, {x.dtype});
                resize_attrs(node);
                if (x.has_shape) check_resize_rank(node, x.shape.size());
                SymbolicShape out = x.has_shape ? x.shape : SymbolicShape(4, Dim{});
                out[2] = out[3] = Dim{};
                const Tensor* scales = ctx.constant(scales_input(node));
                const Tensor* sizes = ctx.constant(sizes_input(node));
                // Only a known input decides; an empty known `scales` defers to `sizes`.
                bool scales_given = ctx.has(scales_input(node)) && !(scales && scales->size() == 0);
                bool decidable = scales_given ? scales != nullptr : sizes != nullptr;
                if (decidable) {
                  int64_t in[4];
                  for (int i = 0; i < 4; ++i) in[i] = x.has_shape ? x.shape[i].value : -1;
                  ResizeTarget target = resize_target(node, in, scales_given ? scales : nullptr, sizes);
                  for (int i = 0; i < 2; ++i)
                    if (target.out[i] >= 0) out[2 + i] = Dim{target.out[i], ""};
                }
                return one(make_info(t, out));
              },
              [](const Node& node, const std::vector<Tensor>& in) {
                const Tensor& x = input_required(node, in, 0);
                ResizePlan plan = resize_plan(node, in);
                const Shape& s = x.shape();
                const int64_t H = s[2], W = s[3], OH = plan.out_shape[2], OW = plan.out_shape[3];
                const std::vector<ResizeSample>& ys = plan.h, &xs = plan.w;
                Tensor y(x.dtype(), plan.out_shape);
                std::vector<double> v = x.to_doubles();
                // Separable: interpolate along W on the two sampled rows, then along H.
                for (int64_t plane = 0; plane < s[0] * s[1]; ++plane) {
                  const double* xp = &v[plane * H * W];
                  for (int64_t oy = 0; oy < OH; ++oy)
                    for (int64_t ox = 0; ox < OW; ++ox) {
                      const ResizeSample &sy = ys[oy], &sx = xs[ox];
                      auto row = [&](int64_t iy) {
                        return (1 - sx.w1) * xp[iy * W + sx.i0] + sx.w1 * xp[iy * W + sx.i1];
                      };
                      y.set((plane * OH + oy) * OW + ox, (1 - sy.w1) * row(sy.i0) + sy.w1 * row(sy.i1));
                    }
                }
                return std::vector<Tensor>{y};
              }});
}

}  // namespace

// ConvTranspose is the adjoint of a Conv: this returns that Conv's geometry, which maps the
// ConvTranspose output (in_spatial, `in_channels`) back onto its input (out_spatial, `out_channels`).
ConvParams conv_transpose_params(const Node& node, const Shape& x, const Shape& w) {
  ConvParams p;
  p.group = node.attr_int("group", 1);
  check_transpose_weight(node, to_symbolic(x), to_symbolic(w), p.group);
  p.spatial_rank = int64_t(x.size()) - 2;
  p.batch = x[0];
  p.out_channels = x[1];
  p.in_channels = w[1] * p.group;
  p.out_spatial.assign(x.begin() + 2, x.end());
  p.kernel.assign(w.begin() + 2, w.end());
  p.strides = node.attr_ints("strides", std::vector<int64_t>(p.spatial_rank, 1));
  p.dilations = node.attr_ints("dilations", std::vector<int64_t>(p.spatial_rank, 1));
  for (int64_t i = 0; i < p.spatial_rank; ++i) {
    TransposeAxis t = conv_transpose_axis(node, i, p.spatial_rank, x[2 + i], w[2 + i]);
    p.in_spatial.push_back(t.out);
    p.pads_begin.push_back(t.pad_begin);
    p.pads_end.push_back(t.pad_end);
  }
  return p;
}

ResizePlan resize_plan(const Node& node, const std::vector<Tensor>& in) {
  const Tensor& x = input_required(node, in, 0);
  check_float_inputs(node, {x.dtype()});
  ResizeAttrs a = resize_attrs(node);
  check_resize_rank(node, x.rank());
  const Shape& s = x.shape();
  int64_t dims[4] = {s[0], s[1], s[2], s[3]};
  ResizeTarget target =
      resize_target(node, dims, input_if_given(in, scales_input(node)), input_if_given(in, sizes_input(node)));
  const int64_t H = s[2], W = s[3], OH = target.out[0], OW = target.out[1];
  op_check((H > 0 && W > 0) || OH * OW == 0, node, "cannot resize the empty input " + shape_str(s));
  ResizePlan plan;
  plan.out_shape = {s[0], s[1], OH, OW};
  plan.nearest = a.mode == "nearest";
  plan.h = resize_axis(a, H, OH, target.scale[0]);
  plan.w = resize_axis(a, W, OW, target.scale[1]);
  return plan;
}

void register_nn_ops(OpRegistry& r) {
  register_matmul_gemm(r);
  register_conv(r);
  register_conv_transpose(r);
  register_pool(r, "MaxPool", PoolKind::Max, false);
  register_pool(r, "AveragePool", PoolKind::Average, false);
  register_pool(r, "GlobalAveragePool", PoolKind::Average, true);
  register_pool(r, "GlobalMaxPool", PoolKind::Max, true);
  register_resize(r);
}

}  // namespace tetra
