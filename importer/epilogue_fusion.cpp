#include "importer/epilogue_fusion.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <set>

#include "importer/error.h"
#include "runtime/ops/attention_layout.h"
#include "runtime/ops/pad.h"

namespace tetra {
namespace {

const std::set<std::string> kActivations = {"Relu",    "LeakyRelu",   "Clip",      "Sigmoid",
                                            "Tanh",    "HardSigmoid", "HardSwish", "Gelu"};

bool is_activation(const Node& n) { return n.domain.empty() && kActivations.count(n.op_type); }

// A float ConvTranspose (a detector's or decoder's upsampling) takes an activation after it into its
// output stage; its bias and BatchNormalization are folded elsewhere (fold_conv_transpose_batchnorm).
bool is_conv_transpose(const Node& n) { return n.domain.empty() && n.op_type == "ConvTranspose"; }

// BatchNormalization `bn` (inference) as y * a + b per channel, a = gamma / sqrt(var + eps) and
// b = beta - mean * a, with an earlier bias folded in (b += old_bias * a); nullopt unless its four
// parameters are float constants of `channels` values.
std::optional<std::pair<std::vector<double>, std::vector<double>>> batchnorm_affine(
    const Graph& g, const Node& bn, int64_t channels, const Tensor* old_bias) {
  if (bn.inputs.size() < 5) return std::nullopt;
  std::vector<const Tensor*> p;
  for (size_t i = 1; i <= 4; ++i) {
    auto it = g.initializers.find(bn.inputs[i]);
    if (it == g.initializers.end() || it->second.size() != channels || !is_float(it->second.dtype())) return std::nullopt;
    p.push_back(&it->second);
  }
  double eps = bn.attr_float("epsilon", 1e-5);
  std::vector<double> a(channels), b(channels);
  for (int64_t m = 0; m < channels; ++m) {
    a[m] = p[0]->get(m) / std::sqrt(p[3]->get(m) + eps);
    b[m] = p[1]->get(m) - p[2]->get(m) * a[m] + (old_bias ? old_bias->get(m) * a[m] : 0.0);
  }
  return std::make_pair(std::move(a), std::move(b));
}

class EpilogueFuser {
 public:
  explicit EpilogueFuser(Graph& g) : g_(g) {
    for (size_t k = 0; k < g_.nodes.size(); ++k)
      for (const std::string& o : g_.nodes[k].outputs) producer_[o] = k;
    for (const ValueInfo& o : g_.outputs) graph_outputs_.insert(o.name);
  }

  void run() {
    for (size_t k = 0; k < g_.nodes.size(); ++k) {
      Node& n = g_.nodes[k];
      if (!(n.domain == "tetra" && n.weight) && !is_conv_transpose(n)) continue;
      if (dead_.count(k)) continue;
      while (absorb_next(k)) {
      }
    }
    std::vector<Node> kept;
    kept.reserve(g_.nodes.size());
    for (size_t k = 0; k < g_.nodes.size(); ++k)
      if (!dead_.count(k)) kept.push_back(std::move(g_.nodes[k]));
    g_.nodes = std::move(kept);
  }

 private:
  // The one node reading `value`, unless the value is a graph output or read more than once.
  std::optional<size_t> only_consumer(const std::string& value) const {
    if (graph_outputs_.count(value)) return std::nullopt;
    std::optional<size_t> found;
    for (size_t k = 0; k < g_.nodes.size(); ++k) {
      if (dead_.count(k)) continue;
      for (const std::string& in : g_.nodes[k].inputs) {
        if (in != value) continue;
        if (found && *found != k) return std::nullopt;
        if (found) return std::nullopt;  // read twice by the same node
        found = k;
      }
    }
    return found;
  }

  const Tensor* constant(const std::string& name) const {
    auto it = g_.initializers.find(name);
    return it == g_.initializers.end() ? nullptr : &it->second;
  }

  std::optional<SymbolicShape> shape_of(const std::string& name) const {
    const ValueInfo* v = g_.find_value(name);
    if (!v || !v->has_shape) return std::nullopt;
    return v->shape;
  }

