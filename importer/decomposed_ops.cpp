#include "importer/decomposed_ops.h"

#include <cmath>
#include <map>
#include <optional>
#include <set>

namespace tetra {
namespace {

bool is_op(const Node& n, const char* op) { return n.domain.empty() && n.op_type == op; }

bool near(double v, double want) { return std::fabs(v - want) <= 1e-6 * std::max(1.0, std::fabs(want)); }

class Recogniser {
 public:
  explicit Recogniser(Graph& g) : g_(g) {
    for (size_t k = 0; k < g_.nodes.size(); ++k)
      for (const std::string& out : g_.nodes[k].outputs) producer_[out] = k;
    for (const Node& n : g_.nodes)
      for (const std::string& in : n.inputs)
        if (!in.empty()) ++readers_[in];
    for (const ValueInfo& out : g_.outputs) ++readers_[out.name];  // a graph output is never absorbed
  }

  int run() {
    int found = 0;
    // Larger patterns first: a HardSwish contains a HardSigmoid's chain. LayerNorms from their last
    // node back, so that the chain ends at the bias Add, not at the Div before the scale and bias.
    for (size_t k = g_.nodes.size(); k-- > 0;) found += !dead_.count(k) && layer_norm(k);
    for (size_t k = 0; k < g_.nodes.size(); ++k) found += !dead_.count(k) && (hard_swish(k) || gelu(k));
    for (size_t k = 0; k < g_.nodes.size(); ++k) found += !dead_.count(k) && hard_sigmoid(k);
    std::vector<Node> kept;
    for (size_t k = 0; k < g_.nodes.size(); ++k)
      if (!dead_.count(k)) kept.push_back(std::move(g_.nodes[k]));
    g_.nodes = std::move(kept);
    return found;
  }

 private:
  // The node producing `value` when that node is not yet rewritten and `value` has exactly `uses` readers.
  const Node* inner(const std::string& value, const char* op, int uses = 1) const {
    auto p = producer_.find(value);
    if (p == producer_.end() || dead_.count(p->second) || readers(value) != uses) return nullptr;
    const Node& n = g_.nodes[p->second];
    return is_op(n, op) && n.outputs.size() == 1 ? &n : nullptr;
  }
  int readers(const std::string& value) const {
    auto it = readers_.find(value);
    return it == readers_.end() ? 0 : it->second;
  }
  std::optional<double> scalar(const std::string& value) const {
    auto it = g_.initializers.find(value);
    if (it == g_.initializers.end() || it->second.size() != 1 || !is_float(it->second.dtype())) return std::nullopt;
    return it->second.get(0);
  }
  size_t index(const Node& n) const { return size_t(&n - g_.nodes.data()); }

  // The factors of a product: the leaves of the tree of Mul nodes under `value` (through single-reader
  // intermediates), with a Div by a constant c as the factor 1/c. `chain` collects the nodes passed.
  // The patterns are a few levels deep: below kMaxDepth a value is a leaf, so a long chain of Muls
  // costs no deep recursion.
  static constexpr int kMaxDepth = 6;
  void factors(const std::string& value, bool top, std::vector<std::string>& leaves, std::vector<double>& constants,
               std::vector<const Node*>& chain, int depth = 0) const {
    auto p = producer_.find(value);
    const Node* n = p == producer_.end() || dead_.count(p->second) ? nullptr : &g_.nodes[p->second];
    bool own = n && depth < kMaxDepth && (top || readers(value) == 1) && n->inputs.size() == 2;
    if (own && is_op(*n, "Mul")) {
      chain.push_back(n);
      for (const std::string& in : n->inputs) factors(in, false, leaves, constants, chain, depth + 1);
      return;
    }
    if (own && is_op(*n, "Div") && scalar(n->input(1)) && *scalar(n->input(1)) != 0) {
      chain.push_back(n);
      constants.push_back(1.0 / *scalar(n->input(1)));
      factors(n->input(0), false, leaves, constants, chain, depth + 1);
      return;
    }
    if (std::optional<double> c = scalar(value)) constants.push_back(*c);
    else leaves.push_back(value);
  }

