#include "importer/int4_patterns.h"

#include <cmath>
#include <set>

#include "importer/error.h"

namespace tetra {
namespace {

struct Use {
  size_t node;
  size_t input;
};

// Who reads each value; graph outputs count as a use that no rewrite can absorb.
class UseMap {
 public:
  explicit UseMap(const Graph& g) {
    for (size_t k = 0; k < g.nodes.size(); ++k)
      for (size_t i = 0; i < g.nodes[k].inputs.size(); ++i)
        if (!g.nodes[k].inputs[i].empty()) uses_[g.nodes[k].inputs[i]].push_back({k, i});
    for (const ValueInfo& out : g.outputs) graph_outputs_.insert(out.name);
  }
  const std::vector<Use>& of(const std::string& v) const {
    static const std::vector<Use> none;
    auto it = uses_.find(v);
    return it == uses_.end() ? none : it->second;
  }
  bool only_use(const std::string& v, Use* use) const {
    if (graph_outputs_.count(v) || of(v).size() != 1) return false;
    *use = of(v)[0];
    return true;
  }
  bool is_graph_output(const std::string& v) const { return graph_outputs_.count(v) != 0; }

 private:
  std::map<std::string, std::vector<Use>> uses_;
  std::set<std::string> graph_outputs_;
};

const Tensor* constant(const Graph& g, const Node& n, size_t i) {
  if (!n.has_input(i)) return nullptr;
  auto it = g.initializers.find(n.input(i));
  return it == g.initializers.end() ? nullptr : &it->second;
}

bool is_op(const Node& n, const char* op) { return n.domain.empty() && n.op_type == op; }

// Builds the QuantizedWeight a DequantizeLinear node describes, if its inputs are constants of
// the right kinds; nullopt otherwise (the node then simply stays and is evaluated as it is).
std::optional<QuantizedWeight> weight_from_dq(const Graph& g, const Node& dq) {
  const Tensor* q = constant(g, dq, 0);
  const Tensor* scale = constant(g, dq, 1);
  if (!q || !scale || !is_int4(q->dtype()) || !is_float(scale->dtype()) || q->rank() == 0) return std::nullopt;
  if (dq.has_input(2) && !constant(g, dq, 2)) return std::nullopt;
  if (dq.has_attr("output_dtype") && dq.attr_int("output_dtype", 0) != static_cast<int64_t>(scale->dtype()))
    return std::nullopt;
  QuantizedWeight w;
  w.name = dq.input(0);
  w.pattern = "DequantizeLinear";
  w.data = *q;
  w.scale = *scale;
  if (dq.has_input(2)) w.zero_point = *constant(g, dq, 2);
  w.block_size = dq.attr_int("block_size", 0);
  bool scalar_scale = scale->size() == 1 && scale->rank() <= 1;
  if (scalar_scale && w.block_size == 0) {
    w.scale = scale->reshaped({});
    if (!w.zero_point.empty()) {
      if (w.zero_point.size() != 1) return std::nullopt;
      w.zero_point = w.zero_point.reshaped({});
    }
    return w;
  }
  int64_t rank = q->rank();
  int64_t axis = dq.attr_int("axis", 1);
  if (axis < -rank || axis >= rank) return std::nullopt;  // the op itself reports the error
  w.axis = axis < 0 ? axis + rank : axis;
  const Shape& s = q->shape();
  if (w.block_size == 0) {
    if (scale->shape() != Shape{s[w.axis]}) return std::nullopt;
  } else {
    Shape expect = s;
    expect[w.axis] = (s[w.axis] + w.block_size - 1) / w.block_size;
    if (scale->shape() != expect) return std::nullopt;
  }
  if (!w.zero_point.empty() && w.zero_point.shape() != scale->shape()) return std::nullopt;
  return w;
}

// Views the weight with another shape of the same element order. Quantization parameters follow
// when the quantized axis survives as one dimension with the same elements before it.
std::optional<QuantizedWeight> reshape_weight(const QuantizedWeight& w, const Shape& to) {
  if (num_elements(to) != w.data.size()) return std::nullopt;
  QuantizedWeight out = w;
  out.data = w.data.reshaped(to);
  if (w.scale.rank() == 0) return out;
  const Shape& from = w.data.shape();
  int64_t before = 1;
  for (int64_t d = 0; d < w.axis; ++d) before *= from[d];
  int64_t prefix = 1;
  for (size_t d = 0; d < to.size(); ++d) {
    if (prefix == before && to[d] == from[w.axis]) {
      out.axis = static_cast<int64_t>(d);
      if (w.block_size > 0) {
        Shape scale_shape = to;
        scale_shape[d] = w.scale.shape()[w.axis];
        out.scale = w.scale.reshaped(scale_shape);
        if (!w.zero_point.empty()) out.zero_point = w.zero_point.reshaped(scale_shape);
      }
      return out;
    }
    prefix *= to[d];
  }
  return std::nullopt;
}

// The ONNX Reshape target shape with 0 (copy) and -1 (infer) resolved, or nullopt.
std::optional<Shape> reshape_target(const Node& reshape, const Tensor& shape_input, const Shape& from) {
  bool allow_zero = reshape.attr_flag("allowzero", false);
  Shape to;
  int64_t known = 1, infer_at = -1;
  std::vector<int64_t> dims = shape_input.to_ints();
  for (size_t d = 0; d < dims.size(); ++d) {
    int64_t v = dims[d];
    if (v == 0 && !allow_zero) {
      if (d >= from.size()) return std::nullopt;
      v = from[d];
    }
    if (v == -1) {
      if (infer_at >= 0) return std::nullopt;
      infer_at = static_cast<int64_t>(d);
      to.push_back(1);
      continue;
    }
    if (v < 0) return std::nullopt;
    known *= v;
    to.push_back(v);
  }
  int64_t total = num_elements(from);
  if (infer_at >= 0) {
    if (known == 0 || total % known) return std::nullopt;
    to[infer_at] = total / known;
  }
  return to;
}

class Int4Fuser {
 public:
  explicit Int4Fuser(Graph& g) : g_(g) {}

