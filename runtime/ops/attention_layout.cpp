#include "runtime/ops/attention_layout.h"

#include <string>

#include "importer/error.h"
#include "importer/tensor.h"

namespace tetra {

int64_t OperandView::offset(const Shape& base) const {
  if (identity()) return 0;
  std::vector<int64_t> s = strides_of(base);
  int64_t at = 0;
  for (size_t d = 0; d < fixed.size(); ++d)
    if (fixed[d] >= 0) at += fixed[d] * s[d];
  return at;
}

std::vector<int64_t> OperandView::strides(const Shape& base) const {
  std::vector<int64_t> s = strides_of(base);
  if (identity()) return s;
  std::vector<int64_t> out;
  for (int64_t d : dims) out.push_back(s[size_t(d)]);
  return out;
}

namespace {
// Operand dims walk distinct base dims and every other base dim is held at an index.
void check_view(const Node& node, const char* name, const OperandView& v, size_t base_rank) {
  if (v.identity()) return;
  auto fail_here = [&](const std::string& why) {
    fail(ErrorKind::Invalid, node.label() + ": operand " + name + "'s view " + why);
  };
  if (v.fixed.size() != base_rank)
    fail_here("holds " + std::to_string(v.fixed.size()) + " base dims, its input has " + std::to_string(base_rank));
  std::vector<bool> walked(base_rank, false);
  for (int64_t d : v.dims) {
    if (d < 0 || size_t(d) >= base_rank || walked[size_t(d)]) fail_here("walks a base dim twice or out of range");
    walked[size_t(d)] = true;
  }
  for (size_t d = 0; d < base_rank; ++d)
    if (walked[d] != (v.fixed[d] < 0)) fail_here("neither walks nor holds base dim " + std::to_string(d));
}
}  // namespace

AttentionLayout AttentionLayout::of(const Node& node, const std::vector<size_t>& base_ranks) {
  AttentionLayout l;
  OperandView* views[] = {&l.a, &l.b, &l.v};
  const char* names[] = {"a", "b", "v"};
  for (size_t i = 0; i < 3; ++i) {
    views[i]->dims = node.attr_ints(std::string(names[i]) + "_dims");
    views[i]->fixed = node.attr_ints(std::string(names[i]) + "_fixed");
    if (i < base_ranks.size()) check_view(node, names[i], *views[i], base_ranks[i]);
  }
  l.scale = node.attr_float("scale", 1.0);
  l.y_perm = node.attr_ints("y_perm");
  if (!l.y_perm.empty()) {
    // The result has A's rank (A's view's, or its input's; unknown when no ranks are given).
    size_t r = !l.a.identity() ? l.a.dims.size() : base_ranks.empty() ? l.y_perm.size() : base_ranks[0];
    std::vector<bool> seen(l.y_perm.size(), false);
    bool ok = l.y_perm.size() == r;
    for (int64_t p : l.y_perm) {
      ok = ok && p >= 0 && size_t(p) < l.y_perm.size() && !seen[size_t(p)];
      if (ok) seen[size_t(p)] = true;
    }
    if (!ok) fail(ErrorKind::Invalid, node.label() + ": y_perm is no permutation of the result's dims");
  }
  return l;
}

void AttentionLayout::write_to(Node& node) const {
  const OperandView* views[] = {&a, &b, &v};
  const char* names[] = {"a", "b", "v"};
  for (size_t i = 0; i < 3; ++i) {
    for (const char* part : {"_dims", "_fixed"}) node.attrs.erase(std::string(names[i]) + part);
    if (views[i]->identity()) continue;
    node.attrs[std::string(names[i]) + "_dims"] = ints_attr(views[i]->dims);
    node.attrs[std::string(names[i]) + "_fixed"] = ints_attr(views[i]->fixed);
  }
  node.attrs.erase("y_perm");
  if (!y_perm.empty()) node.attrs["y_perm"] = ints_attr(y_perm);
  node.attrs.erase("scale");
  if (scale != 1) node.attrs["scale"] = float_attr(scale);
}

}  // namespace tetra
