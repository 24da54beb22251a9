#include "dsl/qmatmul.h"

namespace tetra::dsl {

bool block_sums_apply(const QMatMulWorkload& w) {
  return w.format.k_group > 1 && w.format.k_group % 2 == 0 && !w.format.f16_scale;
}

QMatMulDef define_qmatmul(const QMatMulWorkload& workload, int panel, bool block_sums) {
  using namespace Halide;
  QMatMulDef q(workload.format, panel);
  ComputeDef& d = q.def;
  d.op = "qmatmul";
  Axis n = make_axis("n"), m = make_axis("m"), j = make_axis("j"), p = make_axis("p"), k = make_axis("k");
  d.axes = {n, m, j, p, k};

  Func output("qmatmul"), a("a"), w("w"), acc("acc");
  Expr K = q.A.dim(0).extent(), M = q.A.dim(1).extent();
  ReduceAxis r = make_reduce_axis("k", K);

  // Algorithm
  a(k.var, m.var) = q.A(k.var, clamp(m.var, 0, M - 1));
  acc(j.var, p.var, m.var) = 0.0f;
  Func partial("partial");
  if (block_sums) {
    // Each k-group's sum of a * (q - zp), then one multiply by the group's scale. The weight is
    // packed to whole groups, so the last group may be partial: past K the codes are padding whose
    // q - zp is 0 (dsl/int4_format.h), and A is read clamped, a finite value.
    check(block_sums_apply(workload), ErrorKind::Invalid, "block sums need even k-groups: " + workload.key());
    const int G = int(workload.format.k_group);
    Axis g = make_axis("g");
    d.axes.push_back(g);
    Expr groups_count = (K + G - 1) / G;
    RDom in_group(0, G, "r");
    RDom groups(0, groups_count, "groups");
    Expr kk = g.var * G + in_group;
    w(j.var, k.var, p.var) = q.W.code(j.var, k.var, p.var);
    partial(j.var, g.var, p.var, m.var) = 0.0f;
    partial(j.var, g.var, p.var, m.var) += q.A(min(kk, K - 1), clamp(m.var, 0, M - 1)) * w(j.var, kk, p.var);
    acc(j.var, p.var, m.var) += partial(j.var, groups, p.var, m.var) * q.W.scale(j.var, groups, p.var);
    r = ReduceAxis{"k", groups, groups_count};  // the reduction a schedule orders: over the groups
    d.reduce_axes = {ReduceAxis{"r", in_group, G}};
  } else {
    w(j.var, k.var, p.var) = q.W.panel(j.var, k.var, p.var);
    acc(j.var, p.var, m.var) += a(r.rvar(), m.var) * w(j.var, r.rvar(), p.var);
  }
  Expr y = q.alpha * acc(n.var % panel, n.var / panel, m.var);
  if (workload.has_bias) y += q.beta * q.bias(n.var);
  if (workload.activation == Activation::Relu) y = max(y, 0.0f);
  output(n.var, m.var) = y;

  d.reduce_axes.insert(d.reduce_axes.begin(), r);
  d.extents = {{"M", M}, {"K", K}, {"N", output.output_buffer().dim(0).extent()}};

  // Buffers start at 0 and are dense in their first dimension; A's K must not exceed W's.
  q.A.dim(0).set_min(0).dim(1).set_min(0);
  q.bias.dim(0).set_min(0);
  output.output_buffer().dim(0).set_min(0).dim(1).set_min(0);

  d.output = output;
  d.stages = {{"a", a}, {"w", w}, {"acc", acc}};
  if (block_sums) d.stages["partial"] = partial;
  d.arguments = {q.A};
  for (const Argument& arg : q.W.arguments()) d.arguments.push_back(arg);
  if (workload.has_bias) d.arguments.push_back(q.bias);
  d.arguments.push_back(q.alpha);
  d.arguments.push_back(q.beta);
  return q;
}

}  // namespace tetra::dsl
