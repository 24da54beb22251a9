#include "runtime/ops/conv_core.h"

#include <algorithm>

namespace tetra {

namespace {

std::string list_str(const std::vector<int64_t>& v) { return shape_str(Shape(v)); }

// The window attributes of a Conv-like node, read once and validated for `spatial` axes.
struct WindowAttrs {
  std::string auto_pad;
  int64_t group = 1;
  std::vector<int64_t> kernel_shape;  // empty when the attribute is absent
  std::vector<int64_t> strides, dilations, pads;
};

WindowAttrs read_window_attrs(const Node& node, int64_t spatial) {
  op_check(spatial >= 1, node, "needs at least one spatial axis (input rank >= 3)");
  op_check(spatial <= 3, node, "only 1-D, 2-D and 3-D convolutions are supported", ErrorKind::Unsupported);
  WindowAttrs a;
  a.auto_pad = node.attr_string("auto_pad", "NOTSET");
  op_check(a.auto_pad == "NOTSET" || a.auto_pad == "VALID" || a.auto_pad == "SAME_UPPER" || a.auto_pad == "SAME_LOWER",
           node, "auto_pad '" + a.auto_pad + "' is not NOTSET, VALID, SAME_UPPER or SAME_LOWER");
  a.group = node.attr_int("group", 1);
  op_check(a.group >= 1, node, "group must be positive, got " + std::to_string(a.group));
  a.kernel_shape = node.attr_ints("kernel_shape");
  op_check(a.kernel_shape.empty() || int64_t(a.kernel_shape.size()) == spatial, node,
           "kernel_shape " + list_str(a.kernel_shape) + " does not have " + std::to_string(spatial) + " entries");
  for (int64_t k : a.kernel_shape) op_check(k >= 1, node, "kernel_shape " + list_str(a.kernel_shape) + " is not positive");
  a.strides = node.attr_ints("strides", std::vector<int64_t>(spatial, 1));
  a.dilations = node.attr_ints("dilations", std::vector<int64_t>(spatial, 1));
  a.pads = node.attr_ints("pads", std::vector<int64_t>(2 * spatial, 0));
  op_check(int64_t(a.strides.size()) == spatial && int64_t(a.dilations.size()) == spatial, node,
           "strides " + list_str(a.strides) + " and dilations " + list_str(a.dilations) + " must have " +
               std::to_string(spatial) + " entries");
  op_check(int64_t(a.pads.size()) == 2 * spatial, node,
           "pads " + list_str(a.pads) + " must have " + std::to_string(2 * spatial) + " entries");
  for (int64_t i = 0; i < spatial; ++i)
    op_check(a.strides[i] >= 1 && a.dilations[i] >= 1, node, "strides and dilations must be positive");
  for (int64_t p : a.pads) op_check(p >= 0, node, "pads " + list_str(a.pads) + " must not be negative");
  return a;
}

struct AxisWindow {
  int64_t out, pad_begin, pad_end;
};

// One spatial axis: the padding actually applied and the output size.
AxisWindow resolve_axis(const Node& node, const WindowAttrs& a, int64_t axis, int64_t in, int64_t k) {
  int64_t s = a.strides[axis], d = a.dilations[axis];
  int64_t span = (k - 1) * d + 1;  // the dilated kernel
  AxisWindow w{0, a.pads[axis], a.pads[axis + a.strides.size()]};
  if (a.auto_pad == "VALID") {
    w.pad_begin = w.pad_end = 0;
  } else if (a.auto_pad != "NOTSET") {
    int64_t out = (in + s - 1) / s;
    int64_t total = std::max<int64_t>(0, (out - 1) * s + span - in);
    // SAME_UPPER puts the odd pixel at the end, SAME_LOWER at the beginning.
    w.pad_begin = a.auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
    w.pad_end = total - w.pad_begin;
  }
  int64_t padded = in + w.pad_begin + w.pad_end;
  op_check(padded >= span, node,
           "spatial axis " + std::to_string(axis) + " of size " + std::to_string(in) + " (padded " +
               std::to_string(padded) + ") is smaller than the dilated kernel " + std::to_string(span));
  w.out = (padded - span) / s + 1;
  return w;
}

}  // namespace

Conv2d Conv2d::of(const ConvParams& p) {
  bool two_d = p.spatial_rank == 2;
  auto h = [&](const std::vector<int64_t>& v, int64_t height) { return two_d ? v[0] : height; };
  return {h(p.in_spatial, 1),  p.in_spatial.back(),  h(p.out_spatial, 1), p.out_spatial.back(),
          h(p.kernel, 1),      p.kernel.back(),      h(p.strides, 1),     p.strides.back(),
          h(p.dilations, 1),   p.dilations.back(),   h(p.pads_begin, 0),  p.pads_begin.back()};
}

ConvParams conv_params(const Node& node, const Shape& x, const Shape& w) {
  op_check(x.size() >= 3, node, "input shape " + shape_str(x) + " must be [N, C, spatial...]");
  op_check(w.size() == x.size(), node, "weight shape " + shape_str(w) + " does not have the rank of input " + shape_str(x));
  ConvParams p;
  p.spatial_rank = int64_t(x.size()) - 2;
  WindowAttrs a = read_window_attrs(node, p.spatial_rank);
  p.batch = x[0];
  p.in_channels = x[1];
  p.out_channels = w[0];
  p.group = a.group;
  op_check(p.in_channels % p.group == 0 && w[1] * p.group == p.in_channels, node,
           "weight " + shape_str(w) + " expects " + std::to_string(w[1] * p.group) + " input channels with group " +
               std::to_string(p.group) + ", input " + shape_str(x) + " has " + std::to_string(p.in_channels));
  op_check(p.out_channels % p.group == 0, node,
           "output channels " + std::to_string(p.out_channels) + " are not divisible by group " + std::to_string(p.group));
  p.in_spatial.assign(x.begin() + 2, x.end());
  p.kernel.assign(w.begin() + 2, w.end());
  op_check(a.kernel_shape.empty() || a.kernel_shape == p.kernel, node,
           "kernel_shape " + list_str(a.kernel_shape) + " does not match weight " + shape_str(w));
  p.strides = a.strides;
  p.dilations = a.dilations;
  for (int64_t i = 0; i < p.spatial_rank; ++i) {
    AxisWindow aw = resolve_axis(node, a, i, p.in_spatial[i], p.kernel[i]);
    p.out_spatial.push_back(aw.out);
    p.pads_begin.push_back(aw.pad_begin);
    p.pads_end.push_back(aw.pad_end);
  }
  return p;
}

SymbolicShape conv_output_shape(const Node& node, const SymbolicShape& x, const SymbolicShape& w) {
  op_check(x.size() >= 3, node, "input shape " + shape_str(x) + " must be [N, C, spatial...]");
  op_check(w.size() == x.size(), node, "weight shape " + shape_str(w) + " does not have the rank of input " + shape_str(x));
  int64_t spatial = int64_t(x.size()) - 2;
  WindowAttrs a = read_window_attrs(node, spatial);
  if (x[1].known() && w[1].known())
    op_check(w[1].value * a.group == x[1].value, node,
             "weight " + shape_str(w) + " expects " + std::to_string(w[1].value * a.group) +
                 " input channels with group " + std::to_string(a.group) + ", input " + shape_str(x) + " has " +
                 std::to_string(x[1].value));
  if (w[0].known())
    op_check(w[0].value % a.group == 0, node,
             "output channels " + std::to_string(w[0].value) + " are not divisible by group " + std::to_string(a.group));
  SymbolicShape out{x[0], w[0]};
  for (int64_t i = 0; i < spatial; ++i) {
    Dim in = x[2 + i];
    int64_t k = a.kernel_shape.empty() ? w[2 + i].value : a.kernel_shape[i];
    if (w[2 + i].known())
      op_check(k == w[2 + i].value, node,
               "kernel_shape " + list_str(a.kernel_shape) + " does not match weight " + shape_str(w));
    if (in.known() && k >= 1) out.push_back(Dim{resolve_axis(node, a, i, in.value, k).out, ""});
    else if (in.known() && (a.auto_pad == "SAME_UPPER" || a.auto_pad == "SAME_LOWER"))
      out.push_back(Dim{(in.value + a.strides[i] - 1) / a.strides[i], ""});  // independent of the kernel
    else out.push_back(Dim{});
  }
  return out;
}

std::vector<double> conv_reference(const ConvParams& p, const std::function<double(int64_t)>& x,
                                   const std::function<double(int64_t)>& w, const std::vector<double>* bias) {
  // Every spatial rank runs as 3-D: missing leading axes have size 1, stride 1 and no padding.
  auto as3 = [&](const std::vector<int64_t>& v, int64_t fill) {
    std::vector<int64_t> r(3 - v.size(), fill);
    r.insert(r.end(), v.begin(), v.end());
    return r;
  };
  auto in = as3(p.in_spatial, 1), k = as3(p.kernel, 1), out = as3(p.out_spatial, 1);
  auto st = as3(p.strides, 1), dl = as3(p.dilations, 1), pb = as3(p.pads_begin, 0);
  const int64_t cg = p.in_channels / p.group, mg = p.out_channels / p.group;
  const int64_t in_size = in[0] * in[1] * in[2], k_size = k[0] * k[1] * k[2], out_size = out[0] * out[1] * out[2];

  // Read each operand once: the accessors may dequantize, and the loop nest reads them many times.
  std::vector<double> xs(p.batch * p.in_channels * in_size), ws(p.out_channels * cg * k_size);
  for (size_t i = 0; i < xs.size(); ++i) xs[i] = x(int64_t(i));
  for (size_t i = 0; i < ws.size(); ++i) ws[i] = w(int64_t(i));

  std::vector<double> y(p.batch * p.out_channels * out_size);
  for (int64_t n = 0; n < p.batch; ++n)
    for (int64_t m = 0; m < p.out_channels; ++m) {
      const int64_t c0 = (m / mg) * cg;  // first input channel of m's group
      for (int64_t o0 = 0; o0 < out[0]; ++o0)
        for (int64_t o1 = 0; o1 < out[1]; ++o1)
          for (int64_t o2 = 0; o2 < out[2]; ++o2) {
            double acc = bias ? (*bias)[m] : 0.0;
            for (int64_t c = 0; c < cg; ++c) {
              const double* xc = &xs[(n * p.in_channels + c0 + c) * in_size];
              const double* wc = &ws[(m * cg + c) * k_size];
              for (int64_t k0 = 0; k0 < k[0]; ++k0) {
                int64_t i0 = o0 * st[0] - pb[0] + k0 * dl[0];
                if (i0 < 0 || i0 >= in[0]) continue;
                for (int64_t k1 = 0; k1 < k[1]; ++k1) {
                  int64_t i1 = o1 * st[1] - pb[1] + k1 * dl[1];
                  if (i1 < 0 || i1 >= in[1]) continue;
                  for (int64_t k2 = 0; k2 < k[2]; ++k2) {
                    int64_t i2 = o2 * st[2] - pb[2] + k2 * dl[2];
                    if (i2 < 0 || i2 >= in[2]) continue;
                    acc += xc[(i0 * in[1] + i1) * in[2] + i2] * wc[(k0 * k[1] + k1) * k[2] + k2];
                  }
                }
              }
            }
            y[((n * p.out_channels + m) * out[0] + o0) * out[1] * out[2] + o1 * out[2] + o2] = acc;
          }
    }
  return y;
}

namespace {

// ONNX MatMul's view of both operands: a 1-D A is [1, K], a 1-D B is [K, 1]; the batch dims broadcast.
template <class S>
void check_matmul_ranks(const Node& node, const S& a, const S& b) {
  op_check(!a.empty() && !b.empty(), node,
           "MatMul operands must have rank >= 1, got " + shape_str(a) + " and " + shape_str(b));
}

}  // namespace

MatMulResult matmul_reference(const Node& node, const Shape& a_shape, const std::function<double(int64_t)>& a,
                              const Shape& b_shape, const std::function<double(int64_t)>& b) {
  check_matmul_ranks(node, a_shape, b_shape);
  Shape a2 = a_shape.size() == 1 ? Shape{1, a_shape[0]} : a_shape;
  Shape b2 = b_shape.size() == 1 ? Shape{b_shape[0], 1} : b_shape;
  const int64_t M = a2[a2.size() - 2], K = a2.back(), N = b2.back();
  op_check(b2[b2.size() - 2] == K, node,
           "inner dimensions of " + shape_str(a_shape) + " and " + shape_str(b_shape) + " do not match");
  Shape a_batch(a2.begin(), a2.end() - 2), b_batch(b2.begin(), b2.end() - 2);
  Shape batch = broadcast_shapes(node, a_batch, b_batch);
  std::vector<int64_t> a_map = broadcast_index_map(a_batch, batch), b_map = broadcast_index_map(b_batch, batch);

  std::vector<double> as(num_elements(a_shape)), bs(num_elements(b_shape));
  for (size_t i = 0; i < as.size(); ++i) as[i] = a(int64_t(i));
  for (size_t i = 0; i < bs.size(); ++i) bs[i] = b(int64_t(i));

  MatMulResult r;
  r.values.assign(a_map.size() * M * N, 0.0);
  for (size_t bi = 0; bi < a_map.size(); ++bi) {
    const double* A = &as[a_map[bi] * M * K];
    const double* B = &bs[b_map[bi] * K * N];
    double* C = &r.values[bi * M * N];
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double acc = 0;
        for (int64_t k = 0; k < K; ++k) acc += A[m * K + k] * B[k * N + n];
        C[m * N + n] = acc;
      }
  }
  // The dims that 1-D promotion added are removed again.
  r.shape = batch;
  if (a_shape.size() > 1) r.shape.push_back(M);
  if (b_shape.size() > 1) r.shape.push_back(N);
  return r;
}

SymbolicShape matmul_output_shape(const Node& node, const SymbolicShape& a, const SymbolicShape& b) {
  check_matmul_ranks(node, a, b);
  SymbolicShape a2 = a.size() == 1 ? SymbolicShape{Dim{1, ""}, a[0]} : a;
  SymbolicShape b2 = b.size() == 1 ? SymbolicShape{b[0], Dim{1, ""}} : b;
  const Dim &ka = a2.back(), &kb = b2[b2.size() - 2];
  if (ka.known() && kb.known())
    op_check(ka.value == kb.value, node, "inner dimensions of " + shape_str(a) + " and " + shape_str(b) + " do not match");
  SymbolicShape out = broadcast_shapes(node, SymbolicShape(a2.begin(), a2.end() - 2), SymbolicShape(b2.begin(), b2.end() - 2));
  if (a.size() > 1) out.push_back(a2[a2.size() - 2]);
  if (b.size() > 1) out.push_back(b2.back());
  return out;
}

}  // namespace tetra