  void run() {
    for (size_t k = 0; k < g_.nodes.size(); ++k)
      if (is_op(g_.nodes[k], "DequantizeLinear")) convert_fake_quant(k);
    for (size_t k = 0; k < g_.nodes.size(); ++k) {
      const Node& n = g_.nodes[k];
      if (is_op(n, "DequantizeLinear")) fuse_dq_consumers(k);
      else if (n.domain == "com.microsoft" && n.op_type == "MatMulNBits") fuse_matmul_nbits(k);
    }
    finish();
  }

 private:
  // QuantizeLinear(fp const) -> Clip(within the int4 range) -> DequantizeLinear becomes a
  // DequantizeLinear of a packed int4 constant, quantized once here.
  void convert_fake_quant(size_t dq_index) {
    UseMap uses(g_);
    Node& dq = g_.nodes[dq_index];
    const Node* clip = producer(dq.input(0));
    if (!clip || !is_op(*clip, "Clip")) return;
    const Node* q = producer(clip->input(0));
    if (!q || !is_op(*q, "QuantizeLinear")) return;
    Use use;
    if (!uses.only_use(clip->outputs[0], &use) || !uses.only_use(q->outputs[0], &use)) return;
    const Tensor* x = constant(g_, *q, 0);
    const Tensor* q_scale = constant(g_, *q, 1);
    const Tensor* q_zp = constant(g_, *q, 2);
    if (!x || !q_scale || !is_float(x->dtype()) || (q->has_input(2) && !q_zp)) return;
    DType q_type = q_zp ? q_zp->dtype() : DType::UInt8;
    if (q_type != DType::Int8 && q_type != DType::UInt8) return;
    // Clip bounds: attributes before opset 11, constant inputs after.
    double lo = dtype_min(q_type), hi = dtype_max(q_type);
    if (clip->opset < 11) {
      lo = clip->attr_float("min", lo);
      hi = clip->attr_float("max", hi);
    } else {
      const Tensor* tmin = constant(g_, *clip, 1);
      const Tensor* tmax = constant(g_, *clip, 2);
      if ((clip->has_input(1) && !tmin) || (clip->has_input(2) && !tmax)) return;
      if (tmin) lo = tmin->get(0);
      if (tmax) hi = tmax->get(0);
    }
    DType packed = q_type == DType::Int8 ? DType::Int4 : DType::UInt4;
    lo = std::max(lo, dtype_min(q_type));
    hi = std::min(hi, dtype_max(q_type));
    if (lo < dtype_min(packed) || hi > dtype_max(packed)) return;
    // The DequantizeLinear must undo exactly this quantization.
    if (!same_constant(*q, 1, dq, 1) || !same_constant(*q, 2, dq, 2) ||
        q->attr_int("axis", 1) != dq.attr_int("axis", 1) || q->attr_int("block_size", 0) != dq.attr_int("block_size", 0))
      return;

    QuantizedWeight params;  // only for its parameter indexing over x's shape
    params.data = Tensor(DType::Int4, x->shape());
    params.scale = *q_scale;
    params.block_size = q->attr_int("block_size", 0);
    if (q_scale->size() > 1 || params.block_size > 0) {
      int64_t axis = q->attr_int("axis", 1);
      if (axis < -x->rank() || axis >= x->rank()) return;
      params.axis = axis < 0 ? axis + x->rank() : axis;
    }
    Tensor zp4;
    if (q_zp) {
      zp4 = Tensor(packed, q_zp->shape());
      for (int64_t i = 0; i < q_zp->size(); ++i) {
        if (q_zp->get(i) < dtype_min(packed) || q_zp->get(i) > dtype_max(packed)) return;
        zp4.set_int(i, q_zp->get_int(i));
      }
    }
    Tensor codes(packed, x->shape());
    for (int64_t i = 0; i < x->size(); ++i) {
      int64_t p = params.param_index(i);
      double zp = q_zp ? q_zp->get(p) : 0.0;
      // x / scale in float32, as QuantizeLinear computes it, then round half to even and clamp.
      float ratio = static_cast<float>(x->get(i)) / static_cast<float>(q_scale->get(p));
      double v = std::nearbyint(static_cast<double>(ratio)) + zp;
      v = std::min(std::max(v, dtype_min(q_type)), dtype_max(q_type));
      codes.set_int(i, static_cast<int64_t>(std::min(std::max(v, lo), hi)));
    }
    std::string name = q->input(0) + "_int4";
    g_.initializers[name] = codes;
    dq.inputs[0] = name;
    if (q_zp) {
      g_.initializers[name + "_zero_point"] = zp4;
      dq.inputs[2] = name + "_zero_point";
    }
    fake_quant_.insert(name);
    dead_.insert(index_of(*clip));
    dead_.insert(index_of(*q));
  }