  // Same shape for every input binding: equal known dims, or the same named dynamic dim.
  static bool same_shape(const SymbolicShape& a, const SymbolicShape& b) {
    if (a.size() != b.size()) return false;
    for (size_t d = 0; d < a.size(); ++d) {
      bool equal = a[d].known() ? b[d].known() && a[d].value == b[d].value : !a[d].symbol.empty() && a[d].symbol == b[d].symbol;
      if (!equal) return false;
    }
    return true;
  }

  // Available before node k runs: a graph input, an initializer, or an earlier node's output.
  bool available_before(const std::string& name, size_t k) const {
    auto it = producer_.find(name);
    return it == producer_.end() || it->second < k;
  }

  int64_t out_channels(const Node& n) const {
    const Shape& s = n.weight->shape();
    if (n.op_type == "QConv") return s[0];
    return n.attr_flag("trans_b", false) ? s[0] : s[1];
  }

  // A constant that adds one value per output column (QMatMul) or channel (QConv), as [C].
  std::optional<Tensor> as_bias(const Node& n, const Tensor& c, const SymbolicShape& y) const {
    int64_t C = out_channels(n);
    if (c.size() != C || c.rank() > static_cast<int64_t>(y.size()) || !is_float(c.dtype())) return std::nullopt;
    // The broadcast axis: the last for QMatMul, axis 1 for QConv; every other dim of c must be 1.
    int64_t axis = n.op_type == "QConv" ? 1 : static_cast<int64_t>(y.size()) - 1;
    int64_t offset = static_cast<int64_t>(y.size()) - c.rank();
    for (int64_t d = 0; d < c.rank(); ++d)
      if (c.shape()[d] != (d + offset == axis ? C : 1)) return std::nullopt;
    if (C == 1 && y[axis].value != 1) return std::nullopt;
    return c.reshaped({C});
  }

  bool absorb_next(size_t k) {
    Node& n = g_.nodes[k];
    std::optional<size_t> next = only_consumer(n.outputs[0]);
    if (!next) return false;
    Node& c = g_.nodes[*next];
    std::optional<SymbolicShape> y = shape_of(n.outputs[0]);
    if (!y || c.outputs.empty()) return false;
    bool absorbed = false;
    if (is_conv_transpose(n))
      absorbed = is_activation(c) && c.outputs.size() == 1 && absorb_activation(n, c, k);
    else if (c.domain.empty() && c.op_type == "BatchNormalization")
      absorbed = fold_batchnorm(n, c);
    else if (c.domain.empty() && c.op_type == "Add" && c.inputs.size() == 2) absorbed = absorb_add(n, c, *y, k);
    else if (is_activation(c) && c.outputs.size() == 1) absorbed = absorb_activation(n, c, k);
    if (!absorbed) return false;
    n.outputs[0] = c.outputs[0];
    dead_.insert(*next);
    return true;
  }

  bool absorb_add(Node& n, const Node& add, const SymbolicShape& y, size_t k) {
    const std::string& other = add.inputs[0] == n.outputs[0] ? add.inputs[1] : add.inputs[0];
    if (other == n.outputs[0]) return false;
    const Tensor* c = constant(other);
    if (c && !n.has_input(1) && n.epilogue.empty()) {
      std::optional<Tensor> bias = as_bias(n, *c, y);
      if (!bias) return false;
      std::string name = n.name + "_fused_bias";
      g_.initializers[name] = *bias;
      set_input(n, 1, name);
      if (n.has_attr("beta")) n.attrs["beta"].f = 1.0;  // Gemm's beta scaled its own C, not this Add
      return true;
    }
    std::optional<SymbolicShape> r = shape_of(other);
    if (!r || !same_shape(*r, y) || !available_before(other, k)) return false;
    for (const Node& step : n.epilogue)
      if (step.op_type == "Add") return false;  // one residual per kernel
    Node step = add;
    step.inputs = {"", other};
    append_step(n, std::move(step));
    return true;
  }

