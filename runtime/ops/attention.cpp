// tetra.Attention, the reference kernel: softmax(scale * A · B) · V along the last axis, for each index
// of the batch dims (the same in all three inputs), accumulated in double. importer/epilogue_fusion.h's
// fuse_attention puts it in place of MatMul -> Softmax -> MatMul; fold_attention_layouts makes its
// operands views of their inputs and its result transposed (runtime/ops/attention_layout.h).
#include <algorithm>
#include <cmath>

#include "runtime/ops/attention_layout.h"
#include "runtime/ops/op_util.h"

namespace tetra {
namespace {

// A [..., M, K], B [..., K, N], V [..., N, D] -> [..., M, D]; fails naming the node otherwise.
template <class S>
S attention_shape(const Node& node, const S& a, const S& b, const S& v) {
  op_check(a.size() >= 2 && a.size() == b.size() && a.size() == v.size(), node,
           "inputs must have one rank of at least 2");
  auto same = [](const auto& x, const auto& y) {
    if constexpr (std::is_same_v<S, Shape>) return x == y;
    else return !x.known() || !y.known() || x.value == y.value;
  };
  size_t r = a.size();
  for (size_t d = 0; d + 2 < r; ++d)
    op_check(same(a[d], b[d]) && same(a[d], v[d]), node, "batch dims differ");
  op_check(same(a[r - 1], b[r - 2]) && same(b[r - 1], v[r - 2]), node, "inner dims differ");
  S out = a;
  out[r - 1] = v[r - 1];
  return out;
}

std::vector<ValueInfo> attention_infer(const InferContext& ctx) {
  const ValueInfo &a = ctx.input(0), &b = ctx.input(1), &v = ctx.input(2);
  op_check(a.dtype == DType::Float32 && b.dtype == DType::Float32 && v.dtype == DType::Float32, ctx.node,
           "inputs must be float32");
  if (!a.has_shape || !b.has_shape || !v.has_shape) return {unknown_rank(a.dtype)};
  const AttentionLayout l = AttentionLayout::of(ctx.node, {a.shape.size(), b.shape.size(), v.shape.size()});
  SymbolicShape y = attention_shape(ctx.node, l.a.shape(a.shape), l.b.shape(b.shape), l.v.shape(v.shape));
  return {make_info(a.dtype, permuted(y, l.y_perm))};
}

// The operand that `view` makes of `base`, as a dense tensor; fails naming the node where the view
// holds an index past the base's extent.
Tensor gathered(const Node& node, const Tensor& base, const OperandView& view) {
  if (view.identity()) return base;
  for (size_t d = 0; d < view.fixed.size(); ++d)
    op_check(view.fixed[d] < base.shape()[d], node,
             "a view holds index " + std::to_string(view.fixed[d]) + " of dim " + std::to_string(d) + " of " +
                 shape_str(base.shape()));
  const Shape shape = view.shape(base.shape());
  const std::vector<int64_t> strides = view.strides(base.shape());
  Tensor out(DType::Float32, shape);
  const float* from = base.data<float>() + view.offset(base.shape());
  float* to = out.mutable_data<float>();
  std::vector<int64_t> idx(shape.size(), 0);
  for (int64_t i = 0; i < out.size(); ++i) {
    int64_t at = 0;
    for (size_t d = 0; d < shape.size(); ++d) at += idx[d] * strides[d];
    to[i] = from[at];
    for (size_t d = shape.size(); d-- > 0;)
      if (++idx[d] < shape[d])
        break;
      else
        idx[d] = 0;
  }
  return out;
}

// `y` transposed by `perm` (output dim i is y's dim perm[i]): the view of y that walks its dims so.
Tensor transposed(const Node& node, const Tensor& y, const std::vector<int64_t>& perm) {
  if (perm.empty()) return y;
  OperandView walk;
  walk.dims = perm;
  walk.fixed.assign(perm.size(), -1);
  return gathered(node, y, walk);
}

std::vector<Tensor> attention_compute(const Node& node, const std::vector<Tensor>& in) {
  const Tensor &a_in = input_required(node, in, 0), &b_in = input_required(node, in, 1),
               &v_in = input_required(node, in, 2);
  op_check(a_in.dtype() == DType::Float32 && b_in.dtype() == DType::Float32 && v_in.dtype() == DType::Float32, node,
           "inputs must be float32");
  const AttentionLayout l = AttentionLayout::of(node, {a_in.shape().size(), b_in.shape().size(), v_in.shape().size()});
  const Tensor a = gathered(node, a_in, l.a), b = gathered(node, b_in, l.b), v = gathered(node, v_in, l.v);
  Shape out_shape = attention_shape(node, a.shape(), b.shape(), v.shape());
  size_t r = out_shape.size();
  int64_t M = a.shape()[r - 2], K = a.shape()[r - 1], N = b.shape()[r - 1], D = v.shape()[r - 1];
  int64_t batch = 1;
  for (size_t d = 0; d + 2 < r; ++d) batch *= out_shape[d];
  Tensor y(DType::Float32, out_shape);
  const float *ad = a.data<float>(), *bd = b.data<float>(), *vd = v.data<float>();
  float* yd = y.mutable_data<float>();
  std::vector<double> p(static_cast<size_t>(N));
  for (int64_t i = 0; i < batch; ++i)
    for (int64_t m = 0; m < M; ++m) {
      double top = -INFINITY;
      for (int64_t n = 0; n < N; ++n) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k) s += double(ad[(i * M + m) * K + k]) * bd[(i * K + k) * N + n];
        p[n] = s * l.scale;
        top = std::max(top, s);
      }
      double sum = 0;
      for (double& x : p) sum += (x = std::exp(x - top));
      for (int64_t d = 0; d < D; ++d) {
        double o = 0;
        for (int64_t n = 0; n < N; ++n) o += p[n] * vd[(i * N + n) * D + d];
        yd[(i * M + m) * D + d] = static_cast<float>(o / sum);
      }
    }
  return {transposed(node, y, l.y_perm)};
}

}  // namespace

void register_attention(OpRegistry& r) { r.add(OpDef{"tetra", "Attention", attention_infer, attention_compute}); }

}  // namespace tetra