  // Follows each use of a DequantizeLinear's output through Transpose/Reshape to MatMul, Gemm or
  // Conv weights and fuses the ones it reaches.
  void fuse_dq_consumers(size_t dq_index) {
    const Node& dq = g_.nodes[dq_index];
    std::optional<QuantizedWeight> base = weight_from_dq(g_, dq);
    if (!base) return;
    if (fake_quant_.count(base->name)) base->pattern = "FakeQuant";
    UseMap uses(g_);
    if (uses.is_graph_output(dq.outputs[0])) return;
    auto shared = std::make_shared<QuantizedWeight>(*base);
    size_t fused = 0;
    for (Use use : uses.of(dq.outputs[0])) {
      QuantizedWeight w = *base;
      bool transposed = false;
      std::vector<size_t> path;
      while (true) {
        const Node& n = g_.nodes[use.node];
        if (is_op(n, "Transpose") && w.data.rank() == 2) {
          std::vector<int64_t> perm = n.attr_ints("perm", {1, 0});
          if (perm != std::vector<int64_t>{1, 0}) break;
          transposed = !transposed;
        } else if (is_op(n, "Reshape") && !transposed) {
          const Tensor* target = constant(g_, n, 1);
          std::optional<Shape> to = target ? reshape_target(n, *target, w.data.shape()) : std::nullopt;
          std::optional<QuantizedWeight> r = to ? reshape_weight(w, *to) : std::nullopt;
          if (!r) break;
          w = *r;
        } else {
          break;
        }
        path.push_back(use.node);
        if (!uses.only_use(n.outputs[0], &use)) break;
      }
      Node& consumer = g_.nodes[use.node];
      if (use.input != 1 || dead_.count(use.node)) continue;
      bool same = !transposed && w.data.shape() == base->data.shape();
      auto weight = same ? shared : std::make_shared<QuantizedWeight>(w);
      if ((is_op(consumer, "MatMul") || is_op(consumer, "Gemm")) && w.data.rank() == 2)
        make_qmatmul(consumer, weight, transposed);
      else if (is_op(consumer, "Conv") && !transposed && w.data.rank() >= 3)
        make_qconv(consumer, weight);
      else
        continue;
      for (size_t p : path) dead_.insert(p);
      ++fused;
    }
    if (fused == uses.of(dq.outputs[0]).size()) dead_.insert(dq_index);
  }

