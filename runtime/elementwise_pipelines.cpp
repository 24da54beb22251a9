// The Halide definitions and schedules of the elementwise, normalisation, pooling and softmax
// pipelines that the node kernels of halide_elementwise.cpp call (see that file for the numerics).
// The JIT source compiles them in process; `tetra compile` compiles them into model libraries.
#include "runtime/elementwise_pipelines.h"

#include <cmath>
#include <functional>
#include <map>

#include "dsl/elementwise_expr.h"
#include "importer/error.h"
#include "runtime/halide_backend.h"

namespace tetra {
namespace {

using Halide::Expr;
using Halide::Func;
using Halide::ImageParam;
using Halide::RDom;
using Halide::TailStrategy;
using Halide::Var;

// A pipeline being built: its input buffers, float and int parameters (the call order), and output.
struct Built {
  std::vector<ImageParam> inputs;            // float32 buffers
  std::vector<Halide::Param<float>> floats;  // float attributes (alpha, clip bounds, epsilon)
  std::vector<Halide::Param<int>> ints;      // pool pads
  Halide::Pipeline pipeline;
};

// Elements per parallel task. On the 2-core host 1K and 8K floats ran a 1M-element Relu alike
// (0.73 ms) and 64K was slower; grouping short rows by 8K took a 512x7x7 global pool from 0.044
// to 0.024 ms and layer norm 512x768 from 0.54 to 0.22 ms.
constexpr int kTaskFloats = 8192;

// Vectors along the innermost dim (a guarded scalar tail for odd sizes); parallel over the fused
// outer dims, or over chunks of the only dim.
void schedule_pointwise(Func f, const std::vector<Var>& v, int V) {
  Var vo("vo"), vi("vi");
  f.split(v[0], vo, vi, V, TailStrategy::GuardWithIf).vectorize(vi);
  if (v.size() == 1) {
    f.parallel(vo, kTaskFloats / V, TailStrategy::GuardWithIf);
    return;
  }
  Var outer = v[1];
  for (size_t d = 2; d < v.size(); ++d) {
    Var fused("outer" + std::to_string(d));
    f.fuse(outer, v[d], fused);
    outer = fused;
  }
  f.parallel(outer);
}


// ---------------------------------------------------------------------------------------------
// Elementwise ops: the expressions are dsl/elementwise_expr.h's

using dsl::Exprs;

// `pattern`: per dim (innermost first, comma-separated), one char per operand: 'x' read along it,
// '1' broadcast (BroadcastPlan in halide_elementwise.cpp).
void build_elementwise(Built& c, const dsl::ElementwiseExpr& expr, const ElementwiseArity& op, const std::string& pattern, int V) {
  const size_t n = op.operands, rank = (pattern.size() + 1) / (n + 1);
  std::vector<Var> v;
  for (size_t d = 0; d < rank; ++d) v.emplace_back("d" + std::to_string(d));
  Exprs x, p;
  for (size_t k = 0; k < n; ++k) {
    c.inputs.emplace_back(Halide::Float(32), static_cast<int>(rank), "in" + std::to_string(k));
    std::vector<Expr> at;
    for (size_t d = 0; d < rank; ++d) at.push_back(pattern[d * (n + 1) + k] == 'x' ? Expr(v[d]) : Expr(0));
    x.push_back(c.inputs.back()(at));
  }
  for (int k = 0; k < op.floats; ++k) {
    c.floats.emplace_back("p" + std::to_string(k));
    p.push_back(c.floats.back());
  }
  Func out("out");
  out(v) = expr(x, p);
  schedule_pointwise(out, v, V);
  c.pipeline = Halide::Pipeline(out);
}

// ---------------------------------------------------------------------------------------------
// Row reductions: softmax and layer norm normalise rows; global pools reduce them.

// The sum (or max) over i in [0, n) of f(i, row), as `lanes` independent vector accumulators that
// read whole vectors of the row, then one value across the lanes. f must be defined beyond n (a
// boundary condition giving the reduction's identity).
struct RowReduction {
  Func lanes, total;
};

RowReduction row_reduction(const std::string& name, const Func& f, const Expr& n, bool is_max, int V) {
    Var l("l"), row("row");
  RowReduction r{Func(name + "_lanes"), Func(name)};
  Expr identity = is_max ? Expr(-INFINITY) : Expr(0.0f);
  RDom j(0, (n + V - 1) / V, name + "_j");
  r.lanes(l, row) = identity;
  Expr v = f(j * V + l, row);
  r.lanes(l, row) = is_max ? max(r.lanes(l, row), v) : r.lanes(l, row) + v;
  // Across the lanes pairwise: log2(V) dependent steps instead of V.
  std::vector<Expr> partial;
  for (int k = 0; k < V; ++k) partial.push_back(r.lanes(k, row));
  for (size_t width = partial.size(); width > 1; width /= 2)
    for (size_t k = 0; k < width / 2; ++k)
      partial[k] = is_max ? max(partial[2 * k], partial[2 * k + 1]) : partial[2 * k] + partial[2 * k + 1];
  r.total(row) = partial[0];
  return r;
}

// Rows in parallel, short rows grouped into tasks of about kTaskFloats elements; returns the task loop.
Var parallel_rows(Func f, const Var& row, const Expr& n) {
  Var task("task");
  f.split(row, task, row, max(1, kTaskFloats / n), TailStrategy::GuardWithIf).parallel(task);
  return task;
}

// Computes the reduction once per row of `consumer` (at its loop `row`), vectorized across lanes.
void schedule_row_reduction(const RowReduction& r, const Func& consumer, const Var& row) {
  Func lanes = r.lanes, total = r.total;
  Var l = lanes.args()[0];
  lanes.compute_at(consumer, row).vectorize(l);
  lanes.update().vectorize(l);
  total.compute_at(consumer, row);
}

// f with `value` outside [0, n) along its first dim.
Func exterior(const Func& f, const Expr& value, const Expr& n) {
  return Halide::BoundaryConditions::constant_exterior(f, value, {{0, n}, {Expr(), Expr()}});
}

// x (n, rows) -> exp(x - max) / sum(exp(x - max)) along each row.
void build_softmax(Built& c, int V) {
  c.inputs.emplace_back(Halide::Float(32), 2, "x");
  ImageParam x = c.inputs[0];
  Expr n = x.dim(0).extent();
  Var i("i"), row("row");
  Func in("in");
  in(i, row) = x(i, row);
  RowReduction mx = row_reduction("max", exterior(in, -INFINITY, n), n, true, V);
  Func e("e");
  e(i, row) = exp(x(i, row) - mx.total(row));
  RowReduction sum = row_reduction("sum", exterior(e, 0.0f, n), n, false, V);
  Func out("softmax");
  out(i, row) = e(i, row) / sum.total(row);

  Var io("io"), ii("ii");
  out.split(i, io, ii, V, TailStrategy::GuardWithIf).vectorize(ii);
  Var task = parallel_rows(out, row, n);
  // Each exp once, into a row buffer allocated once per task rather than once per row (the row's
  // length is a run-time value, so each allocation is a heap call): 15% of attention's softmax.
  e.compute_at(out, row).store_at(out, task).vectorize(i, V, TailStrategy::GuardWithIf);
  schedule_row_reduction(mx, out, row);
  schedule_row_reduction(sum, out, row);
  c.pipeline = Halide::Pipeline(out);
}

// x (n, rows), scale and bias (n) -> (x - mean) / sqrt(var + eps) * scale + bias along each row.
void build_layer_norm(Built& c, bool has_bias, int V) {
  c.inputs.emplace_back(Halide::Float(32), 2, "x");
  c.inputs.emplace_back(Halide::Float(32), 1, "scale");
  if (has_bias) c.inputs.emplace_back(Halide::Float(32), 1, "bias");
  c.floats.emplace_back("epsilon");
  ImageParam x = c.inputs[0], scale = c.inputs[1];
  Expr n = x.dim(0).extent();
  Var i("i"), row("row");
  Func in("in");
  in(i, row) = x(i, row);
  RowReduction sum = row_reduction("sum", exterior(in, 0.0f, n), n, false, V);
  Func mean("mean");
  mean(row) = sum.total(row) / Halide::cast<float>(n);
  Func centered("centered");
  centered(i, row) = x(i, row) - mean(row);
  Func square("square");
  square(i, row) = centered(i, row) * centered(i, row);
  RowReduction sq = row_reduction("sq", exterior(square, 0.0f, n), n, false, V);
  Func inv_std("inv_std");
  inv_std(row) = 1.0f / sqrt(sq.total(row) / Halide::cast<float>(n) + c.floats[0]);
  Func out("layer_norm");
  Expr y = centered(i, row) * inv_std(row) * scale(i);
  out(i, row) = has_bias ? y + c.inputs[2](i) : y;

  Var io("io"), ii("ii");
  out.split(i, io, ii, V, TailStrategy::GuardWithIf).vectorize(ii);
  parallel_rows(out, row, n);
  schedule_row_reduction(sum, out, row);
  schedule_row_reduction(sq, out, row);
  mean.compute_at(out, row);
  inv_std.compute_at(out, row);
  c.pipeline = Halide::Pipeline(out);
}

// x (n, rows) -> the mean (or max) of each row.
void build_global_pool(Built& c, bool is_max, int V) {
  c.inputs.emplace_back(Halide::Float(32), 2, "x");
  ImageParam x = c.inputs[0];
  Expr n = x.dim(0).extent();
  Var i("i"), row("row");
  Func in("in");
  in(i, row) = x(i, row);
  RowReduction r = row_reduction("pool", exterior(in, is_max ? Expr(-INFINITY) : Expr(0.0f), n), n, is_max, V);
  Func out("global_pool");
  out(row) = is_max ? r.total(row) : r.total(row) / Halide::cast<float>(n);
  parallel_rows(out, row, n);
  schedule_row_reduction(r, out, row);
  c.pipeline = Halide::Pipeline(out);
}

// ---------------------------------------------------------------------------------------------
// MaxPool, AveragePool: 1-D and 2-D windows

// x (W, H, planes) -> y (OW, OH, planes). Padding reads -inf (max) or 0 (average); the average
// divides by count_h(oh) * count_w(ow).
void build_pool(Built& c, const PoolWindow& w, int V) {
  c.inputs.emplace_back(Halide::Float(32), 3, "x");
  c.inputs.emplace_back(Halide::Float(32), 1, "count_h");
  c.inputs.emplace_back(Halide::Float(32), 1, "count_w");
  c.ints.emplace_back("pad_h");
  c.ints.emplace_back("pad_w");
  ImageParam x = c.inputs[0];
  Expr ph = c.ints[0], pw = c.ints[1];
  Func padded = Halide::BoundaryConditions::constant_exterior(
      x, w.is_max ? Expr(-INFINITY) : Expr(0.0f), {{0, x.dim(0).extent()}, {0, x.dim(1).extent()}, {Expr(), Expr()}});
  Var ow("ow"), oh("oh"), p("p");
  Expr acc;
  for (int i = 0; i < w.kh; ++i)
    for (int j = 0; j < w.kw; ++j) {
      Expr v = padded(ow * w.sw - pw + j * w.dw, oh * w.sh - ph + i * w.dh, p);
      acc = !acc.defined() ? v : w.is_max ? max(acc, v) : acc + v;
    }
  Func out("pool");
  out(ow, oh, p) = w.is_max ? acc : acc / (c.inputs[1](oh) * c.inputs[2](ow));

  // Planes in parallel. Each plane is first copied with its padding (the boundary checks stay in
  // that copy's border), so the window reads are plain (strided) vector loads.
  Var owo("owo"), owi("owi");
  out.split(ow, owo, owi, V, TailStrategy::GuardWithIf).vectorize(owi).parallel(p);
  padded.compute_at(out, p).vectorize(padded.args()[0], V, TailStrategy::GuardWithIf);
  c.pipeline = Halide::Pipeline(out);
}

}  // namespace

dsl::Result<dsl::ScheduledPipeline> elementwise_pipeline(const KernelRequest& r, const dsl::TargetSpec& target) {
  const int V = target.natural_lanes(Halide::Float(32));
  Built c;
  try {
    switch (r.kind) {
      case KernelRequest::Kind::Elementwise: {
        auto arity = elementwise_ops().find(r.op);
        const dsl::ElementwiseExpr* expr = dsl::find_elementwise_expr(r.op);
        if (arity == elementwise_ops().end() || !expr)
          return dsl::Failure{dsl::FailureKind::Unsupported, r.op, "no elementwise pipeline for this op"};
        build_elementwise(c, *expr, arity->second, r.pattern, V);
        break;
      }
      case KernelRequest::Kind::Softmax: build_softmax(c, V); break;
      case KernelRequest::Kind::LayerNorm: build_layer_norm(c, r.flag, V); break;
      case KernelRequest::Kind::GlobalPool: build_global_pool(c, r.flag, V); break;
      case KernelRequest::Kind::Pool: build_pool(c, r.window, V); break;
      default: return data_movement_pipeline(r, target);
    }
  } catch (const Halide::Error& e) {
    return dsl::Failure{dsl::FailureKind::Compile, r.key(), e.what()};
  }
  dsl::ScheduledPipeline p{c.pipeline, {}};
  for (const ImageParam& in : c.inputs) p.params.push_back(in);
  for (const auto& f : c.floats) p.params.push_back(f);
  for (const auto& i : c.ints) p.params.push_back(i);
  return p;
}

Halide::Target elementwise_target(const dsl::TargetSpec& target) {
  return target.halide.with_feature(Halide::Target::StrictFloat);
}

}  // namespace tetra
