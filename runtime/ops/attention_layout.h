// Where tetra.Attention finds its operands and puts its result. An exported model's attention reaches
// Q, K and V through Reshape -> Transpose -> Gather of one packed QKV projection and leaves through
// Transpose -> Reshape; each step is a copy of the whole activation. fold_attention_layouts
// (importer/epilogue_fusion.h) lets the node read the projection in place, as strided views, and
// write its result already transposed; these attributes say how.
#pragma once
#include <cstdint>
#include <vector>

#include "importer/graph.h"

namespace tetra {

// An operand as a view of the dense tensor the node reads (its `base`): operand dim i walks base dim
// dims[i]; every base dim that no operand dim walks is held at index fixed[d] (-1 where walked).
// An empty view is the base itself.
struct OperandView {
  std::vector<int64_t> dims;
  std::vector<int64_t> fixed;

  bool identity() const { return dims.empty(); }
  // The operand's shape, from a base's (a Shape or a SymbolicShape).
  template <class S>
  S shape(const S& base) const {
    if (identity()) return base;
    S out;
    for (int64_t d : dims) out.push_back(base[size_t(d)]);
    return out;
  }
  // Where the view starts in the dense base, and the base stride of each operand dim, in elements.
  int64_t offset(const Shape& base) const;
  std::vector<int64_t> strides(const Shape& base) const;
};

struct AttentionLayout {
  OperandView a, b, v;          // A [..., M, K], B [..., K, N], V [..., N, D]
  std::vector<int64_t> y_perm;  // the result written transposed: output dim i is result dim y_perm[i]
  double scale = 1;             // softmax(scale * A·B)·V: a scalar Mul of an operand, folded in

  // Read from the node's attributes (a_dims, a_fixed, ..., y_perm, scale), validated against the ranks of
  // the bases it reads (`base_ranks`, one per input); fails naming the node.
  static AttentionLayout of(const Node& node, const std::vector<size_t>& base_ranks);
  void write_to(Node& node) const;
  bool plain() const { return a.identity() && b.identity() && v.identity() && y_perm.empty() && scale == 1; }
};

// `shape` permuted as Transpose does (output dim i is shape[perm[i]]); the shape itself for no perm.
template <class S>
S permuted(const S& shape, const std::vector<int64_t>& perm) {
  if (perm.empty()) return shape;
  S out;
  for (int64_t p : perm) out.push_back(shape[size_t(p)]);
  return out;
}

}  // namespace tetra