  // The input x of Add(x, c) (either order) with c a scalar, or "".
  std::string add_scalar(const Node& add, double c) const {
    for (int i = 0; i < 2; ++i)
      if (std::optional<double> v = scalar(add.input(1 - i)); v && near(*v, c)) return add.input(i);
    return "";
  }

  // Clip's bounds: attributes before opset 11, constant inputs after.
  bool clip_bounds(const Node& clip, double lo, double hi) const {
    if (clip.opset < 11) return near(clip.attr_float("min", -INFINITY), lo) && near(clip.attr_float("max", INFINITY), hi);
    std::optional<double> a = clip.has_input(1) ? scalar(clip.input(1)) : std::nullopt;
    std::optional<double> b = clip.has_input(2) ? scalar(clip.input(2)) : std::nullopt;
    return a && b && near(*a, lo) && near(*b, hi);
  }

  // x when `value` is Clip(Add(x, 3), 0, 6) through single-reader values, else "".
  std::string relu6_of_plus3(const std::string& value, std::vector<const Node*>& chain) const {
    const Node* clip = inner(value, "Clip");
    if (!clip || !clip_bounds(*clip, 0, 6)) return "";
    const Node* add = inner(clip->input(0), "Add");
    if (!add) return "";
    std::string x = add_scalar(*add, 3);
    if (!x.empty()) chain.insert(chain.end(), {clip, add});
    return x;
  }

  static double product(const std::vector<double>& constants) {
    double p = 1;
    for (double c : constants) p *= c;
    return p;
  }

  // Replaces node `last` by `op` over `inputs`, keeping its output, and drops the rest of the chain.
  void rewrite(size_t last, const std::string& op, std::vector<std::string> inputs,
               const std::vector<const Node*>& chain, std::map<std::string, Attribute> attrs, int64_t opset) {
    for (const Node* n : chain)
      if (index(*n) != last) dead_.insert(index(*n));
    Node& n = g_.nodes[last];
    Node out;
    out.name = n.name;
    out.op_type = op;
    out.opset = std::max(n.opset, opset);
    out.inputs = std::move(inputs);
    out.outputs = {n.outputs[0]};
    out.attrs = std::move(attrs);
    n = std::move(out);
  }

  // The product node k computes: its non-constant factors, the product of its constant ones, and the
  // nodes passed (factors()); nullopt unless node k is a Mul or a Div.
  struct Product {
    std::vector<std::string> leaves;
    double constant = 1;
    std::vector<const Node*> chain;
  };
  std::optional<Product> product_at(size_t k) const {
    const Node& z = g_.nodes[k];
    if (!(is_op(z, "Mul") || is_op(z, "Div")) || z.outputs.size() != 1) return std::nullopt;
    Product p;
    std::vector<double> constants;
    factors(z.outputs[0], true, p.leaves, constants, p.chain);
    p.constant = product(constants);
    return p;
  }

  // x * relu6(x + 3) / 6.
  bool hard_swish(size_t k) {
    std::optional<Product> p = product_at(k);
    if (!p || p->leaves.size() != 2 || !near(p->constant, 1.0 / 6)) return false;
    for (int i = 0; i < 2; ++i) {
      std::vector<const Node*> chain = p->chain;
      std::string x = relu6_of_plus3(p->leaves[i], chain);
      if (!x.empty() && x == p->leaves[1 - i]) {
        rewrite(k, "HardSwish", {x}, chain, {}, 14);
        return true;
      }
    }
    return false;
  }