 public:
  void fuse_float_weights() {
    std::map<std::string, std::shared_ptr<QuantizedWeight>> weights;  // shared by every consumer
    for (Node& n : g_.nodes) {
      bool matmul = is_op(n, "MatMul") || is_op(n, "Gemm");
      if (!matmul && !is_op(n, "Conv")) continue;
      const Tensor* w = constant(g_, n, 1);
      if (!w || (w->dtype() != DType::Float32 && w->dtype() != DType::Float16) || constant(g_, n, 0)) continue;
      if (matmul ? w->rank() != 2 : w->rank() < 3) continue;
      std::shared_ptr<QuantizedWeight>& shared = weights[n.input(1)];
      if (!shared) {
        shared = std::make_shared<QuantizedWeight>();
        shared->name = n.input(1);
        shared->pattern = "Float";
        shared->data = *w;
      }
      if (matmul) make_qmatmul(n, shared, false);
      else make_qconv(n, shared);
    }
    finish();
  }

 private:
  void make_qmatmul(Node& n, std::shared_ptr<QuantizedWeight> w, bool transposed) {
    bool gemm = n.op_type == "Gemm";
    bool trans_b = transposed != (gemm && n.attr_flag("transB", false));
    Node fused;
    fused.name = n.name;
    fused.op_type = "QMatMul";
    fused.domain = "tetra";
    fused.opset = 1;
    fused.inputs = {n.input(0)};
    if (gemm && n.has_input(2)) fused.inputs.push_back(n.input(2));
    fused.outputs = n.outputs;
    fused.attrs["trans_b"] = int_attr(trans_b);
    if (gemm) {
      fused.attrs["trans_a"] = int_attr(n.attr_flag("transA", false));
      fused.attrs["alpha"] = float_attr(n.attr_float("alpha", 1.0));
      fused.attrs["beta"] = float_attr(n.attr_float("beta", 1.0));
    }
    fused.attrs["source_op"] = string_attr(n.op_type);
    fused.weight = std::move(w);
    n = std::move(fused);
  }

  void make_qconv(Node& n, std::shared_ptr<QuantizedWeight> w) {
    Node fused = n;
    fused.op_type = "QConv";
    fused.domain = "tetra";
    fused.opset = 1;
    fused.inputs = {n.input(0)};
    if (n.has_input(2)) fused.inputs.push_back(n.input(2));
    fused.attrs["source_op"] = string_attr("Conv");
    fused.weight = std::move(w);
    n = std::move(fused);
  }