  bool absorb_activation(Node& n, const Node& act, size_t k) {
    for (const Node& step : n.epilogue)
      if (step.op_type != "Add") return false;  // one activation, after any residual
    for (size_t i = 1; i < act.inputs.size(); ++i)
      if (!act.inputs[i].empty() && !available_before(act.inputs[i], k)) return false;
    Node step = act;
    step.inputs[0] = "";
    append_step(n, std::move(step));
    return true;
  }

  // y * a + b per output channel, with a = gamma / sqrt(var + eps), b = beta - mean * a, folded into
  // the scales (float32 only) and the bias. Codes and zero points are untouched: still int4. A float
  // weight takes a into its values (as float32).
  bool fold_batchnorm(Node& n, const Node& bn) {
    if (n.op_type != "QConv" || !n.epilogue.empty() || bn.outputs.size() != 1 || bn.inputs.size() < 5) return false;
    const QuantizedWeight& w = *n.weight;
    int64_t M = w.shape()[0];
    if (!w.is_float() && w.scale.dtype() != DType::Float32) return false;
    const Tensor* old_bias = n.has_input(1) ? constant(n.input(1)) : nullptr;
    if (n.has_input(1) && !old_bias) return false;
    bool per_tensor = w.scale.rank() == 0 || (w.scale.size() == 1 && w.block_size == 0);
    if (!per_tensor && w.axis != 0 && !(w.block_size > 0 && w.axis == 1)) return false;
    auto affine = batchnorm_affine(g_, bn, M, old_bias);
    if (!affine) return false;
    const std::vector<double>& a = affine->first;
    const std::vector<double>& b = affine->second;
    auto folded = std::make_shared<QuantizedWeight>(w);
    if (w.is_float()) {
      folded->data = Tensor(DType::Float32, w.shape());
      int64_t per_m = w.data.size() / M;
      float* v = folded->data.mutable_data<float>();
      for (int64_t i = 0; i < w.data.size(); ++i) v[i] = static_cast<float>(w.data.get(i) * a[i / per_m]);
    } else if (per_tensor) {
      folded->scale = Tensor(DType::Float32, {M});
      for (int64_t m = 0; m < M; ++m) folded->scale.set(m, w.scale.get(0) * a[m]);
      folded->axis = 0;
      if (!w.zero_point.empty()) {
        folded->zero_point = Tensor(w.zero_point.dtype(), {M});
        for (int64_t m = 0; m < M; ++m) folded->zero_point.set_int(m, w.zero_point.get_int(0));
      }
    } else {
      folded->scale = Tensor(DType::Float32, w.scale.shape());
      int64_t per_m = w.scale.size() / M;  // [M] or blocked [M, G, kh, kw]
      for (int64_t i = 0; i < w.scale.size(); ++i) folded->scale.set(i, w.scale.get(i) * a[i / per_m]);
    }
    n.weight = folded;
    std::string bias_name = n.name + "_folded_bias";
    g_.initializers[bias_name] = Tensor::from_doubles(DType::Float32, {M}, b);
    set_input(n, 1, bias_name);
    return true;
  }

  static void set_input(Node& n, size_t i, const std::string& name) {
    if (n.inputs.size() <= i) n.inputs.resize(i + 1);
    n.inputs[i] = name;
  }

  static void append_step(Node& n, Node step) {
    if (n.inputs.size() < 2) n.inputs.resize(2);  // index 1 stays the (possibly omitted) bias
    for (size_t i = 1; i < step.inputs.size(); ++i)
      if (!step.inputs[i].empty()) n.inputs.push_back(step.inputs[i]);
    n.epilogue.push_back(std::move(step));
  }

