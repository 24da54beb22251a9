#include "dsl/qconv.h"

#include <cstring>
#include <variant>

#include "dsl/elementwise_expr.h"
#include "importer/error.h"

namespace tetra::dsl {

namespace {

// W(m, c, i, j) from the packed bytes and the grids (see the header).
Halide::Expr dequantize(const QConvDef& q, const ConvInt4Format& f, int KH, int KW, const Halide::Expr& j,
                        const Halide::Expr& i, const Halide::Expr& c, const Halide::Expr& m) {
  using namespace Halide;
  Expr e = ((m * q.Cg + c) * KH + i) * KW + j;
  if (f.is_float()) return cast<float>(q.packed(e));
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

std::vector<PipelineParam> QConvDef::params() const {
  std::vector<PipelineParam> p = {X, packed};
  if (!workload.format.is_float()) p.push_back(scale);
  if (workload.format.has_zero_point) p.push_back(zero);
  if (workload.has_bias) p.push_back(bias);
  if (workload.epilogue.residual) p.push_back(residual);
  for (const Halide::Param<int>* v : {&Cg, &Mg, &pad_top, &pad_left, &dil_h, &dil_w, &block}) p.push_back(*v);
  return p;
}

QConvDef define_qconv(const QConvWorkload& wl, InputPadding padding, WeightChannels channels) {
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
  if (padding == InputPadding::Select) {
    // constant_exterior marks the in-bounds test `likely`, so Halide splits the loops into a border and
    // an interior where the test (and the select) is gone.
    xs(x.var, y.var, ch.var, n.var) =
        BoundaryConditions::constant_exterior(q.X, 0.0f, {{0, W}, {0, H}})(x.var, y.var, ch.var, n.var);
  } else {
    q.interior = RDom(0, W, 0, H, "interior");
    xs(x.var, y.var, ch.var, n.var) = 0.0f;
    xs(q.interior.x, q.interior.y, ch.var, n.var) = q.X(q.interior.x, q.interior.y, ch.var, n.var);
  }
  // Channels past M (= Mg * C / Cg) read channel M - 1: a schedule may compute whole tiles of channels,
  // and stage whole tiles of the weight.
  auto clamp_channel = [&](const Expr& channel) { return clamp(channel, 0, q.Mg * (q.X.dim(2).extent() / q.Cg) - 1); };
  const Expr weight_c = channels == WeightChannels::Clamped ? min(c.var, q.Cg - 1) : Expr(c.var);
  w(kw.var, kh.var, c.var, m.var) = dequantize(q, wl.format, KH, KW, kw.var, kh.var, weight_c, clamp_channel(m.var));
  Expr mc = clamp_channel(m.var);
  acc(ow.var, oh.var, m.var, n.var) = wl.has_bias ? q.bias(mc) : Expr(0.0f);
  Expr tap_x = rkw * q.dil_w - q.pad_left;  // in_x = ow * SW + tap_x
  Expr in_y = oh.var * SH - q.pad_top + rkh * q.dil_h;
  // A dense conv (group 1, compiled in: the kernel spec says "dense") reads channel rc for every m, which
  // lets a schedule that computes several output channels at once load each input vector once.
  Expr in_c = wl.group == 1 ? Expr(rc) : (mc / q.Mg) * q.Cg + rc;
  Expr input = xs(ow.var * SW + tap_x, in_y, in_c, n.var);
  if (padding == InputPadding::ZeroFillThenCopy && SW > 1) {
    // ow * SW + tap_x = (ow + tap_x div SW) * SW + tap_x mod SW (Halide's / and % round down).
    Func phases("x_phases");
    Var i("i"), r("r");
    phases(i, r, y.var, ch.var, n.var) = xs(i * SW + r, y.var, ch.var, n.var);
    input = phases(ow.var + tap_x / SW, tap_x % SW, in_y, in_c, n.var);
    d.stages["x_phases"] = phases;
  }
  acc(ow.var, oh.var, m.var, n.var) += input * w(rkw, rkh, rc, m.var);
  output(ow.var, oh.var, m.var, n.var) =
      apply_output_epilogue(acc(ow.var, oh.var, m.var, n.var), wl.epilogue, q.residual(ow.var, oh.var, m.var, n.var));

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
    q.residual.dim(i).set_min(0);
    output.output_buffer().dim(i).set_min(0);
  }
  q.packed.dim(0).set_min(0);
  q.bias.dim(0).set_min(0);

  d.output = output;
  d.stages.insert({{"x", xs}, {"w", w}, {"acc", acc}});
  for (const PipelineParam& p : q.params()) std::visit([&](const auto& v) { d.arguments.push_back(v); }, p);
  return q;
}

}  // namespace tetra::dsl
