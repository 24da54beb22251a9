#include "dsl/qmatmul.h"

namespace tetra::dsl {

QMatMulDef define_qmatmul(const QMatMulWorkload& workload, int panel) {
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
  w(j.var, k.var, p.var) = q.W.panel(j.var, k.var, p.var);
  acc(j.var, p.var, m.var) = 0.0f;
  acc(j.var, p.var, m.var) += a(r.rvar(), m.var) * w(j.var, r.rvar(), p.var);
  Expr y = q.alpha * acc(n.var % panel, n.var / panel, m.var);
  if (workload.has_bias) y += q.beta * q.bias(n.var);
  if (workload.activation == Activation::Relu) y = max(y, 0.0f);
  output(n.var, m.var) = y;

  d.reduce_axes = {r};
  d.extents = {{"M", M}, {"K", K}, {"N", output.output_buffer().dim(0).extent()}};

  // Buffers start at 0 and are dense in their first dimension; A's K must not exceed W's.
  q.A.dim(0).set_min(0).dim(1).set_min(0);
  q.bias.dim(0).set_min(0);
  output.output_buffer().dim(0).set_min(0).dim(1).set_min(0);

  d.output = output;
  d.stages = {{"a", a}, {"w", w}, {"acc", acc}};
  d.arguments = {q.A};
  for (const Argument& arg : q.W.arguments()) d.arguments.push_back(arg);
  if (workload.has_bias) d.arguments.push_back(q.bias);
  d.arguments.push_back(q.alpha);
  d.arguments.push_back(q.beta);
  return q;
}

}  // namespace tetra::dsl
