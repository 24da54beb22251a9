// The Halide backend's kernels for elementwise math, normalisation, pooling and softmax over
// float32 (float16 tensors are converted to float32 at the kernel boundary and back).
//
//   elementwise   unary activations and math, Clip, binary arithmetic with numpy broadcasting, and
//                 BatchNormalization as a per-channel affine x * s[c] + b[c]: one op -> Halide Expr
//                 table (op_table) and one broadcasting pipeline builder
//   pools         MaxPool / AveragePool (1-D and 2-D windows), GlobalAveragePool / GlobalMaxPool
//   rows          Softmax (last axis; before opset 13 the rank-2 coercion), LayerNormalization
//
// Data movement, Resize and the Reduce ops are in halide_data_movement.cpp. Every other node (integer
// types, ...) returns nullptr with the reason and runs on its reference kernel. A kernel asks its KernelSource for the code of a signature: the op, the
// attributes that change the code (a pool's window and strides, Gelu's approximation, which Clip
// bounds exist) and the broadcast pattern. Shapes, pads and float attributes are runtime
// buffers / parameters, so nodes of other sizes share the compiled code. The pipelines themselves
// are defined in elementwise_pipelines.cpp; this file needs no libHalide.
//
// Numerics: the target has strict_float (IEEE semantics; no reassociation or contraction behind our
// back, so infinities and NaN behave as in the reference). exp, log and erf are Halide's vectorized
// last-bit accurate versions; tanh is built on exp (libm's tanhf runs scalar, 12x slower); Pow calls
// libm's powf (Halide's pow loses up to ~1e-6 relative).
#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <optional>

#include "HalideBuffer.h"
#include "importer/error.h"
#include "runtime/halide_backend.h"
#include "runtime/halide_kernel.h"
#include "runtime/op_registry.h"
#include "runtime/ops/conv_core.h"

namespace tetra {
namespace {

// A dense float32 buffer over `data`, extents innermost first.
Halide::Runtime::Buffer<float> wrap(const float* data, const std::vector<int>& extents) {
  return Halide::Runtime::Buffer<float>(const_cast<float*>(data), extents);
}

// Calls the code with the input buffers, then the float and int parameters, then the output.
void call(const Node& node, const KernelCode& code, std::vector<Halide::Runtime::Buffer<float>>& inputs,
          std::vector<float> floats, std::vector<int> ints, Halide::Runtime::Buffer<float>& output) {
  std::vector<void*> argv;
  for (auto& in : inputs) argv.push_back(in.raw_buffer());
  for (float& f : floats) argv.push_back(&f);
  for (int& i : ints) argv.push_back(&i);
  argv.push_back(output.raw_buffer());
  dsl::Status st = dsl::call_pipeline(*code.pipeline, argv.data(), node.op_type);
  check(st.ok(), ErrorKind::Invalid,
        [&] { return node.label() + ": Halide kernel failed: " + (st.ok() ? "" : st.failure().describe()); });
}

// ---------------------------------------------------------------------------------------------
// Elementwise ops

// How the operands of a broadcast map onto the output, with adjacent dims that broadcast alike
// merged and size-1 output dims dropped: [N, C, H, W] + [C, 1, 1] becomes a 2-D loop (H*W, C) with
// the bias read at (0, c). Dims are innermost first, as in Halide.
struct BroadcastPlan {
  Shape out_shape;
  std::vector<int> out_extents;
  std::vector<std::vector<int>> extents;  // per operand; 1 where it is broadcast
  std::string pattern;                    // per dim, one char per operand: 'x' read along it, '1' broadcast