  // relu6(x + 3) / 6 = HardSigmoid(x) with alpha 1/6, beta 1/2.
  bool hard_sigmoid(size_t k) {
    std::optional<Product> p = product_at(k);
    if (!p || p->leaves.size() != 1 || !near(p->constant, 1.0 / 6)) return false;
    std::string x = relu6_of_plus3(p->leaves[0], p->chain);
    if (x.empty()) return false;
    rewrite(k, "HardSigmoid", {x}, p->chain, {{"alpha", float_attr(1.0 / 6)}, {"beta", float_attr(0.5)}}, 6);
    return true;
  }

  // x * 0.5 * (1 + Erf(x / sqrt 2)) = Gelu(x).
  bool gelu(size_t k) {
    if (!is_op(g_.nodes[k], "Mul")) return false;
    std::optional<Product> p = product_at(k);
    if (!p || p->leaves.size() != 2 || !near(p->constant, 0.5)) return false;
    const std::vector<std::string>& leaves = p->leaves;
    std::vector<const Node*>& chain = p->chain;
    for (int i = 0; i < 2; ++i) {
      const Node* add = inner(leaves[i], "Add");
      const Node* erf = add ? inner(add_scalar(*add, 1.0), "Erf") : nullptr;
      if (!erf) continue;
      std::vector<std::string> inside;
      std::vector<double> scale;
      std::vector<const Node*> erf_chain;
      if (readers(erf->input(0)) != 1) continue;
      factors(erf->input(0), true, inside, scale, erf_chain);
      if (inside.size() != 1 || inside[0] != leaves[1 - i] || !near(product(scale), 1 / std::sqrt(2.0))) continue;
      chain.insert(chain.end(), {add, erf});
      chain.insert(chain.end(), erf_chain.begin(), erf_chain.end());
      rewrite(k, "Gelu", {inside[0]}, chain, {}, 20);
      return true;
    }
    return false;
  }

  // The axes a ReduceMean reduces over, normalised against `rank`, and whether it keeps them.
  std::optional<std::set<int64_t>> mean_axes(const Node& mean, int64_t rank) const {
    if (mean.attr_int("keepdims", 1) != 1) return std::nullopt;
    std::vector<int64_t> axes = mean.attr_ints("axes");
    if (mean.has_input(1)) {
      auto it = g_.initializers.find(mean.input(1));
      if (it == g_.initializers.end()) return std::nullopt;
      axes = it->second.to_ints();
    }
    std::set<int64_t> out;
    for (int64_t a : axes) out.insert(a < 0 ? a + rank : a);
    return out;
  }

  int64_t rank_of(const std::string& value) const {
    const ValueInfo* v = g_.find_value(value);
    return v && v->has_shape ? int64_t(v->shape.size()) : -1;
  }
  int64_t last_dim(const std::string& value) const {
    const ValueInfo* v = g_.find_value(value);
    return v && v->has_shape && !v->shape.empty() ? v->shape.back().value : -1;
  }

  // The constant operand of a binary op applied to `value`, when it holds one value per last-axis
  // element (a LayerNormalization scale or bias), else "".
  std::string per_feature_constant(const Node& op, const std::string& value, int64_t features) const {
    for (int i = 0; i < 2; ++i) {
      if (op.input(i) != value) continue;
      auto c = g_.initializers.find(op.input(1 - i));
      if (c == g_.initializers.end() || !is_float(c->second.dtype()) || c->second.size() != features) return "";
      for (int64_t d = 0; d + 1 < c->second.rank(); ++d)
        if (c->second.shape()[d] != 1) return "";
      return op.input(1 - i);
    }
    return "";
  }

