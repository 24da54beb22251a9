// The Halide definitions and schedules of the data-movement pipelines that the node kernels of
// halide_data_movement.cpp call: strided copies, Where, Gather, Resize and reductions. Shapes,
// strides, offsets and index tables are run-time buffers, so one compile serves every shape; the
// code depends only on the element size (Copy, Where, Gather), the Resize mode and the reduction.
#include <cstdio>
#include <string>

#include "dsl/resize_def.h"
#include "runtime/elementwise_pipelines.h"

namespace tetra {
namespace {

using Halide::Expr;
using Halide::Func;
using Halide::ImageParam;
using Halide::RDom;
using Halide::TailStrategy;
using Halide::Var;

// Elements per parallel task (the elementwise pipelines' figure: 8K floats per task).
constexpr int kTaskBytes = 32768;

std::vector<Var> vars(int rank) {
  std::vector<Var> v;
  for (int d = 0; d < rank; ++d) v.emplace_back("d" + std::to_string(d));
  return v;
}

// An input whose innermost stride is a run-time value too (a transposed, sliced or broadcast read).
ImageParam strided_input(Halide::Type type, int rank, const std::string& name) {
  ImageParam p(type, rank, name);
  p.dim(0).set_stride(Expr());
  return p;
}

// Vectors along dim 0; rows of dim 1 in runs of about kTaskBytes, and the tasks those runs and the
// outer dims make, fused into one parallel loop. Only the task loop is fused: a fused loop recovers
// each dim with a division and a modulo per iteration, which per row of a few vectors cost more than
// the copy (the recognizer's 5-D QKV Transpose, 1 MB: 0.27-0.31 ms with all rows fused, 0.10-0.11
// like this; an AVX2-only EPYC VM, 2 threads). Returns the loop over the vectors of dim 0.
Var schedule_strided(Func f, const std::vector<Var>& v, int lanes, int element_bytes, const Expr& inner_extent) {
  Var vo("vo"), vi("vi"), rows("rows"), row("row");
  f.split(v[0], vo, vi, lanes, TailStrategy::GuardWithIf).vectorize(vi);
  Expr rows_per_task = max(1, kTaskBytes / element_bytes / max(1, inner_extent));
  f.split(v[1], rows, row, rows_per_task, TailStrategy::GuardWithIf);
  Var task = rows;
  for (size_t d = 2; d < v.size(); ++d) {
    Var next("task" + std::to_string(d));
    f.fuse(task, v[d], next);
    task = next;
  }
  f.parallel(task);
  return vo;
}

int lanes_for(const dsl::TargetSpec& target, int bits) {
  return std::max(1, target.natural_lanes(Halide::Float(32)) * 32 / bits);
}

// in -> out, both kStridedRank dims of any strides (out may be a window of a larger tensor).
dsl::ScheduledPipeline build_copy(int bits, const dsl::TargetSpec& target) {
  ImageParam in = strided_input(Halide::UInt(bits), kStridedRank, "in");
  std::vector<Var> v = vars(kStridedRank);
  Func out("copy");
  out(v) = in(v);
  out.output_buffer().dim(0).set_stride(Expr());
  schedule_strided(out, v, lanes_for(target, bits), bits / 8, out.output_buffer().dim(0).extent());
  out.specialize(in.dim(0).stride() == 1 && out.output_buffer().dim(0).stride() == 1);  // dense rows: vector loads
  return {Halide::Pipeline(out), {in}};
}

// cond (uint8), x, y (kStridedRank dims, any strides; stride 0 broadcasts) -> cond ? x : y.
dsl::ScheduledPipeline build_where(int bits, const dsl::TargetSpec& target) {
  ImageParam cond = strided_input(Halide::UInt(8), kStridedRank, "cond");
  ImageParam x = strided_input(Halide::UInt(bits), kStridedRank, "x");
  ImageParam y = strided_input(Halide::UInt(bits), kStridedRank, "y");
  std::vector<Var> v = vars(kStridedRank);
  Func out("where");
  out(v) = select(cond(v) != 0, x(v), y(v));
  schedule_strided(out, v, lanes_for(target, bits), bits / 8, out.output_buffer().dim(0).extent());
  out.specialize(cond.dim(0).stride() == 1 && x.dim(0).stride() == 1 && y.dim(0).stride() == 1);
  return {Halide::Pipeline(out), {cond, x, y}};
}

// data (inner, n, outer), indices (m, int32, already in [0, n)) -> out (inner, m, outer).
dsl::ScheduledPipeline build_gather(int bits, const dsl::TargetSpec& target) {
  ImageParam data(Halide::UInt(bits), 3, "data");
  ImageParam indices(Halide::Int(32), 1, "indices");
  Var i("i"), j("j"), o("o");
  Func out("gather");
  out(i, j, o) = data(i, clamp(indices(j), 0, data.dim(1).extent() - 1), o);
  schedule_strided(out, {i, j, o}, lanes_for(target, bits), bits / 8, data.dim(0).extent());
  return {Halide::Pipeline(out), {data, indices}};
}

// dsl/resize_def.h's definition, vectors along W.
dsl::ScheduledPipeline build_resize(bool nearest, const dsl::TargetSpec& target) {
  dsl::ResizeDef r = dsl::define_resize(nearest, "resize");
  schedule_strided(r.out, {r.ox, r.oy, r.p}, target.natural_lanes(Halide::Float(32)), 4,
                   r.out.output_buffer().dim(0).extent());
  const std::vector<ImageParam> tables = r.params();
  std::vector<dsl::PipelineParam> params(tables.begin(), tables.end());
  return {Halide::Pipeline(r.out), params};
}

// Nearest Resize by whole factors: out (W * sw, H * sh, planes) with out(ox, oy) = x(ox / sw, oy / sh),
// the x2 upsampling of FPNs and decoders. Each dense input vector is stored sw times, the copies
// interleaved into dense stores (the phases unrolled), with no sample tables and no gathers; rows of
// planes in runs of about kTaskBytes, in parallel.
dsl::ScheduledPipeline build_resize_by_factors(int sw, int sh, const dsl::TargetSpec& target) {
  ImageParam x(Halide::Float(32), 3, "x");
  Var ox("ox"), oy("oy"), p("p"), j("j"), phase("phase"), jo("jo"), jv("jv"), rows("rows"), row("row"), task("task");
  Func out("resize_by_factors");
  out(ox, oy, p) = x(ox / sw, oy / sh, p);
  const int lanes = target.natural_lanes(Halide::Float(32));
  Expr rows_per_task = max(1, kTaskBytes / 4 / max(1, out.output_buffer().dim(0).extent()));
  out.split(ox, j, phase, sw, TailStrategy::RoundUp)
      .split(j, jo, jv, lanes, TailStrategy::GuardWithIf)
      .reorder(jv, phase, jo, oy, p)
      .vectorize(jv)
      .unroll(phase)
      .split(oy, rows, row, rows_per_task, TailStrategy::GuardWithIf)
      .fuse(rows, p, task)
      .parallel(task);
  for (int d = 0; d < 3; ++d) {
    x.dim(d).set_min(0);
    out.output_buffer().dim(d).set_min(0);
  }
  // The output is the input times the factors (the node kernel checks it; the RoundUp split needs it).
  out.output_buffer().dim(0).set_extent(x.dim(0).extent() * sw);
  out.output_buffer().dim(1).set_extent(x.dim(1).extent() * sh);
  return {Halide::Pipeline(out), {x}};
}

// x float32 (kept dims 0..2, reduced dims 3..5, any strides) -> out (kept dims): the sum, the mean,
// the max or the min ("sum", "mean", "max", "min") over the reduced dims, in float32. A max or min
// over no elements is -inf or +inf; NaN propagates.
dsl::ScheduledPipeline build_reduce(const std::string& op, const dsl::TargetSpec& target) {
  ImageParam x = strided_input(Halide::Float(32), kStridedRank, "x");
  Var k0("k0"), k1("k1"), k2("k2");
  RDom r(0, x.dim(3).extent(), 0, x.dim(4).extent(), 0, x.dim(5).extent(), "r");
  Func sum("sum");
  Expr v = x(k0, k1, k2, r.x, r.y, r.z);
  const bool mean = op == "mean";
  if (op == "max" || op == "min") {
    bool is_max = op == "max";
    sum(k0, k1, k2) = Expr(is_max ? -INFINITY : INFINITY);
    Expr acc = sum(k0, k1, k2);
    sum(k0, k1, k2) = select(Halide::is_nan(v) || (is_max ? v > acc : v < acc), v, acc);
  } else {
    sum(k0, k1, k2) = 0.0f;
    sum(k0, k1, k2) += v;
  }
  Func out("reduce");
  Expr count = Halide::cast<float>(x.dim(3).extent() * x.dim(4).extent() * x.dim(5).extent());
  out(k0, k1, k2) = mean ? sum(k0, k1, k2) / count : sum(k0, k1, k2);

  const int V = target.natural_lanes(Halide::Float(32));
  Var vo = schedule_strided(out, {k0, k1, k2}, V, 4, out.output_buffer().dim(0).extent());
  // V outputs at a time, each over the whole reduction (vector loads when the kept dim is inner).
  sum.compute_at(out, vo).vectorize(k0, V, TailStrategy::GuardWithIf);
  sum.update().vectorize(k0, V, TailStrategy::GuardWithIf);
  out.specialize(x.dim(0).stride() == 1);
  return {Halide::Pipeline(out), {x}};
}

}  // namespace

dsl::Result<dsl::ScheduledPipeline> data_movement_pipeline(const KernelRequest& r, const dsl::TargetSpec& target) {
  const int bits = r.element_bits;
  if ((r.kind == KernelRequest::Kind::Copy || r.kind == KernelRequest::Kind::Where ||
       r.kind == KernelRequest::Kind::Gather) &&
      bits != 8 && bits != 16 && bits != 32 && bits != 64)
    return dsl::Failure{dsl::FailureKind::Unsupported, r.key(), "elements of 8, 16, 32 or 64 bits only"};
  try {
    switch (r.kind) {
      case KernelRequest::Kind::Copy: return build_copy(bits, target);
      case KernelRequest::Kind::Where: return build_where(bits, target);
      case KernelRequest::Kind::Gather: return build_gather(bits, target);
      case KernelRequest::Kind::Resize: {
        int sw = 0, sh = 0;
        if (std::sscanf(r.op.c_str(), "nearest by %dx%d", &sw, &sh) == 2 && sw >= 1 && sh >= 1 && sw <= 8 && sh <= 8)
          return build_resize_by_factors(sw, sh, target);
        if (r.op != "nearest" && r.op != "linear")
          return dsl::Failure{dsl::FailureKind::Unsupported, r.key(), "not a Resize mode tetra compiles"};
        return build_resize(r.op == "nearest", target);
      }
      case KernelRequest::Kind::Reduce: return build_reduce(r.op, target);
      default: return dsl::Failure{dsl::FailureKind::Unsupported, r.key(), "not a data-movement pipeline"};
    }
  } catch (const Halide::Error& e) {
    return dsl::Failure{dsl::FailureKind::Compile, r.key(), e.what()};
  }
}

}  // namespace tetra
