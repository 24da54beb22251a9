#include "schedules/gpu/elementwise.h"

#include "dsl/elementwise_expr.h"
#include "dsl/resize_def.h"

namespace tetra::schedules {

using dsl::Failure;
using dsl::FailureKind;
using namespace Halide;

namespace {

// Threads per block: a whole wave on every GPU (32 or 64 lanes), and enough blocks for small tensors.
constexpr int kBlockThreads = 256;
constexpr int kRowsPerBlock = 64;

dsl::Result<GpuKernels> capture_fixed(const Func& out, const std::vector<Argument>& args,
                                      const std::string& template_name, const TargetSpec& target,
                                      const std::string& name) {
  if (target.is_cpu()) return Failure{FailureKind::WrongTarget, target.name, "GPU kernels are lowered for GPU targets"};
  Schedule schedule;
  schedule.template_name = template_name;
  try {
    return capture_gpu_kernels(out, args, schedule, name);
  } catch (const Halide::Error& e) {
    return Failure{FailureKind::Compile, template_name, e.what()};
  }
}

// One thread per output element: the dims fused into one index, in blocks of kBlockThreads. Returns the
// thread loop, where per-element intermediates are computed.
Var one_thread_per_element(Func out, const std::vector<Var>& v) {
  Var all = v[0];
  for (size_t d = 1; d < v.size(); ++d) {
    Var fused("f" + std::to_string(d));
    out.fuse(all, v[d], fused);
    all = fused;
  }
  Var block("block"), thread("thread");
  out.gpu_tile(all, block, thread, kBlockThreads, TailStrategy::GuardWithIf);
  return thread;
}

// The same for an update stage of a Func (`tag` keeps its loop names apart from the pure stage's).
void one_thread_per_element(Stage stage, const std::vector<Var>& v, const std::string& tag) {
  Var all = v[0];
  for (size_t d = 1; d < v.size(); ++d) {
    Var fused(tag + "f" + std::to_string(d));
    stage.fuse(all, v[d], fused);
    all = fused;
  }
  Var block(tag + "block"), thread(tag + "thread");
  stage.gpu_tile(all, block, thread, kBlockThreads, TailStrategy::GuardWithIf);
}

std::vector<Var> dims(size_t rank) {
  std::vector<Var> v;
  for (size_t d = 0; d < rank; ++d) v.emplace_back("d" + std::to_string(d));
  return v;
}

}  // namespace

dsl::Result<GpuKernels> lower_gpu_copy(const std::vector<int>& out_dim, const TargetSpec& target,
                                       const std::string& name) {
  const int rank = int(out_dim.size());
  if (rank == 0) return Failure{FailureKind::Unsupported, "copy", "copies tensors of rank 1 or more"};
  ImageParam in(Float(32), rank, "in");
  std::vector<Var> v = dims(size_t(rank));
  std::vector<Argument> args = {in};
  std::vector<Expr> at;
  for (int j = 0; j < rank; ++j) {
    Param<int> start("start" + std::to_string(j)), step("step" + std::to_string(j));
    at.push_back(v[size_t(out_dim[size_t(j)])] * step + start);
    args.push_back(start);
    args.push_back(step);
  }
  Func out("out");
  out(v) = in(at);
  one_thread_per_element(out, v);
  return capture_fixed(out, args, "gpu_copy", target, name);
}

dsl::Result<GpuKernels> lower_gpu_pad(GpuPadMode mode, int rank, const TargetSpec& target, const std::string& name) {
  if (rank < 1) return Failure{FailureKind::Unsupported, "pad", "pads tensors of rank 1 or more"};
  ImageParam in(Float(32), rank, "in");
  std::vector<Var> v = dims(size_t(rank));
  std::vector<Argument> args = {in};
  std::vector<Expr> at;
  Expr inside = Halide::Internal::const_true();
  for (int j = 0; j < rank; ++j) {
    Param<int> begin("begin" + std::to_string(j));
    args.push_back(begin);
    Expr i = v[size_t(j)] - begin, n = in.dim(j).extent();
    inside = inside && i >= 0 && i < n;
    if (mode == GpuPadMode::Reflect) {
      i = select(i < 0, -i, i);
      i = select(i >= n, 2 * (n - 1) - i, i);
    }
    at.push_back(clamp(i, 0, n - 1));  // also where a Constant pad does not read
  }
  Func out("out");
  if (mode == GpuPadMode::Constant) {
    Param<float> value("value");
    args.push_back(value);
    out(v) = select(inside, in(at), value);
  } else {
    out(v) = in(at);
  }
  one_thread_per_element(out, v);
  return capture_fixed(out, args, "gpu_pad", target, name);
}

dsl::Result<GpuKernels> lower_gpu_gather(const TargetSpec& target, const std::string& name) {
  ImageParam in(Float(32), 3, "in"), idx(Int(32), 1, "idx");
  std::vector<Var> v = dims(3);
  Func out("out");
  // Negative indices count from the end (ONNX); one out of range is clamped, so that it cannot fault.
  Expr i = idx(v[1]), n = in.dim(1).extent();
  out(v) = in(v[0], clamp(select(i < 0, i + n, i), 0, n - 1), v[2]);
  one_thread_per_element(out, v);
  return capture_fixed(out, {in, idx}, "gpu_gather", target, name);
}

dsl::Result<GpuKernels> lower_gpu_concat(int inputs, int rank, int axis, const TargetSpec& target,
                                         const std::string& name) {
  if (inputs < 1 || rank < 1 || axis < 0 || axis >= rank)
    return Failure{FailureKind::Unsupported, "concat", "joins one or more inputs along one of their dims"};
  std::vector<Var> v = dims(size_t(rank));
  std::vector<ImageParam> in;
  std::vector<Expr> offset = {0};  // where each input starts along the axis
  for (int k = 0; k < inputs; ++k) {
    in.emplace_back(Float(32), rank, "in" + std::to_string(k));
    offset.push_back(offset.back() + in.back().dim(axis).extent());
  }
  // The input that holds each position, read inside its bounds wherever the select does not take it.
  auto read = [&](int k) {
    std::vector<Expr> at(v.begin(), v.end());
    at[size_t(axis)] = clamp(v[size_t(axis)] - offset[size_t(k)], 0, in[size_t(k)].dim(axis).extent() - 1);
    return in[size_t(k)](at);
  };
  Expr value = read(inputs - 1);
  for (int k = inputs - 2; k >= 0; --k) value = select(v[size_t(axis)] < offset[size_t(k) + 1], read(k), value);
  Func out("out");
  out(v) = value;
  one_thread_per_element(out, v);
  return capture_fixed(out, std::vector<Argument>(in.begin(), in.end()), "gpu_concat", target, name);
}

dsl::Result<GpuKernels> lower_gpu_conv_transpose(int kh, int kw, const TargetSpec& target, const std::string& name) {
  ImageParam x(Float(32), 4, "x"), w(Float(32), 4, "w"), bias(Float(32), 1, "bias");
  Var ox("ox"), oy("oy"), m("m"), n("n");
  RDom c(0, x.dim(2).extent(), "c");
  // The sum accumulates in the output itself: two kernels, the bias, then the taps, a thread per output.
  Func out("out");
  out(ox, oy, m, n) = bias(m);
  out(ox, oy, m, n) += x(ox / kw, oy / kh, c, n) * w(ox % kw, oy % kh, m, c);
  one_thread_per_element(out, {ox, oy, m, n});
  one_thread_per_element(out.update(), {ox, oy, m, n}, "u");
  return capture_fixed(out, {x, w, bias}, "gpu_conv_transpose", target, name);
}

dsl::Result<GpuKernels> lower_gpu_batch_matmul(const TargetSpec& target, const std::string& name) {
  ImageParam a(Float(32), 3, "a"), b(Float(32), 3, "b");
  Var n("n"), m("m"), batch("batch");
  RDom k(0, a.dim(0).extent(), "k");
  Func out("out");
  out(n, m, batch) = 0.0f;
  out(n, m, batch) += a(k, m, batch) * b(n, k, batch);
  one_thread_per_element(out, {n, m, batch});
  one_thread_per_element(out.update(), {n, m, batch}, "u");
  return capture_fixed(out, {a, b}, "gpu_batch_matmul", target, name);
}

dsl::Result<GpuKernels> lower_gpu_reduce(const std::string& op, const TargetSpec& target, const std::string& name) {
  const bool is_max = op == "max", is_min = op == "min", is_mean = op == "mean";
  if (!is_max && !is_min && !is_mean && op != "sum")
    return Failure{FailureKind::Unsupported, op, "reductions are sum, mean, max or min"};
  ImageParam x(Float(32), 3, "x");
  Param<float> count("count");
  Var i("i"), o("o");
  RDom r(0, x.dim(1).extent(), "r");
  Func out("out");
  out(i, o) = Expr(is_max ? -INFINITY : is_min ? INFINITY : 0.0f);
  Expr v = x(i, r, o);
  out(i, o) = is_max ? max(out(i, o), v) : is_min ? min(out(i, o), v) : out(i, o) + v;
  one_thread_per_element(out, {i, o});
  one_thread_per_element(out.update(0), {i, o}, "u");
  std::vector<Argument> args = {x};
  if (is_mean) {
    out(i, o) = out(i, o) / count;
    one_thread_per_element(out.update(1), {i, o}, "m");
    args.push_back(count);
  }
  return capture_fixed(out, args, "gpu_reduce_" + op, target, name);
}

dsl::Result<GpuKernels> lower_gpu_elementwise(const std::string& op_key, int floats,
                                              const std::vector<std::vector<bool>>& broadcast, const TargetSpec& target,
                                              const std::string& name) {
  const dsl::ElementwiseExpr* expr = dsl::find_elementwise_expr(op_key);
  if (!expr) return Failure{FailureKind::Unsupported, op_key, "has no GPU elementwise kernel"};
  const size_t rank = broadcast.empty() ? 0 : broadcast[0].size();
  for (const std::vector<bool>& b : broadcast)
    if (b.size() != rank || rank == 0)
      return Failure{FailureKind::Unsupported, op_key,
                     "operands are broadcast over one output shape of rank 1 or more"};
  std::vector<Var> v;
  for (size_t d = 0; d < rank; ++d) v.emplace_back("d" + std::to_string(d));
  std::vector<Argument> args;
  dsl::Exprs x, p;
  for (size_t k = 0; k < broadcast.size(); ++k) {
    ImageParam in(Float(32), int(rank), "in" + std::to_string(k));
    std::vector<Expr> at;
    for (size_t d = 0; d < rank; ++d) at.push_back(broadcast[k][d] ? Expr(v[d]) : Expr(0));
    x.push_back(in(at));
    args.push_back(in);
  }
  for (int k = 0; k < floats; ++k) {
    Param<float> param("p" + std::to_string(k));
    p.push_back(param);
    args.push_back(param);
  }
  Func out("out");
  out(v) = (*expr)(x, p);
  one_thread_per_element(out, v);
  return capture_fixed(out, args, "gpu_elementwise", target, name);
}

dsl::Result<GpuKernels> lower_gpu_rows(GpuRowOp op, bool has_bias, const TargetSpec& target, const std::string& name) {
  ImageParam x(Float(32), 2, "x"), scale(Float(32), 1, "scale"), bias(Float(32), 1, "bias");
  Param<float> epsilon("epsilon");
  Var i("i"), row("row");
  Expr n = x.dim(0).extent();
  RDom r(0, n, "r");
  Func out("out");
  std::vector<Func> per_row;  // computed by each row's thread
  std::vector<Argument> args = {x};
  if (op == GpuRowOp::Softmax) {
    Func top("top"), total("total");
    top(row) = maximum(x(r, row));
    total(row) = sum(exp(x(r, row) - top(row)));
    out(i, row) = exp(x(i, row) - top(row)) / total(row);
    per_row = {top, total};
  } else {
    // Two passes, the mean first: no cancellation in the variance.
    // n as a float parameter: a float the host computed from n would be a kernel argument no launch plan
    // can carry (they evaluate integers).
    Param<float> count("count");
    Func mean("mean"), variance("variance");
    mean(row) = sum(x(r, row)) / count;
    Expr centred = x(r, row) - mean(row);
    variance(row) = sum(centred * centred) / count;
    Expr y = (x(i, row) - mean(row)) / sqrt(variance(row) + epsilon) * scale(i);
    out(i, row) = has_bias ? y + bias(i) : y;
    per_row = {mean, variance};
    args.push_back(scale);
    if (has_bias) args.push_back(bias);
    args.push_back(epsilon);
    args.push_back(count);
  }
  Var block("block"), thread("thread");
  out.split(row, block, thread, kRowsPerBlock, TailStrategy::GuardWithIf)
      .reorder(i, thread, block)
      .gpu_blocks(block)
      .gpu_threads(thread);
  for (Func& f : per_row) f.compute_at(out, thread);
  return capture_fixed(out, args, op == GpuRowOp::Softmax ? "gpu_softmax" : "gpu_layer_norm", target, name);
}

dsl::Result<GpuKernels> lower_gpu_global_pool(bool is_max, const TargetSpec& target, const std::string& name) {
  ImageParam x(Float(32), 2, "x");
  Param<float> count("count");
  Var row("row");
  RDom r(0, x.dim(0).extent(), "r");
  Func out("out");
  out(row) = is_max ? maximum(x(r, row)) : sum(x(r, row)) / count;
  Var block("block"), thread("thread");
  out.gpu_tile(row, block, thread, kRowsPerBlock, TailStrategy::GuardWithIf);
  std::vector<Argument> args = {x};
  if (!is_max) args.push_back(count);
  return capture_fixed(out, args, is_max ? "gpu_global_max_pool" : "gpu_global_average_pool", target, name);
}

dsl::Result<GpuKernels> lower_gpu_pool(const GpuPoolWindow& w, const TargetSpec& target, const std::string& name) {
  ImageParam x(Float(32), 3, "x");
  Param<int> top("pad_top"), left("pad_left"), bottom("pad_bottom"), right("pad_right");
  Var ox("ox"), oy("oy"), p("p");
  const Expr W = x.dim(0).extent(), H = x.dim(1).extent();
  Expr value = Expr(w.is_max ? -INFINITY : 0.0f), taps = Expr(0);
  // The window unrolled: kh x kw taps, each read where it lies inside the input.
  for (int ky = 0; ky < w.kh; ++ky)
    for (int kx = 0; kx < w.kw; ++kx) {
      Expr ix = ox * w.sw - left + kx * w.dw, iy = oy * w.sh - top + ky * w.dh;
      Expr inside = ix >= 0 && ix < W && iy >= 0 && iy < H;
      Expr v = x(clamp(ix, 0, W - 1), clamp(iy, 0, H - 1), p);
      value = w.is_max ? select(inside, max(value, v), value) : value + select(inside, v, 0.0f);
      Expr counted = w.count_include_pad ? (ix >= -left && ix < W + right && iy >= -top && iy < H + bottom) : inside;
      taps = taps + select(counted, 1, 0);
    }
  Func out("out");
  out(ox, oy, p) = w.is_max ? value : value / cast<float>(max(taps, 1));
  Var all("all"), block("block"), thread("thread");
  out.fuse(ox, oy, all).fuse(all, p, all).gpu_tile(all, block, thread, kBlockThreads, TailStrategy::GuardWithIf);
  return capture_fixed(out, {x, top, left, bottom, right}, w.is_max ? "gpu_max_pool" : "gpu_average_pool", target,
                       name);
}

dsl::Result<GpuKernels> lower_gpu_resize(bool nearest, const TargetSpec& target, const std::string& name) {
  dsl::ResizeDef r = dsl::define_resize(nearest, "out");
  one_thread_per_element(r.out, {r.ox, r.oy, r.p});
  const std::vector<ImageParam> params = r.params();
  return capture_fixed(r.out, std::vector<Argument>(params.begin(), params.end()),
                       nearest ? "gpu_resize_nearest" : "gpu_resize_linear", target, name);
}

}  // namespace tetra::schedules