  // (x - mean(x)) / sqrt(mean((x - mean(x))^2) + eps) [* gamma] [+ beta] over the last axis.
  bool layer_norm(size_t k) {
    const Node& z = g_.nodes[k];
    if (!(is_op(z, "Div") || is_op(z, "Mul") || is_op(z, "Add")) || z.outputs.size() != 1) return false;
    auto below = [&](const Node& n, const char* op) -> const Node* {  // an input of n made by `op`
      for (const std::string& in : n.inputs)
        if (const Node* p = inner(in, op)) return p;
      return nullptr;
    };
    // From the end: [Add beta] <- [Mul gamma] <- Div.
    const Node *add_beta = nullptr, *mul_gamma = nullptr, *div = &z;
    if (is_op(*div, "Add")) {
      add_beta = div;
      div = below(*add_beta, "Mul");
      if (!div) div = below(*add_beta, "Div");
      if (!div) return false;
    }
    if (is_op(*div, "Mul")) {
      mul_gamma = div;
      div = below(*mul_gamma, "Div");
      if (!div) return false;
    }
    if (!is_op(*div, "Div")) return false;
    const Node* sqrt = inner(div->input(1), "Sqrt");
    const Node* add_eps = sqrt ? inner(sqrt->input(0), "Add") : nullptr;
    if (!add_eps) return false;
    std::optional<double> eps;
    std::string var_value;
    for (int i = 0; i < 2 && !eps; ++i)
      if ((eps = scalar(add_eps->input(i)))) var_value = add_eps->input(1 - i);
    const Node* var = eps ? inner(var_value, "ReduceMean") : nullptr;
    if (!var) return false;
    const std::string& centred = div->input(0);
    const Node* square = inner(var->input(0), "Pow");
    if (square) {
      std::optional<double> two = scalar(square->input(1));
      if (!two || *two != 2 || square->input(0) != centred) return false;
    } else {
      square = inner(var->input(0), "Mul");
      if (!square || square->input(0) != centred || square->input(1) != centred) return false;
    }
    // d = x - mean(x) is read by the square (once, or twice as d * d) and by the Div.
    const Node* sub = inner(centred, "Sub", is_op(*square, "Mul") ? 3 : 2);
    if (!sub) return false;
    const std::string x = sub->input(0);
    const Node* mean = inner(sub->input(1), "ReduceMean");
    if (!mean || mean->input(0) != x) return false;
    int64_t rank = rank_of(x), features = last_dim(x);
    if (rank < 1 || features < 1) return false;
    std::set<int64_t> last = {rank - 1};
    if (mean_axes(*mean, rank) != last || mean_axes(*var, rank) != last) return false;

    std::string gamma, beta;
    if (mul_gamma && (gamma = per_feature_constant(*mul_gamma, div->outputs[0], features)).empty()) return false;
    if (add_beta &&
        (beta = per_feature_constant(*add_beta, (mul_gamma ? mul_gamma : div)->outputs[0], features)).empty())
      return false;
    if (gamma.empty()) {  // LayerNormalization requires a scale
      gamma = z.outputs[0] + "_layer_norm_scale";
      g_.initializers[gamma] = Tensor::from_doubles(DType::Float32, {features}, std::vector<double>(size_t(features), 1.0));
    }
    std::vector<std::string> inputs = {x, flat(gamma, features)};
    if (!beta.empty()) inputs.push_back(flat(beta, features));
    std::vector<const Node*> chain = {div, sqrt, add_eps, var, square, sub, mean};
    for (const Node* n : {add_beta, mul_gamma})
      if (n) chain.push_back(n);
    rewrite(k, "LayerNormalization", inputs, chain, {{"axis", int_attr(-1)}, {"epsilon", float_attr(*eps)}}, 17);
    return true;
  }

  // A [1, ..., D] constant as the [D] LayerNormalization wants (a view under a new name).
  std::string flat(const std::string& name, int64_t features) {
    const Tensor& t = g_.initializers.at(name);
    if (t.rank() == 1) return name;
    std::string out = name + "_1d";
    g_.initializers[out] = t.reshaped({features});
    return out;
  }

  Graph& g_;
  std::map<std::string, size_t> producer_;
  std::map<std::string, int> readers_;
  std::set<size_t> dead_;
};

}  // namespace

int recognise_decomposed_ops(Graph& graph) { return Recogniser(graph).run(); }

}  // namespace tetra