  Graph& g_;
  std::map<std::string, size_t> producer_;
  std::set<std::string> graph_outputs_;
  std::set<size_t> dead_;
};

// The number of elements of `name` when its shape is known.
std::optional<int64_t> known_size(const Graph& g, const std::string& name) {
  const ValueInfo* v = g.find_value(name);
  if (!v || !v->has_shape) return std::nullopt;
  int64_t n = 1;
  for (const Dim& d : v->shape) {
    if (!d.known()) return std::nullopt;
    n *= d.value;
  }
  return n;
}

}  // namespace

namespace {
// Whether any node is the ai.onnx `op`: the rewrites below index the graph only when it is worth it.
bool has_op(const Graph& g, const char* op) {
  return std::any_of(g.nodes.begin(), g.nodes.end(), [&](const Node& n) { return n.domain.empty() && n.op_type == op; });
}

// Which nodes read and which node makes each value, for the rewrites below.
struct ValueUses {
  explicit ValueUses(const Graph& g) {
    for (size_t k = 0; k < g.nodes.size(); ++k) {
      for (const std::string& in : g.nodes[k].inputs) readers[in].push_back(k);
      for (const std::string& out : g.nodes[k].outputs) producer[out] = k;
    }
    for (const ValueInfo& o : g.outputs) graph_outputs.insert(o.name);
  }
  // Read by one node and not a graph output: a rewrite may fold it away.
  bool single_use(const std::string& value) const {
    auto r = readers.find(value);
    return !graph_outputs.count(value) && r != readers.end() && r->second.size() == 1;
  }
  std::map<std::string, std::vector<size_t>> readers;
  std::map<std::string, size_t> producer;
  std::set<std::string> graph_outputs;
};

// The graph without the nodes at `removed`, in order.
void erase_nodes(Graph& g, const std::set<size_t>& removed) {
  std::vector<Node> kept;
  kept.reserve(g.nodes.size());
  for (size_t k = 0; k < g.nodes.size(); ++k)
    if (!removed.count(k)) kept.push_back(std::move(g.nodes[k]));
  g.nodes = std::move(kept);
}

// The value of a one-element float constant.
std::optional<double> scalar_float_constant(const Graph& g, const std::string& name) {
  auto it = g.initializers.find(name);
  if (it == g.initializers.end() || it->second.size() != 1 || !is_float(it->second.dtype())) return std::nullopt;
  return it->second.get(0);
}

// The shape of a float32 value whose dims are all known.
std::optional<Shape> known_float32_shape(const Graph& g, const std::string& value) {
  const ValueInfo* v = g.find_value(value);
  if (!v || v->dtype != DType::Float32 || !v->has_shape || !fully_known(v->shape)) return std::nullopt;
  return to_shape(v->shape);
}

}  // namespace

int hoist_matmul_scales(Graph& g) {
  if (!has_op(g, "MatMul")) return 0;
  const ValueUses uses(g);
  auto scalar_constant = [&](const std::string& name) { return scalar_float_constant(g, name).has_value(); };

  std::set<size_t> removed;
  std::map<size_t, Node> inserted_before;  // the operand's scaling, placed before its MatMul
  for (size_t k = 0; k < g.nodes.size(); ++k) {
    const Node& mm = g.nodes[k];
    if (!mm.domain.empty() || mm.op_type != "MatMul" || mm.inputs.size() != 2 || mm.outputs.size() != 1) continue;
    if (g.initializers.count(mm.inputs[0]) || g.initializers.count(mm.inputs[1])) continue;  // a weight
    const std::string& y = mm.outputs[0];
    if (!uses.single_use(y)) continue;
    size_t s = uses.readers.at(y)[0];
    const Node& scale = g.nodes[s];
    if (!scale.domain.empty() || scale.inputs.size() != 2 || scale.outputs.size() != 1 || removed.count(s)) continue;
    bool is_mul = scale.op_type == "Mul", is_div = scale.op_type == "Div";
    if (!(is_mul || is_div) || scale.inputs[0] == scale.inputs[1]) continue;
    size_t y_slot = scale.inputs[0] == y ? 0 : 1;
    const std::string& c = scale.inputs[1 - y_slot];
    if ((is_div && y_slot != 0) || !scalar_constant(c)) continue;
    // Only a scalar that cannot change the result's shape or type: a rank-0 or [1] constant of the
    // operands' float type broadcasts to the MatMul's own shape.
    const ValueInfo* yv = g.find_value(y);
    const Tensor& ct = g.initializers.at(c);
    if (!yv || !yv->has_shape || yv->shape.empty() || yv->dtype != ct.dtype() || ct.rank() > 1) continue;

    std::optional<int64_t> n0 = known_size(g, mm.inputs[0]), n1 = known_size(g, mm.inputs[1]);
    size_t operand = n0 && n1 && *n1 < *n0 ? 1 : 0;
    Node step = scale;
    step.name = scale.name + "_on_operand";
    step.inputs = {mm.inputs[operand], c};
    step.outputs = {mm.inputs[operand] + "_scaled_by_" + scale.name};
    g.nodes[k].inputs[operand] = step.outputs[0];
    g.nodes[k].outputs[0] = scale.outputs[0];
    inserted_before[k] = std::move(step);
    removed.insert(s);
  }
  if (removed.empty()) return 0;
  std::vector<Node> nodes;
  nodes.reserve(g.nodes.size() + inserted_before.size());
  for (size_t k = 0; k < g.nodes.size(); ++k) {
    auto it = inserted_before.find(k);
    if (it != inserted_before.end()) nodes.push_back(std::move(it->second));
    if (!removed.count(k)) nodes.push_back(std::move(g.nodes[k]));
  }
  g.nodes = std::move(nodes);
  return static_cast<int>(removed.size());
}

int fold_conv_transpose_batchnorms(Graph& g) {
  if (!has_op(g, "ConvTranspose") || !has_op(g, "BatchNormalization")) return 0;
  const ValueUses uses(g);
  auto constant = [&](const std::string& name) -> const Tensor* {
    auto it = g.initializers.find(name);
    return it == g.initializers.end() ? nullptr : &it->second;
  };

  std::set<size_t> removed;
  for (size_t k = 0; k < g.nodes.size(); ++k) {
    const Node& bn = g.nodes[k];
    if (!bn.domain.empty() || bn.op_type != "BatchNormalization" || bn.inputs.size() < 5 || bn.outputs.size() != 1 ||
        bn.attr_int("training_mode", 0) != 0 || !uses.single_use(bn.inputs[0]) || !uses.producer.count(bn.inputs[0]))
      continue;
    Node& ct = g.nodes[uses.producer.at(bn.inputs[0])];
    if (!ct.domain.empty() || ct.op_type != "ConvTranspose" || ct.attr_int("group", 1) != 1 || ct.outputs.size() != 1 ||
        !ct.epilogue.empty())
      continue;
    const Tensor* w = constant(ct.input(1));
    const Tensor* old_bias = ct.has_input(2) ? constant(ct.input(2)) : nullptr;
    if (!w || !is_float(w->dtype()) || w->rank() < 3 || (ct.has_input(2) && !old_bias)) continue;
    int64_t M = w->shape()[1];
    auto affine = batchnorm_affine(g, bn, M, old_bias);
    if (!affine) continue;
    const auto& [a, b] = *affine;
    Tensor folded(w->dtype(), w->shape());
    int64_t taps = w->size() / (w->shape()[0] * M);  // [C, M, k...]: output channel m is (i / taps) % M
    for (int64_t i = 0; i < w->size(); ++i) folded.set(i, w->get(i) * a[(i / taps) % M]);
    std::string weight_name = ct.name + "_bn_folded_weight", bias_name = ct.name + "_bn_folded_bias";
    g.initializers[weight_name] = folded;
    g.initializers[bias_name] = Tensor::from_doubles(w->dtype(), {M}, b);
    ct.inputs.resize(3);
    ct.inputs[1] = weight_name;
    ct.inputs[2] = bias_name;
    ct.outputs[0] = bn.outputs[0];
    removed.insert(k);
  }
  erase_nodes(g, removed);
  return static_cast<int>(removed.size());
}

int fold_pads_into_convs(Graph& g) {
  if (!has_op(g, "Pad")) return 0;
  const ValueUses uses(g);

  std::set<size_t> removed;
  for (Node& conv : g.nodes) {
    bool is_conv = (conv.domain.empty() && conv.op_type == "Conv") || (conv.domain == "tetra" && conv.op_type == "QConv");
    if (!is_conv || conv.inputs.empty() || conv.attr_string("auto_pad", "NOTSET") != "NOTSET") continue;
    const std::string& padded = conv.inputs[0];
    auto p = uses.producer.find(padded);
    if (p == uses.producer.end() || removed.count(p->second) || !uses.single_use(padded)) continue;
    const Node& pad = g.nodes[p->second];
    const ValueInfo* x = pad.inputs.empty() ? nullptr : g.find_value(pad.inputs[0]);
    if (!pad.domain.empty() || pad.op_type != "Pad" || !x || !x->has_shape || x->shape.size() < 3) continue;
    int64_t rank = static_cast<int64_t>(x->shape.size()), spatial = rank - 2;
    std::optional<PadArgs> a;
    try {
      a = pad_args(pad, g, rank);
    } catch (const Error&) {
      continue;  // a malformed Pad stays, to fail with its own error when it runs
    }
    if (!a || a->mode != "constant" || a->value != 0) continue;
    bool spatial_only = a->begin[0] == 0 && a->end[0] == 0 && a->begin[1] == 0 && a->end[1] == 0;
    for (int64_t d = 2; d < rank; ++d) spatial_only = spatial_only && a->begin[d] >= 0 && a->end[d] >= 0;
    if (!spatial_only) continue;
    std::vector<int64_t> pads = conv.attr_ints("pads", std::vector<int64_t>(size_t(2 * spatial), 0));
    if (static_cast<int64_t>(pads.size()) != 2 * spatial) continue;
    for (int64_t d = 0; d < spatial; ++d) {
      pads[size_t(d)] += a->begin[size_t(d + 2)];
      pads[size_t(d + spatial)] += a->end[size_t(d + 2)];
    }
    conv.attrs["pads"] = ints_attr(pads);
    conv.inputs[0] = pad.inputs[0];
    removed.insert(p->second);
  }
  erase_nodes(g, removed);
  return static_cast<int>(removed.size());
}

int fuse_attention(Graph& g) {
  if (!has_op(g, "Softmax") || !has_op(g, "MatMul")) return 0;
  const ValueUses uses(g);
  // The node making `value` when it is an ai.onnx `op` read by one node only and not a graph output.
  auto inner = [&](const std::string& value, const char* op) -> const Node* {
    auto p = uses.producer.find(value);
    if (p == uses.producer.end() || !uses.single_use(value)) return nullptr;
    const Node& n = g.nodes[p->second];
    return n.domain.empty() && n.op_type == op && n.outputs.size() == 1 ? &n : nullptr;
  };
  auto float_shape = [&](const std::string& value) { return known_float32_shape(g, value); };

  std::set<size_t> removed;
  for (Node& pv : g.nodes) {
    if (!pv.domain.empty() || pv.op_type != "MatMul" || pv.inputs.size() != 2 || pv.outputs.size() != 1) continue;
    const Node* softmax = inner(pv.inputs[0], "Softmax");
    const Node* scores = softmax ? inner(softmax->inputs[0], "MatMul") : nullptr;
    if (!scores || scores->inputs.size() != 2) continue;
    std::optional<Shape> a = float_shape(scores->inputs[0]), b = float_shape(scores->inputs[1]);
    std::optional<Shape> v = float_shape(pv.inputs[1]);
    if (!a || !b || !v || a->size() < 2 || b->size() != a->size() || v->size() != a->size()) continue;
    size_t r = a->size();
    // The softmax's rows are the scores' last axis: opset 13's axis, or the older 2-D coercion at
    // the last axis.
    int64_t axis = softmax->attr_int("axis", softmax->opset < 13 ? 1 : -1);
    if (axis != -1 && axis != int64_t(r) - 1) continue;
    if (!std::equal(a->begin(), a->end() - 2, b->begin()) || !std::equal(a->begin(), a->end() - 2, v->begin()) ||
        (*a)[r - 1] != (*b)[r - 2] || (*b)[r - 1] != (*v)[r - 2])
      continue;  // broadcast batch dims stay on the MatMul kernels
    Node fused;
    fused.name = pv.name + "_attention";
    fused.op_type = "Attention";
    fused.domain = "tetra";
    fused.opset = 1;
    fused.inputs = {scores->inputs[0], scores->inputs[1], pv.inputs[1]};
    fused.outputs = pv.outputs;
    removed.insert(uses.producer.at(softmax->outputs[0]));
    removed.insert(uses.producer.at(scores->outputs[0]));
    pv = std::move(fused);
  }
  erase_nodes(g, removed);
  return static_cast<int>(removed.size() / 2);
}

int fold_attention_layouts(Graph& g) {
  if (!std::any_of(g.nodes.begin(), g.nodes.end(),
                   [](const Node& n) { return n.domain == "tetra" && n.op_type == "Attention"; }))
    return 0;
  ValueUses uses(g);
  auto known = [&](const std::string& value) { return known_float32_shape(g, value); };
  // A rank-0 integer constant: the one index of a Gather that drops its axis.
  auto scalar_index = [&](const std::string& value) -> std::optional<int64_t> {
    auto it = g.initializers.find(value);
    if (it == g.initializers.end() || it->second.rank() != 0 ||
        (it->second.dtype() != DType::Int64 && it->second.dtype() != DType::Int32))
      return std::nullopt;
    return it->second.get_int(0);
  };

  std::set<size_t> walked_nodes;  // copies some attention now reads past; removed below when unread
  std::set<size_t> removed;       // the Transposes that attention results are now written as
  for (size_t k = 0; k < g.nodes.size(); ++k) {
    Node& att = g.nodes[k];
    if (att.domain != "tetra" || att.op_type != "Attention" || att.inputs.size() != 3 || att.outputs.size() != 1 ||
        !AttentionLayout::of(att, {}).plain())
      continue;
    AttentionLayout layout;
    // A scalar Mul or Div of Q or K (hoist_matmul_scales's) scales the scores in the kernel.
    for (size_t slot = 0; slot < 2; ++slot) {
      auto p = uses.producer.find(att.inputs[slot]);
      if (p == uses.producer.end()) continue;
      const Node& n = g.nodes[p->second];
      if (!n.domain.empty() || (n.op_type != "Mul" && n.op_type != "Div") || n.inputs.size() != 2 ||
          n.outputs.size() != 1 || !known(n.inputs[0]) || !known(n.inputs[1]))
        continue;
      auto scalar = [&](const std::string& value) { return scalar_float_constant(g, value); };
      size_t x = scalar(n.inputs[1]) ? 0 : 1;
      std::optional<double> c = scalar(n.inputs[1 - x]);
      // Only a scalar that leaves the operand's shape: the value read has it already.
      if (!c || (n.op_type == "Div" && x != 0) || *known(n.inputs[x]) != *known(n.outputs[0])) continue;
      layout.scale *= n.op_type == "Mul" ? *c : 1 / *c;
      att.inputs[slot] = n.inputs[x];
      walked_nodes.insert(p->second);
    }
    OperandView* views[] = {&layout.a, &layout.b, &layout.v};
    for (size_t slot = 0; slot < 3; ++slot) {
      std::optional<Shape> operand = known(att.inputs[slot]);
      if (!operand) continue;
      // Walk back from the operand: `base` and the view of it that gives the operand.
      std::string base = att.inputs[slot];
      OperandView view;
      for (size_t d = 0; d < operand->size(); ++d) view.dims.push_back(int64_t(d));
      view.fixed.assign(operand->size(), -1);
      std::vector<size_t> through;
      for (;;) {
        auto p = uses.producer.find(base);
        if (p == uses.producer.end()) break;
        const Node& n = g.nodes[p->second];
        if (!n.domain.empty() || n.outputs.size() != 1 || n.inputs.empty()) break;
        std::optional<Shape> in = known(n.inputs[0]);
        if (!in) break;
        const size_t rank = in->size();
        std::vector<int64_t> in_dim(view.fixed.size());  // the input dim of each dim of `base`
        std::vector<int64_t> fixed(rank, -1);
        if (n.op_type == "Transpose") {
          std::vector<int64_t> perm = n.attr_ints("perm");
          if (perm.empty())
            for (size_t d = rank; d-- > 0;) perm.push_back(int64_t(d));
          if (perm.size() != rank || view.fixed.size() != rank) break;
          in_dim = perm;
        } else if (n.op_type == "Gather" && n.inputs.size() == 2) {
          std::optional<int64_t> index = scalar_index(n.inputs[1]);
          int64_t axis = n.attr_int("axis", 0);
          if (axis < 0) axis += int64_t(rank);
          if (!index || axis < 0 || axis >= int64_t(rank) || view.fixed.size() + 1 != rank) break;
          const int64_t extent = (*in)[size_t(axis)], at = *index < 0 ? *index + extent : *index;
          if (at < 0 || at >= extent) break;
          for (size_t d = 0; d < in_dim.size(); ++d) in_dim[d] = int64_t(d) < axis ? int64_t(d) : int64_t(d) + 1;
          fixed[size_t(axis)] = at;
        } else {
          break;
        }
        for (size_t d = 0; d < in_dim.size(); ++d) fixed[size_t(in_dim[d])] = view.fixed[d];
        for (int64_t& d : view.dims) d = in_dim[size_t(d)];
        view.fixed = std::move(fixed);
        through.push_back(p->second);
        base = n.inputs[0];
      }
      // Vector loads of A and V need their innermost dim dense; B is staged by the kernel.
      const int64_t base_rank = int64_t(view.fixed.size());
      if (through.empty() || (slot != 1 && view.dims.back() != base_rank - 1)) continue;
      *views[slot] = std::move(view);
      att.inputs[slot] = base;
      walked_nodes.insert(through.begin(), through.end());
    }
    // The result written where its only reader, a Transpose keeping the innermost dim, would copy it.
    const std::string& y = att.outputs[0];
    if (uses.single_use(y)) {
      Node& t = g.nodes[uses.readers.at(y)[0]];
      std::optional<Shape> result = known(y);
      std::vector<int64_t> perm = t.attr_ints("perm");
      if (t.domain.empty() && t.op_type == "Transpose" && t.outputs.size() == 1 && result && !perm.empty() &&
          perm.size() == result->size() && perm.back() == int64_t(result->size()) - 1) {
        layout.y_perm = perm;
        removed.insert(uses.readers.at(y)[0]);
        att.outputs[0] = t.outputs[0];
      }
    }
    layout.write_to(att);
  }
  // The copies walked through that nothing reads any more, from the last back: a Gather's removal
  // can leave the Transpose before it unread.
  for (bool changed = true; changed;) {
    changed = false;
    uses = ValueUses(g);
    for (auto it = walked_nodes.rbegin(); it != walked_nodes.rend(); ++it) {
      if (removed.count(*it)) continue;
      const std::string& out = g.nodes[*it].outputs[0];
      bool read = uses.graph_outputs.count(out) != 0;
      if (auto r = uses.readers.find(out); r != uses.readers.end())
        for (size_t reader : r->second) read = read || !removed.count(reader);
      if (read) continue;
      removed.insert(*it);
      changed = true;
    }
  }
  erase_nodes(g, removed);
  return static_cast<int>(removed.size());
}

void fuse_epilogues(Graph& graph) {
  // Nothing to fuse into without a fused GEMM or conv (int4 or float weight) or a ConvTranspose.
  if (std::none_of(graph.nodes.begin(), graph.nodes.end(),
                   [](const Node& n) { return n.weight != nullptr || is_conv_transpose(n); }))
    return;
  EpilogueFuser(graph).run();
}

}  // namespace tetra