  static BroadcastPlan of(const Node& node, const std::vector<Shape>& shapes) {
    BroadcastPlan p;
    for (const Shape& s : shapes) p.out_shape = broadcast_shapes(node, p.out_shape, s);
    const size_t rank = p.out_shape.size(), n = shapes.size();
    p.extents.resize(n);
    std::string last;                  // the previous kept dim's pattern
    for (size_t d = rank; d-- > 0;) {  // innermost first
      int64_t extent = p.out_shape[d];
      if (extent == 1) continue;
      std::string dim_pattern;
      for (const Shape& s : shapes) {
        size_t offset = rank - s.size();
        dim_pattern += d >= offset && s[d - offset] == extent ? 'x' : '1';
      }
      if (dim_pattern == last) {  // merge into the previous (inner) dim
        p.out_extents.back() = to_int(int64_t(p.out_extents.back()) * extent, node);
        for (size_t k = 0; k < n; ++k)
          if (dim_pattern[k] == 'x') p.extents[k].back() = to_int(int64_t(p.extents[k].back()) * extent, node);
        continue;
      }
      p.out_extents.push_back(to_int(extent, node));
      for (size_t k = 0; k < n; ++k) p.extents[k].push_back(dim_pattern[k] == 'x' ? p.out_extents.back() : 1);
      p.pattern += (p.pattern.empty() ? "" : ",") + dim_pattern;
      last = dim_pattern;
    }
    if (p.out_extents.empty()) {  // a single element
      p.out_extents = {1};
      for (auto& e : p.extents) e = {1};
      p.pattern = std::string(n, 'x');
    }
    return p;
  }
  size_t rank() const { return out_extents.size(); }
};

// The operands and float attributes of one call.
struct ElementwiseArgs {
  std::vector<Tensor> operands;
  std::vector<float> floats;
};
using ArgsFn = std::function<ElementwiseArgs(const std::vector<Tensor>& inputs)>;

class ElementwiseKernel : public HalideKernel {
 public:
  ElementwiseKernel(const Node& node, KernelSource& source, std::string key, ArgsFn args)
      : HalideKernel(node, source), key_(std::move(key)), args_(std::move(args)) {}

  // Compiles now when the operand shapes are known, so that the first run does not pay for it.
  void prepare(const std::vector<Shape>& shapes) { plan_for(shapes); }

  std::vector<Tensor> run(const std::vector<Tensor>& inputs) override {
    ElementwiseArgs a = args_(inputs);
    std::vector<Shape> shapes;
    for (const Tensor& t : a.operands) shapes.push_back(t.shape());
    const Plan& plan = plan_for(shapes);
    Tensor y = places_.make(0, DType::Float32, plan.broadcast.out_shape);
    if (y.size() == 0) return {as_dtype(y, a.operands[0].dtype())};
    std::vector<std::vector<float>> storage(a.operands.size());
    std::vector<Halide::Runtime::Buffer<float>> buffers;
    for (size_t k = 0; k < a.operands.size(); ++k)
      buffers.push_back(wrap(float_data(a.operands[k], storage[k]), plan.broadcast.extents[k]));
    Halide::Runtime::Buffer<float> out = wrap(y.mutable_data<float>(), plan.broadcast.out_extents);
    call(node_, plan.code, buffers, a.floats, {}, out);
    return {as_dtype(y, a.operands[0].dtype())};
  }

 private:
  struct Plan {
    std::vector<Shape> shapes;
    BroadcastPlan broadcast;
    KernelCode code;
  };

  const Plan& plan_for(const std::vector<Shape>& shapes) {
    if (plan_.code.pipeline && plan_.shapes == shapes) return plan_;
    BroadcastPlan b = BroadcastPlan::of(node_, shapes);
    KernelRequest request;
    request.kind = KernelRequest::Kind::Elementwise;
    request.op = key_;
    request.pattern = b.pattern;
    plan_ = {shapes, b, code_for(request)};
    detail_ = key_ + " over " + std::to_string(b.rank()) + "-D [" + b.pattern + "] (dims innermost first; x: read, " +
              "1: broadcast), " + std::to_string(lanes()) + "-wide vectors, parallel";
    return plan_;
  }

