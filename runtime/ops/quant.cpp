// Quantization operators: QuantizeLinear / DequantizeLinear, the integer and QLinear ops,
// com.microsoft.MatMulNBits and tetra's fused int4 nodes (tetra.QMatMul, tetra.QConv).
// Reference semantics: integer accumulations are exact in double, float results round once, and
// where ONNX prescribes a precision (the Q/DQ arithmetic, requantization multipliers) it is emulated.
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "runtime/epilogue.h"
#include "runtime/ops/conv_core.h"
#include "runtime/ops/op_util.h"

namespace tetra {

namespace {

// ---------------------------------------------------------------------------------------------
// Small helpers

const Tensor& optional_input(const std::vector<Tensor>& in, size_t i) {
  static const Tensor none;
  return i < in.size() ? in[i] : none;
}

const Tensor& required_input(const Node& node, const std::vector<Tensor>& in, size_t i, const std::string& name) {
  const Tensor& t = optional_input(in, i);
  op_check(!t.empty(), node, "input " + std::to_string(i) + " (" + name + ") is required but missing");
  return t;
}

ValueInfo like(const ValueInfo& x, DType dtype) { return x.has_shape ? make_info(dtype, x.shape) : unknown_rank(dtype); }

// `v` rounded to the precision of float type `t` (double for anything else).
double round_to(DType t, double v) {
  if (t == DType::Float32) return static_cast<float>(v);
  if (t == DType::Float16) return half_to_float(double_to_half(v));
  return v;
}

double saturate(double v, DType t) { return std::fmin(std::fmax(v, dtype_min(t)), dtype_max(t)); }

bool is_8bit(DType t) { return t == DType::Int8 || t == DType::UInt8; }
bool is_scale_type(DType t) { return t == DType::Float32 || t == DType::Float16; }
// The integer types Q/DQ produce and consume (float8 / float4 are not tetra element types); int16 and
// uint16 work as far as Tensor stores them.
bool is_quant_type(DType t) { return is_8bit(t) || is_int4(t) || t == DType::Int16 || t == DType::UInt16; }

std::string onnx_type_str(int64_t code) {
  DType t = dtype_from_onnx(static_cast<int32_t>(code));
  return t == DType::Undefined ? "ONNX type " + std::to_string(code) : dtype_name(t);
}

// DequantizeLinear's arithmetic, (q - zp) * scale in float32, rounded again for a float16 result.
double dequantize_value(double q, double zp, double scale, DType out) {
  float v = (static_cast<float>(q) - static_cast<float>(zp)) * static_cast<float>(scale);
  return round_to(out, v);
}

// QuantizeLinear's arithmetic: x / scale in `precision`, rounded half to even, plus the zero point,
// saturated to `out`. Dividing in double and rounding to float32 / float16 gives the same quotient as
// dividing in that type (double has more than twice the bits, so the double rounding is harmless).
int64_t quantize_value(double x, double scale, double zp, DType precision, DType out) {
  double q = round_half_even(round_to(precision, round_to(precision, x) / round_to(precision, scale)));
  if (std::isnan(q)) q = 0;  // undefined in ONNX; keep the conversion below defined
  return static_cast<int64_t>(saturate(q + zp, out));
}

// QLinearMatMul / QLinearConv output: the exact integer accumulator times the multiplier
// a_scale * b_scale / y_scale (computed in the scales' type, as the ONNX reference does), then the
// zero point, rounded half to even and saturated.
int64_t requantize(double acc, double multiplier, double zp, DType out) {
  return static_cast<int64_t>(saturate(round_half_even(acc * multiplier + zp), out));
}

double requant_multiplier(DType scale_type, double in_scale_product, double y_scale) {
  return round_to(scale_type, round_to(scale_type, in_scale_product) / y_scale);
}

void require_one_element(const Node& node, const std::string& what, const Tensor& t) {
  op_check(t.empty() || t.size() == 1, node, what + " must be per-tensor (one element), got shape " + shape_str(t.shape()),
           ErrorKind::Unsupported);
}

void require_same_shape(const Node& node, const std::string& scale_name, const Tensor& scale, const std::string& zp_name,
                        const Tensor& zp) {
  op_check(zp.empty() || zp.shape() == scale.shape() || (zp.size() == 1 && scale.size() == 1), node,
           zp_name + " shape " + shape_str(zp.shape()) + " does not match " + scale_name + " shape " +
               shape_str(scale.shape()));
}

// x - zero_point as doubles; `zp_shape` is the zero point's shape arranged to broadcast against x.
std::vector<double> centered(const Node& node, const std::string& what, const Tensor& x, const Tensor& zp,
                             const Shape& zp_shape) {
  std::vector<double> v = x.to_doubles();
  if (zp.empty()) return v;
  op_check(zp.dtype() == x.dtype(), node,
           what + " is " + dtype_name(zp.dtype()) + " but its input is " + dtype_name(x.dtype()));
  std::vector<int64_t> map = broadcast_index_map(zp_shape, x.shape());
  for (size_t i = 0; i < v.size(); ++i) v[i] -= zp.get(map[i]);
  return v;
}

// ---------------------------------------------------------------------------------------------
// QuantizeLinear / DequantizeLinear: per-tensor, per-axis and blocked parameters

// Checks scale / zero point shapes against x for the three granularities and returns the
// quantization axis (normalised; 0 for per-tensor, where the axis does not matter).
int64_t check_quant_params(const Node& node, const Shape& x, const Shape& scale, const Shape* zp) {
  int64_t block = node.attr_int("block_size", 0);
  int64_t n_scale = num_elements(scale);
  if (zp)
    op_check(*zp == scale || (n_scale == 1 && num_elements(*zp) == 1), node,
             "zero point shape " + shape_str(*zp) + " does not match scale shape " + shape_str(scale));
  op_check(block >= 0, node, "block_size must not be negative, got " + std::to_string(block));
  if (block == 0 && n_scale == 1) return 0;  // per tensor: a scalar or any one-element tensor
  int64_t axis = normalize_axis(node, node.attr_int("axis", 1), static_cast<int64_t>(x.size()));
  if (block == 0) {
    op_check(scale.size() == 1 && scale[0] == x[axis], node,
             "per-axis scale must be 1-D of length " + std::to_string(x[axis]) + " (axis " + std::to_string(axis) +
                 " of " + shape_str(x) + "), got " + shape_str(scale));
    return axis;
  }
  Shape expected = x;
  expected[axis] = (x[axis] + block - 1) / block;  // the last block may be ragged
  op_check(scale == expected, node,
           "blocked scale for input " + shape_str(x) + " with block_size " + std::to_string(block) + " on axis " +
               std::to_string(axis) + " must have shape " + shape_str(expected) + ", got " + shape_str(scale));
  return axis;
}

// Validates at inference time what is already known: both shapes must be fully known.
void check_known_quant_params(const InferContext& ctx) {
  const ValueInfo& x = ctx.input(0);
  const ValueInfo& s = ctx.input(1);
  const ValueInfo* zp = ctx.has(2) ? &ctx.input(2) : nullptr;
  if (!x.has_shape || !s.has_shape || !fully_known(x.shape) || !fully_known(s.shape)) return;
  if (zp && (!zp->has_shape || !fully_known(zp->shape))) return;
  Shape zp_shape = zp ? to_shape(zp->shape) : Shape{};
  check_quant_params(ctx.node, to_shape(x.shape), to_shape(s.shape), zp ? &zp_shape : nullptr);
}

// QuantizedWeight's param_index() already maps an element to its scale for every granularity, so
// Q/DQ reuse it through a view whose `data` is x (only its shape is consulted).
QuantizedWeight quant_view(const Node& node, const Tensor& x, const Tensor& scale, const Tensor& zp) {
  QuantizedWeight v;
  v.data = x;
  v.scale = scale;
  v.zero_point = zp;
  v.axis = check_quant_params(node, x.shape(), scale.shape(), zp.empty() ? nullptr : &zp.shape());
  v.block_size = node.attr_int("block_size", 0);
  return v;
}

// Output type: the zero point's, else the output_dtype attribute (opset 21+), else uint8.
DType quantize_output_dtype(const Node& node, DType zp_dtype) {
  int64_t attr = node.attr_int("output_dtype", 0);
  DType from_attr = dtype_from_onnx(static_cast<int32_t>(attr));
  op_check(attr == 0 || zp_dtype == DType::Undefined || from_attr == zp_dtype, node,
           "output_dtype " + onnx_type_str(attr) + " does not match y_zero_point's type " + dtype_name(zp_dtype));
  DType out = zp_dtype != DType::Undefined ? zp_dtype : attr != 0 ? from_attr : DType::UInt8;
  op_check(is_quant_type(out), node,
           "quantizing to " + (attr != 0 && zp_dtype == DType::Undefined ? onnx_type_str(attr) : dtype_name(out)) +
               " is not supported (int8, uint8, int16, uint16, int4, uint4)",
           ErrorKind::Unsupported);
  return out;
}

// The division x / y_scale runs in y_scale's type unless the `precision` attribute (opset 25) says
// otherwise.
DType division_precision(const Node& node, DType scale_dtype) {
  int64_t attr = node.attr_int("precision", 0);
  DType p = attr != 0 ? dtype_from_onnx(static_cast<int32_t>(attr)) : scale_dtype;
  op_check(is_scale_type(p), node, "division precision " + (attr ? onnx_type_str(attr) : dtype_name(p)) +
                                       " is not supported (float32, float16)",
           ErrorKind::Unsupported);
  return p;
}

// Output type: the output_dtype attribute (opset 23+), else the scale's.
DType dequantize_output_dtype(const Node& node, DType scale_dtype) {
  int64_t attr = node.attr_int("output_dtype", 0);
  DType out = attr != 0 ? dtype_from_onnx(static_cast<int32_t>(attr)) : scale_dtype;
  op_check(is_scale_type(out), node,
           "output type " + (attr ? onnx_type_str(attr) : dtype_name(out)) + " is not supported (float32, float16)",
           ErrorKind::Unsupported);
  return out;
}

void check_scale_type(const Node& node, const Tensor& scale) {
  op_check(is_scale_type(scale.dtype()), node,
           "scale type " + dtype_name(scale.dtype()) + " is not supported (float32, float16)", ErrorKind::Unsupported);
}

std::vector<ValueInfo> infer_quantize(const InferContext& ctx) {
  DType zp = ctx.has(2) ? ctx.input(2).dtype : DType::Undefined;
  DType out = quantize_output_dtype(ctx.node, zp);
  division_precision(ctx.node, ctx.input(1).dtype);
  check_known_quant_params(ctx);
  return {like(ctx.input(0), out)};
}

std::vector<Tensor> quantize_linear(const Node& node, const std::vector<Tensor>& in) {
  const Tensor& x = required_input(node, in, 0, "x");
  const Tensor& scale = required_input(node, in, 1, "y_scale");
  const Tensor& zp = optional_input(in, 2);
  op_check(is_scale_type(x.dtype()) || x.dtype() == DType::Int32, node,
           "input type " + dtype_name(x.dtype()) + " is not supported (float32, float16, int32)", ErrorKind::Unsupported);
  check_scale_type(node, scale);
  DType out = quantize_output_dtype(node, zp.empty() ? DType::Undefined : zp.dtype());
  DType precision = division_precision(node, scale.dtype());
  QuantizedWeight view = quant_view(node, x, scale, zp);
  Tensor y(out, x.shape());
  for (int64_t i = 0; i < x.size(); ++i) {
    int64_t p = view.param_index(i);
    double z = zp.empty() ? 0.0 : static_cast<double>(zp.get_int(p));
    y.set_int(i, quantize_value(x.get(i), scale.get(p), z, precision, out));
  }
  return {y};
}

std::vector<ValueInfo> infer_dequantize(const InferContext& ctx) {
  DType out = dequantize_output_dtype(ctx.node, ctx.input(1).dtype);
  check_known_quant_params(ctx);
  return {like(ctx.input(0), out)};
}

std::vector<Tensor> dequantize_linear(const Node& node, const std::vector<Tensor>& in) {
  const Tensor& x = required_input(node, in, 0, "x");
  const Tensor& scale = required_input(node, in, 1, "x_scale");
  const Tensor& zp = optional_input(in, 2);
  op_check(is_quant_type(x.dtype()) || x.dtype() == DType::Int32, node,
           "input type " + dtype_name(x.dtype()) + " is not supported (int8, uint8, int16, uint16, int4, uint4, int32)",
           ErrorKind::Unsupported);
  op_check(zp.empty() || zp.dtype() == x.dtype(), node,
           "x_zero_point is " + dtype_name(zp.dtype()) + " but x is " + dtype_name(x.dtype()));
  check_scale_type(node, scale);
  DType out = dequantize_output_dtype(node, scale.dtype());
  QuantizedWeight view = quant_view(node, x, scale, zp);
  Tensor y(out, x.shape());
  for (int64_t i = 0; i < x.size(); ++i) {
    int64_t p = view.param_index(i);
    double z = zp.empty() ? 0.0 : static_cast<double>(zp.get_int(p));
    y.set(i, dequantize_value(static_cast<double>(x.get_int(i)), z, scale.get(p), out));
  }
  return {y};
}

// ---------------------------------------------------------------------------------------------
// A float activation times a dequantized weight (tetra.QMatMul, MatMulNBits)

// Y = alpha * op(A) x W + beta * bias. `w` holds the dequantized weight as stored, shape `w_shape`
// ([K, N], or [N, K] with trans_b); A is [..., M, K] or [K], or a 2-D [K, M] with trans_a.
Tensor weight_matmul(const Node& node, const Tensor& a, bool trans_a, const std::vector<double>& w,
                     const Shape& w_shape, bool trans_b, double alpha, double beta, const Tensor& bias) {
  op_check(is_scale_type(a.dtype()), node,
           "input type " + dtype_name(a.dtype()) + " is not supported (float32, float16)", ErrorKind::Unsupported);
  const int64_t K = trans_b ? w_shape[1] : w_shape[0], N = trans_b ? w_shape[0] : w_shape[1];
  Shape a_shape = a.shape();
  std::function<double(int64_t)> a_at = [&](int64_t i) { return a.get(i); };
  if (trans_a) {
    op_check(a.rank() == 2, node, "trans_a needs a 2-D input, got " + shape_str(a.shape()));
    a_shape = {a.shape()[1], a.shape()[0]};
    const int64_t M = a_shape[0];
    a_at = [&a, M, K](int64_t i) { return a.get((i % K) * M + i / K); };
  }
  op_check(!a_shape.empty() && a_shape.back() == K, node,
           "input " + shape_str(a_shape) + " does not end in the weight's K = " + std::to_string(K));
  auto w_at = [&](int64_t i) { return trans_b ? w[(i % N) * K + i / N] : w[i]; };
  MatMulResult r = matmul_reference(node, a_shape, a_at, Shape{K, N}, w_at);

  Tensor y(a.dtype(), r.shape);
  std::vector<int64_t> bias_map;
  if (!bias.empty()) {
    op_check(broadcast_shapes(node, bias.shape(), r.shape) == r.shape, node,
             "bias " + shape_str(bias.shape()) + " does not broadcast to the output " + shape_str(r.shape));
    bias_map = broadcast_index_map(bias.shape(), r.shape);
  }
  for (int64_t i = 0; i < y.size(); ++i) {
    double v = alpha * r.values[i];
    if (!bias.empty()) v += beta * bias.get(bias_map[i]);
    y.set(i, v);
  }
  return y;
}

const QuantizedWeight& fused_weight(const Node& node) {
  op_check(node.weight != nullptr, node, "has no packed int4 weight attached");
  return *node.weight;
}

// One dequantized copy of the packed weight, in QuantizedWeight's (DequantizeLinear's) arithmetic.
std::vector<double> dequantize_weight(const QuantizedWeight& w) {
  std::vector<double> v(w.data.size());
  for (int64_t i = 0; i < w.data.size(); ++i) v[i] = w.value(i);
  return v;
}

std::vector<ValueInfo> infer_qmatmul(const InferContext& ctx) {
  const Node& node = ctx.node;
  const QuantizedWeight& w = fused_weight(node);
  op_check(w.shape().size() == 2, node, "weight " + shape_str(w.shape()) + " must be 2-D");
  const ValueInfo& a = ctx.input(0);
  if (!a.has_shape) return {unknown_rank(a.dtype)};
  SymbolicShape a_shape = a.shape;
  if (node.attr_flag("trans_a", false)) {
    op_check(a_shape.size() == 2, node, "trans_a needs a 2-D input, got " + shape_str(a_shape));
    std::swap(a_shape[0], a_shape[1]);
  }
  Shape ws = w.shape();
  Shape logical = node.attr_flag("trans_b", false) ? Shape{ws[1], ws[0]} : ws;
  return {make_info(a.dtype, matmul_output_shape(node, a_shape, to_symbolic(logical)))};
}

std::vector<Tensor> qmatmul(const Node& node, const std::vector<Tensor>& in) {
  const QuantizedWeight& w = fused_weight(node);
  op_check(w.shape().size() == 2, node, "weight " + shape_str(w.shape()) + " must be 2-D");
  Tensor y = weight_matmul(node, required_input(node, in, 0, "A"), node.attr_flag("trans_a", false),
                           dequantize_weight(w), w.shape(), node.attr_flag("trans_b", false),
                           node.attr_float("alpha", 1.0), node.attr_float("beta", 1.0), optional_input(in, 1));
  return {apply_epilogue(node, std::move(y), in)};
}

std::vector<ValueInfo> infer_qconv(const InferContext& ctx) {
  const QuantizedWeight& w = fused_weight(ctx.node);
  const ValueInfo& x = ctx.input(0);
  if (!x.has_shape) return {unknown_rank(x.dtype)};
  return {make_info(x.dtype, conv_output_shape(ctx.node, x.shape, to_symbolic(w.shape())))};
}

Shape conv_output(const ConvParams& p) {
  Shape s{p.batch, p.out_channels};
  s.insert(s.end(), p.out_spatial.begin(), p.out_spatial.end());
  return s;
}

std::vector<Tensor> qconv(const Node& node, const std::vector<Tensor>& in) {
  const QuantizedWeight& w = fused_weight(node);
  const Tensor& x = required_input(node, in, 0, "X");
  const Tensor& bias = optional_input(in, 1);
  op_check(is_scale_type(x.dtype()), node,
           "input type " + dtype_name(x.dtype()) + " is not supported (float32, float16)", ErrorKind::Unsupported);
  ConvParams p = conv_params(node, x.shape(), w.shape());
  std::vector<double> bias_v = bias.to_doubles();
  op_check(bias.empty() || bias.shape() == Shape{p.out_channels}, node,
           "bias " + shape_str(bias.shape()) + " must be [" + std::to_string(p.out_channels) + "]");
  std::vector<double> wv = dequantize_weight(w);
  std::vector<double> y = conv_reference(
      p, [&](int64_t i) { return x.get(i); }, [&](int64_t i) { return wv[i]; }, bias.empty() ? nullptr : &bias_v);
  return {apply_epilogue(node, Tensor::from_doubles(x.dtype(), conv_output(p), y), in)};
}

// ---------------------------------------------------------------------------------------------
// com.microsoft.MatMulNBits (4-bit only): Y = A x dequant(B)^T + bias, B quantized in blocks along K.
// Layouts as in ONNX Runtime's docs/ContribOperators.md and matmul_nbits_helper.h: B is
// [N, n_blocks, block_size / 2] (low nibble first); scales [N * n_blocks] or [N, n_blocks]; uint8
// zero points are packed per row, [N * ceil(n_blocks / 2)] or [N, ceil(n_blocks / 2)]; float zero
// points are [N * n_blocks] or [N, n_blocks]; the default zero point is 8.

struct NBitsAttrs {
  int64_t K = 0, N = 0, block_size = 0, n_blocks = 0;
};

NBitsAttrs nbits_attrs(const Node& node) {
  int64_t bits = node.attr_int("bits", 4);
  op_check(bits == 4, node, "bits=" + std::to_string(bits) + " is not supported (only 4-bit weights)",
           ErrorKind::Unsupported);
  NBitsAttrs a;
  a.K = node.attr_int("K", -1);
  a.N = node.attr_int("N", -1);
  a.block_size = node.attr_int("block_size", -1);
  op_check(a.K > 0 && a.N > 0, node, "attributes K and N must be positive");
  op_check(a.block_size >= 16 && (a.block_size & (a.block_size - 1)) == 0, node,
           "block_size must be a power of two >= 16, got " + std::to_string(a.block_size));
  a.n_blocks = (a.K + a.block_size - 1) / a.block_size;
  return a;
}

void check_shape_either(const Node& node, const std::string& what, const Tensor& t, const Shape& flat,
                        const Shape& rows) {
  op_check(t.shape() == flat || t.shape() == rows, node,
           what + " shape " + shape_str(t.shape()) + " must be " + shape_str(flat) + " or " + shape_str(rows));
}

// g_idx maps each k to its block; only the trivial order (k / block_size) is supported.
void check_trivial_g_idx(const Node& node, const NBitsAttrs& a, const Tensor& g_idx) {
  op_check(g_idx.dtype() == DType::Int32 && g_idx.rank() == 1 &&
               (g_idx.size() == a.K || g_idx.size() == a.n_blocks * a.block_size),
           node, "g_idx must be int32 [K] or [n_blocks * block_size], got " + dtype_name(g_idx.dtype()) + " " +
                     shape_str(g_idx.shape()));
  for (int64_t k = 0; k < g_idx.size(); ++k)
    op_check(g_idx.get_int(k) == k / a.block_size, node,
             "g_idx reorders K (g_idx[" + std::to_string(k) + "] = " + std::to_string(g_idx.get_int(k)) +
                 "); only g_idx[k] = k / block_size is supported",
             ErrorKind::Unsupported);
}

std::vector<ValueInfo> infer_matmul_nbits(const InferContext& ctx) {
  NBitsAttrs attrs = nbits_attrs(ctx.node);
  const ValueInfo& a = ctx.input(0);
  if (!a.has_shape) return {unknown_rank(a.dtype)};
  return {make_info(a.dtype, matmul_output_shape(ctx.node, a.shape, to_symbolic(Shape{attrs.K, attrs.N})))};
}

std::vector<Tensor> matmul_nbits(const Node& node, const std::vector<Tensor>& in) {
  const NBitsAttrs p = nbits_attrs(node);
  const Tensor& a = required_input(node, in, 0, "A");
  const Tensor& b = required_input(node, in, 1, "B");
  const Tensor& scales = required_input(node, in, 2, "scales");
  const Tensor& zp = optional_input(in, 3);
  const Tensor& g_idx = optional_input(in, 4);
  const Tensor& bias = optional_input(in, 5);
  const int64_t N = p.N, K = p.K, nb = p.n_blocks;
  op_check(b.dtype() == DType::UInt8 && b.shape() == Shape{N, nb, p.block_size / 2}, node,
           "B must be uint8 " + shape_str(Shape{N, nb, p.block_size / 2}) + ", got " + dtype_name(b.dtype()) + " " +
               shape_str(b.shape()));
  op_check(scales.dtype() == a.dtype(), node,
           "scales are " + dtype_name(scales.dtype()) + " but A is " + dtype_name(a.dtype()));
  check_shape_either(node, "scales", scales, {N * nb}, {N, nb});
  const bool packed_zp = !zp.empty() && zp.dtype() == DType::UInt8;
  const int64_t zp_row = (nb + 1) / 2;  // bytes per row of packed zero points
  if (packed_zp) check_shape_either(node, "zero_points", zp, {N * zp_row}, {N, zp_row});
  if (!zp.empty() && !packed_zp) {
    op_check(zp.dtype() == scales.dtype(), node,
             "zero_points are " + dtype_name(zp.dtype()) + ", neither uint8 nor the scales' type");
    check_shape_either(node, "zero_points", zp, {N * nb}, {N, nb});
  }
  if (!g_idx.empty()) check_trivial_g_idx(node, p, g_idx);
  op_check(bias.empty() || bias.shape() == Shape{N}, node,
           "bias " + shape_str(bias.shape()) + " must be [" + std::to_string(N) + "]");

  // Each row of B holds n_blocks * block_size nibbles; the columns past K are padding.
  std::vector<double> w(N * K);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const int64_t block = n * nb + k / p.block_size;
      double z = 8.0;
      if (packed_zp) z = unpack_nibble(zp.bytes() + n * zp_row, k / p.block_size, false);
      else if (!zp.empty()) z = zp.get(block);
      double q = unpack_nibble(b.bytes(), n * nb * p.block_size + k, false);
      w[n * K + k] = dequantize_value(q, z, scales.get(block), a.dtype());
    }
  return {weight_matmul(node, a, false, w, Shape{N, K}, true, 1.0, 1.0, bias)};
}

// ---------------------------------------------------------------------------------------------
// MatMulInteger, QLinearMatMul

// How a per-tensor / per-row (of a) / per-column (of b) parameter broadcasts against its operand:
// per-row parameters become [..., M, 1] and per-column ones [..., 1, N], padded to the operand's
// rank. A 1-D operand only takes a per-tensor parameter, shaped [1] so that MatMul's 1-D rule
// applies to it as to the operand.
Shape matmul_param_shape(const Node& node, const std::string& what, const Tensor& p, const Shape& x, bool is_a) {
  const size_t r = x.size();
  if (r == 1) {
    op_check(p.size() == 1, node, what + " of a 1-D operand must have one element, got " + shape_str(p.shape()));
    return {1};
  }
  const size_t axis = is_a ? r - 2 : r - 1;  // the dim the parameter may vary along
  Shape s = p.shape();
  if (p.size() == 1) s = {};
  else if (p.rank() == 1 && p.shape()[0] == x[axis]) s = is_a ? Shape{x[axis], 1} : Shape{x[axis]};
  bool ok = s.size() <= r;
  if (ok) {
    s.insert(s.begin(), r - s.size(), 1);
    ok = s[is_a ? r - 1 : r - 2] == 1 && broadcast_shapes(node, s, x) == x;
  }
  op_check(ok, node,
           what + " shape " + shape_str(p.shape()) + " is neither per-tensor nor per-" + (is_a ? "row" : "column") +
               " for " + shape_str(x));
  return s;
}

// The operand minus its zero point (absent: zero).
std::vector<double> centered_operand(const Node& node, const std::string& what, const Tensor& x, const Tensor& zp,
                                     bool is_a) {
  if (zp.empty()) return x.to_doubles();
  return centered(node, what, x, zp, matmul_param_shape(node, what, zp, x.shape(), is_a));
}

void check_8bit(const Node& node, const std::string& what, DType t) {
  op_check(is_8bit(t), node, what + " type " + dtype_name(t) + " is not supported (int8, uint8)", ErrorKind::Unsupported);
}

std::vector<ValueInfo> infer_int_matmul(const InferContext& ctx, size_t b_index, DType out) {
  const ValueInfo& a = ctx.input(0);
  const ValueInfo& b = ctx.input(b_index);
  if (!a.has_shape || !b.has_shape) return {unknown_rank(out)};
  return {make_info(out, matmul_output_shape(ctx.node, a.shape, b.shape))};
}

std::vector<Tensor> matmul_integer(const Node& node, const std::vector<Tensor>& in) {
  const Tensor& a = required_input(node, in, 0, "A");
  const Tensor& b = required_input(node, in, 1, "B");
  check_8bit(node, "A", a.dtype());
  check_8bit(node, "B", b.dtype());
  std::vector<double> av = centered_operand(node, "a_zero_point", a, optional_input(in, 2), true);
  std::vector<double> bv = centered_operand(node, "b_zero_point", b, optional_input(in, 3), false);
  MatMulResult r = matmul_reference(node, a.shape(), [&](int64_t i) { return av[i]; }, b.shape(),
                                    [&](int64_t i) { return bv[i]; });
  Tensor y(DType::Int32, r.shape);
  for (int64_t i = 0; i < y.size(); ++i) y.set_int(i, static_cast<int64_t>(r.values[i]));  // int32 wraps
  return {y};
}

std::vector<Tensor> qlinear_matmul(const Node& node, const std::vector<Tensor>& in) {
  const Tensor& a = required_input(node, in, 0, "a");
  const Tensor& a_scale = required_input(node, in, 1, "a_scale");
  const Tensor& a_zp = optional_input(in, 2);
  const Tensor& b = required_input(node, in, 3, "b");
  const Tensor& b_scale = required_input(node, in, 4, "b_scale");
  const Tensor& b_zp = optional_input(in, 5);
  const Tensor& y_scale = required_input(node, in, 6, "y_scale");
  const Tensor& y_zp = optional_input(in, 7);
  check_8bit(node, "a", a.dtype());
  check_8bit(node, "b", b.dtype());
  for (const Tensor* s : {&a_scale, &b_scale, &y_scale}) check_scale_type(node, *s);
  op_check(a_scale.dtype() == b_scale.dtype() && b_scale.dtype() == y_scale.dtype(), node,
           "a_scale, b_scale and y_scale must have one type");
  require_same_shape(node, "a_scale", a_scale, "a_zero_point", a_zp);
  require_same_shape(node, "b_scale", b_scale, "b_zero_point", b_zp);
  require_one_element(node, "y_scale", y_scale);
  require_one_element(node, "y_zero_point", y_zp);
  const DType out = y_zp.empty() ? a.dtype() : y_zp.dtype();
  check_8bit(node, "y_zero_point", out);

  std::vector<double> av = centered_operand(node, "a_zero_point", a, a_zp, true);
  std::vector<double> bv = centered_operand(node, "b_zero_point", b, b_zp, false);
  MatMulResult acc = matmul_reference(node, a.shape(), [&](int64_t i) { return av[i]; }, b.shape(),
                                      [&](int64_t i) { return bv[i]; });
  // a_scale * b_scale for every output element: the MatMul of the per-row [.., M, 1] and per-column
  // [.., 1, N] scales is their outer product, broadcast over the batch like the product itself.
  Shape as = matmul_param_shape(node, "a_scale", a_scale, a.shape(), true);
  Shape bs = matmul_param_shape(node, "b_scale", b_scale, b.shape(), false);
  MatMulResult scales = matmul_reference(node, as, [&](int64_t i) { return a_scale.get(i); }, bs,
                                         [&](int64_t i) { return b_scale.get(i); });
  std::vector<int64_t> scale_map = broadcast_index_map(scales.shape, acc.shape);

  const double ys = y_scale.get(0), yz = y_zp.empty() ? 0.0 : y_zp.get(0);
  Tensor y(out, acc.shape);
  for (int64_t i = 0; i < y.size(); ++i) {
    double m = requant_multiplier(a_scale.dtype(), scales.values[scale_map[i]], ys);
    y.set_int(i, requantize(acc.values[i], m, yz, out));
  }
  return {y};
}

// ---------------------------------------------------------------------------------------------
// ConvInteger, QLinearConv

// A conv weight's zero point or scale: one element, or one per output channel ([M] -> [M, 1, ...]).
Shape channel_param_shape(const Node& node, const std::string& what, const Tensor& p, const Shape& w) {
  if (p.size() == 1) return {};
  op_check(p.rank() == 1 && p.shape()[0] == w[0], node,
           what + " shape " + shape_str(p.shape()) + " is neither per-tensor nor per output channel (" +
               std::to_string(w[0]) + ")");
  Shape s(w.size(), 1);
  s[0] = w[0];
  return s;
}

std::vector<double> centered_conv_operand(const Node& node, const std::string& what, const Tensor& t, const Tensor& zp,
                                          bool per_channel) {
  if (zp.empty()) return t.to_doubles();
  if (!per_channel) require_one_element(node, what, zp);
  return centered(node, what, t, zp, channel_param_shape(node, what, zp, t.shape()));
}

std::vector<ValueInfo> infer_int_conv(const InferContext& ctx, size_t w_index, DType out) {
  const ValueInfo& x = ctx.input(0);
  const ValueInfo& w = ctx.input(w_index);
  if (!x.has_shape || !w.has_shape) return {unknown_rank(out)};
  return {make_info(out, conv_output_shape(ctx.node, x.shape, w.shape))};
}

std::vector<Tensor> conv_integer(const Node& node, const std::vector<Tensor>& in) {
  const Tensor& x = required_input(node, in, 0, "x");
  const Tensor& w = required_input(node, in, 1, "w");
  check_8bit(node, "x", x.dtype());
  check_8bit(node, "w", w.dtype());
  ConvParams p = conv_params(node, x.shape(), w.shape());
  std::vector<double> xv = centered_conv_operand(node, "x_zero_point", x, optional_input(in, 2), false);
  std::vector<double> wv = centered_conv_operand(node, "w_zero_point", w, optional_input(in, 3), true);
  std::vector<double> acc =
      conv_reference(p, [&](int64_t i) { return xv[i]; }, [&](int64_t i) { return wv[i]; }, nullptr);
  Tensor y(DType::Int32, conv_output(p));
  for (int64_t i = 0; i < y.size(); ++i) y.set_int(i, static_cast<int64_t>(acc[i]));  // int32 wraps
  return {y};
}

std::vector<Tensor> qlinear_conv(const Node& node, const std::vector<Tensor>& in) {
  const Tensor& x = required_input(node, in, 0, "x");
  const Tensor& x_scale = required_input(node, in, 1, "x_scale");
  const Tensor& x_zp = optional_input(in, 2);
  const Tensor& w = required_input(node, in, 3, "w");
  const Tensor& w_scale = required_input(node, in, 4, "w_scale");
  const Tensor& w_zp = optional_input(in, 5);
  const Tensor& y_scale = required_input(node, in, 6, "y_scale");
  const Tensor& y_zp = optional_input(in, 7);
  const Tensor& bias = optional_input(in, 8);
  check_8bit(node, "x", x.dtype());
  check_8bit(node, "w", w.dtype());
  for (const Tensor* s : {&x_scale, &w_scale, &y_scale}) check_scale_type(node, *s);
  op_check(x_scale.dtype() == w_scale.dtype() && w_scale.dtype() == y_scale.dtype(), node,
           "x_scale, w_scale and y_scale must have one type");
  require_one_element(node, "x_scale", x_scale);
  require_one_element(node, "y_scale", y_scale);
  require_one_element(node, "y_zero_point", y_zp);
  const DType out = y_zp.empty() ? x.dtype() : y_zp.dtype();
  check_8bit(node, "y_zero_point", out);

  ConvParams p = conv_params(node, x.shape(), w.shape());
  channel_param_shape(node, "w_scale", w_scale, w.shape());
  op_check(bias.empty() || (bias.dtype() == DType::Int32 && bias.shape() == Shape{p.out_channels}), node,
           "bias must be int32 [" + std::to_string(p.out_channels) + "], got " + dtype_name(bias.dtype()) + " " +
               shape_str(bias.shape()));
  std::vector<double> xv = centered_conv_operand(node, "x_zero_point", x, x_zp, false);
  std::vector<double> wv = centered_conv_operand(node, "w_zero_point", w, w_zp, true);
  std::vector<double> bias_v = bias.to_doubles();
  std::vector<double> acc = conv_reference(p, [&](int64_t i) { return xv[i]; }, [&](int64_t i) { return wv[i]; },
                                           bias.empty() ? nullptr : &bias_v);

  Shape y_shape = conv_output(p);
  const int64_t spatial = num_elements(p.out_spatial);
  const double xs = x_scale.get(0), ys = y_scale.get(0), yz = y_zp.empty() ? 0.0 : y_zp.get(0);
  Tensor y(out, y_shape);
  for (int64_t i = 0; i < y.size(); ++i) {
    const int64_t m = (i / spatial) % p.out_channels;
    double mult = requant_multiplier(x_scale.dtype(), xs * w_scale.get(w_scale.size() == 1 ? 0 : m), ys);
    y.set_int(i, requantize(acc[i], mult, yz, out));
  }
  return {y};
}

}  // namespace

void register_quant_ops(OpRegistry& r) {
  r.add({"", "QuantizeLinear", infer_quantize, quantize_linear});
  r.add({"", "DequantizeLinear", infer_dequantize, dequantize_linear});
  r.add({"", "MatMulInteger", [](const InferContext& c) { return infer_int_matmul(c, 1, DType::Int32); },
         matmul_integer});
  r.add({"", "QLinearMatMul",
         [](const InferContext& c) {
           return infer_int_matmul(c, 3, c.has(7) ? c.input(7).dtype : c.input(0).dtype);
         },
         qlinear_matmul});
  r.add({"", "ConvInteger", [](const InferContext& c) { return infer_int_conv(c, 1, DType::Int32); }, conv_integer});
  r.add({"", "QLinearConv",
         [](const InferContext& c) { return infer_int_conv(c, 3, c.has(7) ? c.input(7).dtype : c.input(0).dtype); },
         qlinear_conv});
  r.add({"com.microsoft", "MatMulNBits", infer_matmul_nbits, matmul_nbits});
  r.add({"tetra", "QMatMul", infer_qmatmul, qmatmul});
  r.add({"tetra", "QConv", infer_qconv, qconv});
}

}  // namespace tetra
