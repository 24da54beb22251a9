// The index rules of the data-movement operators, shared by their reference kernels
// (runtime/ops/tensor_ops.cpp) and the Halide kernels (runtime/halide_data_movement.cpp). Each
// validates its node's attributes and inputs and fails naming the node.
#pragma once
#include <vector>

#include "runtime/op_registry.h"

namespace tetra {

// Transpose: output dim d is input dim perm[d].
std::vector<int64_t> transpose_permutation(const Node& node, int64_t rank);

// Concat: the output shape of concatenating `inputs` (all given), and the normalised axis.
Shape concat_output_shape(const Node& node, const std::vector<Tensor>& inputs, int64_t* axis);

// Split: the size of each output along `axis` (normalised), from the split attribute / input.
std::vector<int64_t> split_output_sizes(const Node& node, const std::vector<Tensor>& inputs, int64_t* axis);

// Slice: per input dim, output element i reads input index start + i * step (count elements).
struct SliceRange {
  int64_t start = 0, step = 1, count = -1;  // count -1: unknown
};
std::vector<SliceRange> slice_ranges(const Node& node, const std::vector<Tensor>& inputs);

}  // namespace tetra