  std::string key_;
  ArgsFn args_;
  Plan plan_;
};

// BatchNormalization's per-channel affine: s = scale / sqrt(var + eps), b = B - mean * s, in double,
// as tensors of shape [C, 1, ...] that broadcast against X [N, C, ...].
std::pair<Tensor, Tensor> fold_batch_norm(const std::vector<Tensor>& in, double epsilon, int64_t x_rank) {
  int64_t channels = in[1].size();
  Shape shape(std::max<int64_t>(1, x_rank - 1), 1);
  shape[0] = channels;
  Tensor s(DType::Float32, shape), b(DType::Float32, shape);
  for (int64_t c = 0; c < channels; ++c) {
    double scale = in[1].get(c) / std::sqrt(in[4].get(c) + epsilon);
    s.mutable_data<float>()[c] = static_cast<float>(scale);
    b.mutable_data<float>()[c] = static_cast<float>(in[2].get(c) - in[3].get(c) * scale);
  }
  return {s, b};
}

std::unique_ptr<NodeKernel> make_batch_norm(const Node& node, const Graph& graph, KernelSource& source,
                                            std::string* why_not) {
  for (size_t i = 1; i < node.outputs.size(); ++i)
    if (!node.outputs[i].empty()) return decline(why_not, "training-mode outputs run on the reference kernel");
  if (node.attr_flag("training_mode", false) || !node.attr_flag("spatial", true))
    return decline(why_not, "training mode / spatial=0 run on the reference kernel");
  std::optional<Shape> x = static_shape(graph, node.input(0));
  const ValueInfo* xv = graph.find_value(node.input(0));
  if (!xv || !xv->has_shape || xv->shape.size() < 2) return decline(why_not, "X's rank is unknown or below 2");
  for (size_t i = 1; i <= 4; ++i)
    if (!is_fp(dtype_of(graph, node.input(i)))) return decline(why_not, "parameters are not float");
  // Parameters must be [C]; anything else runs on the reference kernel, which reports it.
  const Dim& c = xv->shape[1];
  for (size_t i = 1; i <= 4; ++i) {
    const ValueInfo* p = graph.find_value(node.input(i));
    if (!p || !p->has_shape || p->shape.size() != 1 ||
        (c.known() && p->shape[0].known() && p->shape[0].value != c.value))
      return decline(why_not, "parameters are not of shape [C]");
  }
  int64_t rank = static_cast<int64_t>(xv->shape.size());
  double epsilon = node.attr_float("epsilon", 1e-5);
  bool constant = true;
  for (size_t i = 1; i <= 4; ++i) constant = constant && graph.is_constant(node.input(i));
  std::shared_ptr<std::pair<Tensor, Tensor>> folded;
  if (constant) {
    std::vector<Tensor> in{Tensor()};
    for (size_t i = 1; i <= 4; ++i) in.push_back(graph.initializers.at(node.input(i)));
    folded = std::make_shared<std::pair<Tensor, Tensor>>(fold_batch_norm(in, epsilon, rank));
  }
  auto kernel = std::make_unique<ElementwiseKernel>(node, source, "BatchNorm", [=, &node](const std::vector<Tensor>& in) {
    int64_t channels = in[0].rank() >= 2 ? in[0].shape()[1] : -1;
    for (size_t i = 1; i <= 4; ++i)
      check(in[i].shape() == Shape{channels}, ErrorKind::Invalid, [&] {
        return node.label() + ": BatchNormalization parameters must have shape [C] of X " + shape_str(in[0].shape());
      });
    std::pair<Tensor, Tensor> sb = folded ? *folded : fold_batch_norm(in, epsilon, in[0].rank());
    return ElementwiseArgs{{in[0], sb.first, sb.second}, {}};
  });
  if (x && folded) kernel->prepare({*x, folded->first.shape(), folded->second.shape()});
  return kernel;
}

// Clip with its bounds as runtime Params: the scalar inputs 1 and 2 (opset 11+) or the min/max
// attributes; an absent bound is left out of the code.
std::unique_ptr<NodeKernel> make_clip(const Node& node, const Graph& graph, KernelSource& source, std::string* why_not) {
  bool from_attrs = node.opset < 11;
  bool has_min = from_attrs ? node.has_attr("min") : node.has_input(1);
  bool has_max = from_attrs ? node.has_attr("max") : node.has_input(2);
  std::string key =
      std::string("Clip:") + (has_min ? "min" : "") + (has_min && has_max ? "," : "") + (has_max ? "max" : "");
  for (size_t i = 1; i <= 2 && !from_attrs; ++i)
    if (node.has_input(i) && dtype_of(graph, node.input(i)) != dtype_of(graph, node.input(0)))
      return decline(why_not, "Clip bounds of another type run on the reference kernel");
  auto kernel = std::make_unique<ElementwiseKernel>(node, source, key, [=, &node](const std::vector<Tensor>& in) {
    ElementwiseArgs a{{in[0]}, {}};
    auto bound = [&](size_t input, const char* attr) {
      if (from_attrs) return static_cast<float>(node.attr_float(attr, 0));
      check(in[input].size() == 1, ErrorKind::Invalid, [&] { return node.label() + ": min and max must be scalars"; });
      return static_cast<float>(in[input].get(0));
    };
    if (has_min) a.floats.push_back(bound(1, "min"));
    if (has_max) a.floats.push_back(bound(2, "max"));
    return a;
  });
  if (auto x = static_shape(graph, node.input(0))) kernel->prepare({*x});
  return kernel;
}

// Identity: the output shares the input's buffer, as the reference does; there is nothing to compile.
class IdentityKernel : public HalideKernel {
 public:
  IdentityKernel(const Node& node, KernelSource& source) : HalideKernel(node, source) {
    detail_ = "no code: the output shares the input";
  }
  std::vector<Tensor> run(const std::vector<Tensor>& inputs) override { return {inputs[0]}; }
};

std::unique_ptr<NodeKernel> make_elementwise(const Node& node, const Graph& graph, KernelSource& source,
                                             std::string* why_not) {
  const std::string& op = node.op_type;
  if (op == "BatchNormalization") return make_batch_norm(node, graph, source, why_not);
  if (op == "Clip") return make_clip(node, graph, source, why_not);
  if (op == "Identity") return std::make_unique<IdentityKernel>(node, source);
  std::string key = op;
  if (op == "Gelu") key += ":" + node.attr_string("approximate", "none");
  if ((op == "Min" || op == "Max") && node.inputs.size() != 2)
    return decline(why_not, op + " of " + std::to_string(node.inputs.size()) + " inputs runs on the reference kernel");
  if (op == "Pow" && graph.is_constant(node.input(1))) {
    // A scalar exponent of 2 (of a rank the output shape does not depend on).
    const Tensor& e = graph.initializers.at(node.input(1));
    const ValueInfo* base = graph.find_value(node.input(0));
    bool keeps_shape = e.rank() == 0 || (e.rank() == 1 && base && base->has_shape && !base->shape.empty());
    if (e.size() == 1 && keeps_shape && is_float(e.dtype()) && e.get(0) == 2.0) key = "Pow:square";
  }
  auto it = elementwise_ops().find(key);
  if (it == elementwise_ops().end()) return decline(why_not, "no Halide kernel for " + key);
  const ElementwiseArity& def = it->second;
  for (int i = 0; i < def.operands; ++i)
    if (dtype_of(graph, node.input(i)) != dtype_of(graph, node.input(0)))
      return decline(why_not, "operands of different types run on the reference kernel");

  std::vector<float> floats;
  if (op == "LeakyRelu") floats = {static_cast<float>(node.attr_float("alpha", 0.01))};
  if (op == "HardSigmoid")
    floats = {static_cast<float>(node.attr_float("alpha", 0.2)), static_cast<float>(node.attr_float("beta", 0.5))};
  int operands = def.operands;
  auto kernel = std::make_unique<ElementwiseKernel>(node, source, key, [=](const std::vector<Tensor>& in) {
    return ElementwiseArgs{std::vector<Tensor>(in.begin(), in.begin() + operands), floats};
  });
  std::vector<Shape> shapes;
  for (int i = 0; i < operands; ++i)
    if (auto s = static_shape(graph, node.input(i))) shapes.push_back(*s);
  if (static_cast<int>(shapes.size()) == operands) kernel->prepare(shapes);
  return kernel;
}


// ---------------------------------------------------------------------------------------------
// Row reductions: softmax and layer norm normalise rows; global pools reduce them.

// The input seen as rows of `n` contiguous elements.
struct Rows {
  int64_t n = 1, count = 1;
};

class RowKernel : public HalideKernel {
 public:
  enum class Kind { Softmax, LayerNorm, GlobalAverage, GlobalMax };
  // `axis`: the first normalised dim (softmax, layer norm).
  RowKernel(const Node& node, KernelSource& source, Kind kind, int64_t axis)
      : HalideKernel(node, source), kind_(kind), axis_(axis) {
    const char* names[] = {"softmax", "layer norm", "global average pool", "global max pool"};
    KernelRequest request;
    request.kind = kind == Kind::Softmax     ? KernelRequest::Kind::Softmax
                   : kind == Kind::LayerNorm ? KernelRequest::Kind::LayerNorm
                                             : KernelRequest::Kind::GlobalPool;
    request.flag = kind == Kind::LayerNorm ? node.has_input(2) : kind == Kind::GlobalMax;
    code_ = code_for(request);
    detail_ = std::string(names[int(kind)]) + " per row: " + std::to_string(lanes()) +
              "-lane vector reductions, rows in parallel";
  }

