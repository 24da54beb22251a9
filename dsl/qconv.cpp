#include "dsl/qconv.h"

#include <cstring>

namespace tetra::dsl {

std::string ConvInt4Format::describe() const {
  std::string s = is_signed ? "int4" : "uint4";
  if (grid == Grid::PerTensor) s += " per-tensor";
  else s += (grid == Grid::PerAxis ? " per-axis(" : " blocked(") + std::to_string(axis) + ")";
  if (has_zero_point) s += " zp";
  s += f16_scale ? " f16" : " f32";
  return s;
}

Result<ConvInt4Format> conv_int4_format_of(const QuantizedWeight& w) {
  auto no = [&](const std::string& why) { return Failure{FailureKind::Unsupported, w.name, why}; };
  if (w.data.dtype() != DType::Int4 && w.data.dtype() != DType::UInt4)
    return no("the weight is " + dtype_name(w.data.dtype()) + ", not int4 or uint4");
  if (w.data.rank() != 4) return no("only 2-D convs (a 4-D weight) have a direct kernel, not " + shape_str(w.shape()));
  if (w.scale.dtype() != DType::Float32 && w.scale.dtype() != DType::Float16)
    return no("scales must be float32 or float16, not " + dtype_name(w.scale.dtype()));
  if (!w.zero_point.empty() && w.zero_point.dtype() != w.data.dtype())
    return no("the zero point's type must match the data's");
  if (!w.zero_point.empty() && w.zero_point.size() != w.scale.size())
    return no("the zero point's shape must match the scale's");
  if (w.data.size() >= (int64_t(1) << 31)) return no("the weight has 2^31 elements or more");

  ConvInt4Format f;
  f.is_signed = w.data.dtype() == DType::Int4;
  f.has_zero_point = !w.zero_point.empty();
  f.f16_scale = w.scale.dtype() == DType::Float16;
  if (w.per_tensor()) return f;
  if (w.axis < 0 || w.axis > 3) return no("quantization axis " + std::to_string(w.axis) + " out of range");
  f.axis = int(w.axis);
  const Shape& s = w.shape();
  if (w.block_size == 0) {
    if (w.scale.size() != s[w.axis]) return no("a per-axis scale must have one value per index of the axis");
    f.grid = ConvInt4Format::Grid::PerAxis;
    return f;
  }
  Shape grid = s;
  grid[w.axis] = (s[w.axis] + w.block_size - 1) / w.block_size;
  if (w.scale.shape() != grid) return no("a blocked scale must have shape " + shape_str(grid));
  f.grid = ConvInt4Format::Grid::Blocked;
  return f;
}

std::string QConvWorkload::key() const {
  auto x = [](int64_t a, int64_t b) { return std::to_string(a) + "x" + std::to_string(b); };
  std::string s = "qconv n" + std::to_string(N) + " c" + std::to_string(C) + " h" + std::to_string(H) + " w" +
                  std::to_string(W) + " m" + std::to_string(M) + " g" + std::to_string(group) + " k" + x(KH, KW) +
                  " s" + x(SH, SW) + " d" + x(DH, DW) + " p" + std::to_string(pad_top) + "," +
                  std::to_string(pad_left) + "," + std::to_string(pad_bottom) + "," + std::to_string(pad_right) +
                  " " + format.describe();
  if (format.grid == ConvInt4Format::Grid::Blocked) s += " b" + std::to_string(block);
  return s + (has_bias ? " bias" : "");
}

std::string QConvWorkload::code_key() const {
  auto x = [](int64_t a, int64_t b) { return std::to_string(a) + "x" + std::to_string(b); };
  return "k" + x(KH, KW) + " s" + x(SH, SW) + " " + format.describe() + (has_bias ? " bias" : "");
}

int64_t ConvInt4Buffers::bytes() const {
  int64_t b = packed.defined() ? int64_t(packed.size_in_bytes()) : 0;
  if (scale.defined()) b += scale.size_in_bytes();
  if (zero.defined()) b += zero.size_in_bytes();
  return b;
}

Result<ConvInt4Buffers> pack_conv_weight(const QuantizedWeight& w) {
  Result<ConvInt4Format> format = conv_int4_format_of(w);
  if (!format) return format.failure();
  const ConvInt4Format& f = format.value();
  const Shape& s = w.shape();
  ConvInt4Buffers out;
  out.format = f;
  out.M = s[0];
  out.Cg = s[1];
  out.KH = s[2];
  out.KW = s[3];
  out.block = f.grid == ConvInt4Format::Grid::Blocked ? w.block_size : 0;

  int64_t bytes = (w.data.size() + 1) / 2;
  out.packed = Halide::Buffer<uint8_t>(int(bytes));
  std::memcpy(out.packed.data(), w.data.bytes(), size_t(bytes));

  // The grid in ONNX order [M', Cg', KH', KW'] is Halide's (KW', KH', Cg', M'), dense.
  Shape grid = {1, 1, 1, 1};
  if (f.grid == ConvInt4Format::Grid::PerAxis) grid[f.axis] = s[f.axis];
  if (f.grid == ConvInt4Format::Grid::Blocked) grid = w.scale.shape();
  std::vector<int> extents = {int(grid[3]), int(grid[2]), int(grid[1]), int(grid[0])};
  out.scale = Halide::Buffer<>(f.f16_scale ? Halide::Float(16) : Halide::Float(32), extents);
  std::memcpy(out.scale.data(), w.scale.bytes(), out.scale.size_in_bytes());
  if (f.has_zero_point) {
    out.zero = Halide::Buffer<int8_t>(extents);
    for (int64_t i = 0; i < w.zero_point.size(); ++i) out.zero.data()[i] = int8_t(w.zero_point.get_int(i));
  }
  return out;
}

Status QConvDef::bind(Halide::ParamMap& params, const QConvWorkload& wl, const ConvInt4Buffers& w,
                      const Halide::Buffer<float>* bias_values) const {
  auto bad = [](const std::string& why) { return Failure{FailureKind::Run, "qconv", why}; };
  if (!(w.format == wl.format))
    return bad("the weight is " + w.format.describe() + ", the kernel was compiled for " + wl.format.describe());
  if (w.M != wl.M || w.Cg != wl.Cg() || w.KH != wl.KH || w.KW != wl.KW)
    return bad("the weight's shape does not match the workload " + wl.key());
  if (wl.group <= 0 || wl.C % wl.group != 0 || wl.M % wl.group != 0)
    return bad("group " + std::to_string(wl.group) + " must divide C and M");
  if (wl.has_bias && (!bias_values || bias_values->dimensions() != 1 || bias_values->dim(0).extent() != wl.M))
    return bad("this kernel needs a bias of M = " + std::to_string(wl.M) + " values");
  params.set(packed, w.packed);
  params.set(scale, w.scale);
  if (wl.format.has_zero_point) params.set(zero, w.zero);
  if (wl.has_bias) params.set(bias, *bias_values);
  params.set(Cg, int(wl.Cg()));
  params.set(Mg, int(wl.Mg()));
  params.set(pad_top, int(wl.pad_top));
  params.set(pad_left, int(wl.pad_left));
  params.set(dil_h, int(wl.DH));
  params.set(dil_w, int(wl.DW));
  params.set(block, int(w.block > 0 ? w.block : 1));
  return ok_status();
}

namespace {

// W(m, c, i, j) from the packed bytes and the grids (see the header).
Halide::Expr dequantize(const QConvDef& q, const ConvInt4Format& f, int KH, int KW, const Halide::Expr& j,
                        const Halide::Expr& i, const Halide::Expr& c, const Halide::Expr& m) {
  using namespace Halide;
  Expr e = ((m * q.Cg + c) * KH + i) * KW + j;
  Expr byte = cast<int32_t>(q.packed(e / 2));
  Expr nibble = select(e % 2 == 1, byte >> 4, byte & 15);
  Expr code = f.is_signed ? (nibble ^ 8) - 8 : nibble;  // (v ^ 8) - 8 sign-extends 4 bits

  // The grid index: the coordinate on a quantized axis (divided by the block size when blocked), 0 on
  // the others. Halide dims are (kw, kh, c, m): ONNX axis a is Halide dim 3 - a.
  std::vector<Expr> at = {j, i, c, m};
  std::vector<Expr> g(4, Expr(0));
  if (f.grid == ConvInt4Format::Grid::PerAxis) g[3 - f.axis] = at[3 - f.axis];
  if (f.grid == ConvInt4Format::Grid::Blocked) {
    g = at;
    g[3 - f.axis] = at[3 - f.axis] / q.block;
  }
  if (f.has_zero_point) code -= cast<int32_t>(q.zero(g));  // exact: |q - zp| <= 15
  Expr v = cast<float>(code) * cast<float>(q.scale(g));
  if (f.f16_scale) v = cast<float>(cast<float16_t>(v));
  return v;
}

}  // namespace

QConvDef define_qconv(const QConvWorkload& wl) {
  using namespace Halide;
  QConvDef q(wl.format);
  q.workload = wl;
  ComputeDef& d = q.def;
  d.op = "qconv";
  const int KH = int(wl.KH), KW = int(wl.KW), SH = int(wl.SH), SW = int(wl.SW);
  Axis ow = make_axis("ow"), oh = make_axis("oh"), m = make_axis("m"), n = make_axis("n");
  Axis x = make_axis("x"), y = make_axis("y"), ch = make_axis("ch");
  Axis kw = make_axis("kw"), kh = make_axis("kh"), c = make_axis("c");
  d.axes = {ow, oh, m, n, x, y, ch, kw, kh, c};

  Func output("qconv"), xs("x"), w("w"), acc("acc");
  Expr W = q.X.dim(0).extent(), H = q.X.dim(1).extent();
  q.taps = RDom(0, KW, 0, KH, 0, q.Cg, "taps");
  RVar rkw = q.taps.x, rkh = q.taps.y, rc = q.taps.z;

  // Algorithm
  // constant_exterior marks the in-bounds test `likely`, so Halide splits the loops into a border and
  // an interior where the test (and the select) is gone.
  xs(x.var, y.var, ch.var, n.var) =
      BoundaryConditions::constant_exterior(q.X, 0.0f, {{0, W}, {0, H}})(x.var, y.var, ch.var, n.var);
  w(kw.var, kh.var, c.var, m.var) = dequantize(q, wl.format, KH, KW, kw.var, kh.var, c.var, m.var);
  acc(ow.var, oh.var, m.var, n.var) = wl.has_bias ? q.bias(m.var) : Expr(0.0f);
  Expr in_x = ow.var * SW - q.pad_left + rkw * q.dil_w;
  Expr in_y = oh.var * SH - q.pad_top + rkh * q.dil_h;
  Expr in_c = (m.var / q.Mg) * q.Cg + rc;
  acc(ow.var, oh.var, m.var, n.var) += xs(in_x, in_y, in_c, n.var) * w(rkw, rkh, rc, m.var);
  output(ow.var, oh.var, m.var, n.var) = acc(ow.var, oh.var, m.var, n.var);

  d.reduce_axes = {ReduceAxis{"taps", q.taps, q.Cg * KH * KW}};
  d.extents = {{"OW", output.output_buffer().dim(0).extent()},
               {"OH", output.output_buffer().dim(1).extent()},
               {"M", output.output_buffer().dim(2).extent()},
               {"W", W},
               {"H", H},
               {"Cg", q.Cg}};

  // Every buffer starts at 0.
  for (int i = 0; i < 4; ++i) {
    q.X.dim(i).set_min(0);
    q.scale.dim(i).set_min(0);
    q.zero.dim(i).set_min(0);
    output.output_buffer().dim(i).set_min(0);
  }
  q.packed.dim(0).set_min(0);
  q.bias.dim(0).set_min(0);

  d.output = output;
  d.stages = {{"x", xs}, {"w", w}, {"acc", acc}};
  d.arguments = {q.X, q.packed, q.scale};
  if (wl.format.has_zero_point) d.arguments.push_back(q.zero);
  if (wl.has_bias) d.arguments.push_back(q.bias);
  for (const Param<int>* p : {&q.Cg, &q.Mg, &q.pad_top, &q.pad_left, &q.dil_h, &q.dil_w, &q.block})
    d.arguments.push_back(*p);
  return q;
}

}  // namespace tetra::dsl