  // MatMulNBits with constant 4-bit B, scales and (packed uint8) zero points becomes tetra.QMatMul
  // over a dense [N, K] uint4 weight: the per-row block padding is dropped, the packing stays 4-bit.
  void fuse_matmul_nbits(size_t index) {
    Node& n = g_.nodes[index];
    // g_idx and other bit widths stay with the op, which validates them.
    if (n.attr_int("bits", 4) != 4 || n.has_input(4)) return;
    const Tensor* b = constant(g_, n, 1);
    const Tensor* scales = constant(g_, n, 2);
    const Tensor* zps = constant(g_, n, 3);
    if (!b || !scales || (n.has_input(3) && !zps) || b->dtype() != DType::UInt8 || b->rank() != 3) return;
    if (zps && zps->dtype() != DType::UInt8) return;  // float zero points stay with the op
    int64_t K = n.attr_int("K", -1), N = n.attr_int("N", -1), block = n.attr_int("block_size", -1);
    if (K <= 0 || N <= 0 || block < 16 || (block & (block - 1))) return;
    int64_t blocks = (K + block - 1) / block;
    if (b->shape() != Shape{N, blocks, block / 2} || scales->size() != N * blocks) return;
    int64_t zp_row = (blocks + 1) / 2;
    if (zps && zps->size() != N * zp_row) return;

    auto w = std::make_shared<QuantizedWeight>();
    w->name = n.input(1);
    w->pattern = "MatMulNBits";
    w->data = Tensor(DType::UInt4, {N, K});
    const uint8_t* src = b->bytes();
    for (int64_t r = 0; r < N; ++r)
      for (int64_t k = 0; k < K; ++k)
        w->data.set_int(r * K + k, unpack_nibble(src + r * blocks * (block / 2), k, false));
    w->scale = scales->reshaped({N, blocks});
    w->zero_point = Tensor(DType::UInt4, {N, blocks});
    for (int64_t r = 0; r < N; ++r)
      for (int64_t j = 0; j < blocks; ++j)
        w->zero_point.set_int(r * blocks + j, zps ? unpack_nibble(zps->bytes() + r * zp_row, j, false) : 8);
    w->axis = 1;
    w->block_size = block;

    Node fused;
    fused.name = n.name;
    fused.op_type = "QMatMul";
    fused.domain = "tetra";
    fused.opset = 1;
    fused.inputs = {n.input(0)};
    if (n.has_input(5)) fused.inputs.push_back(n.input(5));
    fused.outputs = n.outputs;
    fused.attrs["trans_b"] = int_attr(1);
    fused.attrs["source_op"] = string_attr("MatMulNBits");
    fused.weight = std::move(w);
    n = std::move(fused);
  }

  bool same_constant(const Node& a, size_t ia, const Node& b, size_t ib) const {
    if (a.input(ia) == b.input(ib)) return true;
    const Tensor* ta = constant(g_, a, ia);
    const Tensor* tb = constant(g_, b, ib);
    if (!ta || !tb || ta->size() != tb->size()) return false;
    for (int64_t i = 0; i < ta->size(); ++i)
      if (ta->get(i) != tb->get(i)) return false;
    return true;
  }

  const Node* producer(const std::string& value) const {
    for (const Node& n : g_.nodes)
      for (const auto& o : n.outputs)
        if (o == value) return &n;
    return nullptr;
  }
  size_t index_of(const Node& n) const { return static_cast<size_t>(&n - g_.nodes.data()); }


  // Drops rewritten nodes and the initializers nothing reads any more.
  void finish() {
    std::vector<Node> kept;
    kept.reserve(g_.nodes.size());
    for (size_t k = 0; k < g_.nodes.size(); ++k)
      if (!dead_.count(k)) kept.push_back(std::move(g_.nodes[k]));
    g_.nodes = std::move(kept);
    std::set<std::string> read;
    for (const Node& n : g_.nodes) read.insert(n.inputs.begin(), n.inputs.end());
    for (const ValueInfo& o : g_.outputs) read.insert(o.name);
    for (auto it = g_.initializers.begin(); it != g_.initializers.end();)
      it = read.count(it->first) ? std::next(it) : g_.initializers.erase(it);
  }

  Graph& g_;
  std::set<size_t> dead_;
  std::set<std::string> fake_quant_;
};

}  // namespace

void fuse_int4_weights(Graph& graph) { Int4Fuser(graph).run(); }
void fuse_float_weights(Graph& graph) { Int4Fuser(graph).fuse_float_weights(); }

}  // namespace tetra