  std::vector<Tensor> run(const std::vector<Tensor>& inputs) override {
    const Tensor& x = inputs[0];
    Rows rows = rows_of(x.shape());
    bool global = kind_ == Kind::GlobalAverage || kind_ == Kind::GlobalMax;
    Shape out_shape = x.shape();
    if (global) std::fill(out_shape.begin() + 2, out_shape.end(), 1);
    Tensor y = places_.make(0, DType::Float32, out_shape);
    if (x.size() == 0 || y.size() == 0) return reference(inputs);
    std::vector<float> x_copy;
    std::vector<Halide::Runtime::Buffer<float>> buffers{
        wrap(float_data(x, x_copy), {to_int(rows.n, node_), to_int(rows.count, node_)})};
    std::vector<float> floats, param_storage[2];
    if (kind_ == Kind::LayerNorm) {
      // Scale and B broadcast onto the normalised dims, expanded to one value per row element.
      for (size_t k = 1; k <= 2; ++k) {
        if (k == 2 && inputs.size() < 3) break;
        const Tensor& t = inputs[k];
        if (t.empty()) break;
        Shape trailing(x.shape().begin() + axis_, x.shape().end());
        std::optional<Shape> within = within_rows(t.shape(), trailing);
        if (!within) return reference(inputs);
        if (t.dtype() == DType::Float32 && t.size() == rows.n) {  // already one value per row element
          buffers.push_back(wrap(t.data<float>(), {to_int(rows.n, node_)}));
          continue;
        }
        std::vector<int64_t> at = broadcast_index_map(*within, trailing);
        param_storage[k - 1].resize(rows.n);
        for (int64_t i = 0; i < rows.n; ++i) param_storage[k - 1][i] = static_cast<float>(t.get(at[i]));
        buffers.push_back(wrap(param_storage[k - 1].data(), {to_int(rows.n, node_)}));
      }
      floats.push_back(static_cast<float>(node_.attr_float("epsilon", 1e-5)));
    }
    Halide::Runtime::Buffer<float> out = global
                                    ? wrap(y.mutable_data<float>(), {to_int(rows.count, node_)})
                                    : wrap(y.mutable_data<float>(), {to_int(rows.n, node_), to_int(rows.count, node_)});
    call(node_, code_, buffers, floats, {}, out);
    return {as_dtype(y, x.dtype())};
  }

 private:
  Rows rows_of(const Shape& s) const {
    Rows r;
    int64_t first = kind_ == Kind::GlobalAverage || kind_ == Kind::GlobalMax ? 2 : axis_;
    for (int64_t d = 0; d < static_cast<int64_t>(s.size()); ++d) (d < first ? r.count : r.n) *= s[d];
    return r;
  }

  // `param`'s shape within a row when it broadcasts onto the normalised dims `trailing` and does not
  // vary along the rows (its leading dims, if any, are 1); nullopt otherwise.
  static std::optional<Shape> within_rows(const Shape& param, const Shape& trailing) {
    size_t extra = param.size() > trailing.size() ? param.size() - trailing.size() : 0;
    for (size_t d = 0; d < extra; ++d)
      if (param[d] != 1) return std::nullopt;
    Shape p(param.begin() + extra, param.end());
    for (size_t d = 0; d < p.size(); ++d)
      if (p[d] != 1 && p[d] != trailing[trailing.size() - p.size() + d]) return std::nullopt;
    return p;
  }

  Kind kind_;
  int64_t axis_;
  KernelCode code_;
};

std::unique_ptr<NodeKernel> make_row_kernel(const Node& node, const Graph& graph, KernelSource& source,
                                            std::string* why_not) {
  const ValueInfo* x = graph.find_value(node.input(0));
  if (!x || !x->has_shape) return decline(why_not, "the input's rank is unknown");
  int64_t rank = static_cast<int64_t>(x->shape.size());
  const std::string& op = node.op_type;
  RowKernel::Kind kind;
  int64_t axis = 0;
  if (op == "Softmax") {
    kind = RowKernel::Kind::Softmax;
    axis = node.attr_int("axis", node.opset < 13 ? 1 : -1);
    if (axis < -rank || axis >= std::max<int64_t>(rank, 1)) return decline(why_not, "axis out of range");
    if (axis < 0) axis += rank;
    // From opset 13 the softmax runs along `axis` alone; before, along all dims from `axis` on (the
    // rank-2 coercion), which is a last-axis softmax of the same memory.
    if (node.opset >= 13 && axis != rank - 1 && rank > 0)
      return decline(why_not, "Softmax over a non-last axis runs on the reference kernel");
  } else if (op == "LayerNormalization") {
    kind = RowKernel::Kind::LayerNorm;
    for (size_t i = 1; i < node.outputs.size(); ++i)
      if (!node.outputs[i].empty()) return decline(why_not, "the Mean / InvStdDev outputs run on the reference kernel");
    if (dtype_from_onnx(static_cast<int32_t>(node.attr_int("stash_type", 1))) != DType::Float32)
      return decline(why_not, "stash_type other than float32 runs on the reference kernel");
    axis = node.attr_int("axis", -1);
    if (axis < -rank || axis >= rank) return decline(why_not, "axis out of range");
    if (axis < 0) axis += rank;
    for (size_t i = 1; i <= 2; ++i)
      if (node.has_input(i) && dtype_of(graph, node.input(i)) != x->dtype)
        return decline(why_not, "Scale / B of another type run on the reference kernel");
  } else {
    kind = op == "GlobalMaxPool" ? RowKernel::Kind::GlobalMax : RowKernel::Kind::GlobalAverage;
    if (rank < 3) return decline(why_not, "input must be [N, C, spatial...]");
  }
  return std::make_unique<RowKernel>(node, source, kind, axis);
}


// ---------------------------------------------------------------------------------------------
// MaxPool, AveragePool: 1-D and 2-D windows

// A pool's geometry: Conv's rules for a one-channel kernel (auto_pad, pads, strides, dilations),
// then ceil_mode's extra windows, as the reference's pool_params.
ConvParams pool_geometry(const Node& node, const Shape& x) {
  std::vector<int64_t> kernel = node.attr_ints("kernel_shape");
  Shape x1{x[0], 1}, w{1, 1};
  x1.insert(x1.end(), x.begin() + 2, x.end());
  w.insert(w.end(), kernel.begin(), kernel.end());
  ConvParams p = conv_params(node, x1, w);
  p.in_channels = p.out_channels = x[1];
  if (node.attr_flag("ceil_mode", false) && node.attr_string("auto_pad", "NOTSET") == "NOTSET") {
    for (int64_t d = 0; d < p.spatial_rank; ++d) {
      int64_t span = (p.kernel[d] - 1) * p.dilations[d] + 1;
      int64_t rest = p.in_spatial[d] + p.pads_begin[d] + p.pads_end[d] - span;
      if (rest % p.strides[d] == 0) continue;
      int64_t out = rest / p.strides[d] + 2;  // a partial last window counts unless it starts in the end padding
      if ((out - 1) * p.strides[d] >= p.in_spatial[d] + p.pads_begin[d]) --out;
      p.out_spatial[d] = out;
    }
  }
  return p;
}

// Up to this many taps a window is unrolled into one expression (larger windows fall back).
constexpr int64_t kMaxPoolTaps = 64;

// Taps of each output position along one axis that the average divides by: those inside the input,
// plus those in the padding with count_include_pad (never those past it, from ceil_mode).
std::vector<float> window_counts(const ConvParams& g, int64_t d, bool count_pad) {
  int64_t in = g.in_spatial[d], lo = count_pad ? -g.pads_begin[d] : 0, hi = count_pad ? in + g.pads_end[d] : in;
  std::vector<float> counts(g.out_spatial[d]);
  for (int64_t o = 0; o < g.out_spatial[d]; ++o) {
    int64_t n = 0;
    for (int64_t k = 0; k < g.kernel[d]; ++k) {
      int64_t pos = o * g.strides[d] - g.pads_begin[d] + k * g.dilations[d];
      n += pos >= lo && pos < hi;
    }
    counts[o] = static_cast<float>(n);
  }
  return counts;
}

class PoolKernel : public HalideKernel {
 public:
  PoolKernel(const Node& node, KernelSource& source, const PoolWindow& window) : HalideKernel(node, source) {
    KernelRequest request;
    request.kind = KernelRequest::Kind::Pool;
    request.window = window;
    code_ = code_for(request);
    detail_ =
        window.signature() + ", unrolled, " + std::to_string(lanes()) + "-wide vectors along W, planes in parallel";
  }

  std::vector<Tensor> run(const std::vector<Tensor>& inputs) override {
    const Tensor& x = inputs[0];
    const Geometry& g = geometry_for(x.shape());
    Tensor y = places_.make(0, DType::Float32, g.out_shape);
    if (x.size() == 0 || y.size() == 0) return reference(inputs);
    std::vector<float> x_copy;
    std::vector<Halide::Runtime::Buffer<float>> buffers{wrap(float_data(x, x_copy), g.in_extents),
                                               wrap(g.count_h.data(), {int(g.count_h.size())}),
                                               wrap(g.count_w.data(), {int(g.count_w.size())})};
    Halide::Runtime::Buffer<float> out = wrap(y.mutable_data<float>(), g.out_extents);
    call(node_, code_, buffers, {}, g.pads, out);
    return {as_dtype(y, x.dtype())};
  }

 private:
  // The window geometry for one input shape, as the pipeline takes it (2-D; a 1-D pool has H = 1).
  struct Geometry {
    Shape in_shape, out_shape;
    std::vector<int> in_extents, out_extents;  // (W, H, planes)
    std::vector<int> pads;                     // begin pads, H and W
    std::vector<float> count_h, count_w;       // averaging divisors per output row / column
  };

  const Geometry& geometry_for(const Shape& x) {
    if (geometry_.in_shape == x && !x.empty()) return geometry_;
    ConvParams g = pool_geometry(node_, x);
    Geometry& r = geometry_;
    r.in_shape = x;
    r.out_shape = {g.batch, g.in_channels};
    r.out_shape.insert(r.out_shape.end(), g.out_spatial.begin(), g.out_spatial.end());
    if (g.spatial_rank == 1) {
      for (auto* v : {&g.in_spatial, &g.kernel, &g.out_spatial, &g.strides, &g.dilations}) v->insert(v->begin(), 1);
      g.pads_begin.insert(g.pads_begin.begin(), 0);
      g.pads_end.insert(g.pads_end.begin(), 0);
    }
    int planes = to_int(g.batch * g.in_channels, node_);
    r.in_extents = {to_int(g.in_spatial[1], node_), to_int(g.in_spatial[0], node_), planes};
    r.out_extents = {to_int(g.out_spatial[1], node_), to_int(g.out_spatial[0], node_), planes};
    r.pads = {int(g.pads_begin[0]), int(g.pads_begin[1])};
    bool count_pad = node_.attr_flag("count_include_pad", false);
    r.count_h = window_counts(g, 0, count_pad);
    r.count_w = window_counts(g, 1, count_pad);
    return r;
  }

  KernelCode code_;
  Geometry geometry_;
};

std::unique_ptr<NodeKernel> make_pool(const Node& node, const Graph& graph, KernelSource& source, std::string* why_not) {
  for (size_t i = 1; i < node.outputs.size(); ++i)
    if (!node.outputs[i].empty()) return decline(why_not, "the Indices output runs on the reference kernel");
  std::vector<int64_t> kernel = node.attr_ints("kernel_shape");
  size_t rank = kernel.size();
  if (rank != 1 && rank != 2) return decline(why_not, "only 1-D and 2-D pools have a Halide kernel");
  const ValueInfo* x = graph.find_value(node.input(0));
  if (!x || !x->has_shape || x->shape.size() != rank + 2)
    return decline(why_not, "the input's rank does not match kernel_shape");
  std::vector<int64_t> strides = node.attr_ints("strides", std::vector<int64_t>(rank, 1));
  std::vector<int64_t> dilations = node.attr_ints("dilations", std::vector<int64_t>(rank, 1));
  if (strides.size() != rank || dilations.size() != rank)
    return decline(why_not, "strides / dilations do not match kernel_shape");
  auto h = [&](const std::vector<int64_t>& v) { return rank == 2 ? int(v[0]) : 1; };
  auto w = [&](const std::vector<int64_t>& v) { return int(v.back()); };
  for (const auto* v : {&kernel, &strides, &dilations})
    for (int64_t e : *v)
      if (e < 1 || e > 1024) return decline(why_not, "kernel_shape, strides and dilations must be in [1, 1024]");
  if (h(kernel) * w(kernel) > kMaxPoolTaps)
    return decline(why_not,
                   "windows of more than " + std::to_string(kMaxPoolTaps) + " taps run on the reference kernel");
  PoolWindow window{
      node.op_type == "MaxPool", h(kernel), w(kernel), h(strides), w(strides), h(dilations), w(dilations)};
  return std::make_unique<PoolKernel>(node, source, window);
}

}  // namespace

const std::map<std::string, ElementwiseArity>& elementwise_ops() {
  // Keys are op types, with the attribute choices that change the code after a ':'.
  static const std::map<std::string, ElementwiseArity> table = {
      {"Relu", {1, 0}},      {"LeakyRelu", {1, 1}}, {"Sigmoid", {1, 0}},   {"Tanh", {1, 0}},
      {"HardSigmoid", {1, 2}}, {"HardSwish", {1, 0}}, {"Gelu:none", {1, 0}}, {"Gelu:tanh", {1, 0}},
      {"Erf", {1, 0}},       {"Sqrt", {1, 0}},      {"Exp", {1, 0}},       {"Log", {1, 0}},
      {"Neg", {1, 0}},       {"Abs", {1, 0}},       {"Reciprocal", {1, 0}}, {"Clip:", {1, 0}},
      {"Clip:min", {1, 1}},  {"Clip:max", {1, 1}},  {"Clip:min,max", {1, 2}}, {"Add", {2, 0}},
      {"Sub", {2, 0}},       {"Mul", {2, 0}},       {"Div", {2, 0}},       {"Pow", {2, 0}},
      {"Pow:square", {1, 0}}, {"Min", {2, 0}},      {"Max", {2, 0}},
      {"BatchNorm", {3, 0}},  // BatchNormalization with its parameters folded: x * s + b
  };
  return table;
}


std::unique_ptr<NodeKernel> make_halide_elementwise_kernel(const Node& node, const Graph& graph, KernelSource& source,
                                                           std::string* why_not) {
  if (!node.domain.empty()) return decline(why_not, "no Halide kernel for " + node.domain + "." + node.op_type);
  const std::string& op = node.op_type;
  if (is_data_movement(op)) return make_halide_data_movement_kernel(node, graph, source, why_not);
  DType t = node.inputs.empty() ? DType::Undefined : dtype_of(graph, node.input(0));
  if (!is_fp(t)) return decline(why_not, "input is " + dtype_name(t) + ", not float32/float16");
  try {
    if (op == "MaxPool" || op == "AveragePool") return make_pool(node, graph, source, why_not);
    if (op == "Softmax" || op == "LayerNormalization" || op == "GlobalAveragePool" || op == "GlobalMaxPool")
      return make_row_kernel(node, graph, source, why_not);
    return make_elementwise(node, graph, source, why_not);
  } catch (const Error& e) {
    // Attributes the reference rejects: let it report them when the node runs.
    *why_not = std::string("not compiled: ") + e.what();
    return nullptr;
  }
}

}  // namespace tetra
