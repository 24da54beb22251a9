// Resize's sampling, shared by the reference kernel (runtime/ops/nn.cpp) and the Halide kernel
// (runtime/halide_data_movement.cpp), so both read the same input pixels with the same weights.
#pragma once
#include <vector>

#include "runtime/op_registry.h"

namespace tetra {

// Where output index `o` of an axis samples the input: indices i0, i1 and the weight of i1
// (nearest: i0 == i1, weight 0).
struct ResizeSample {
  int64_t i0, i1;
  double w1;
};

// A Resize of a 4-D NCHW input: the output shape and the samples along H and W. Validates the
// attributes and the scales / sizes inputs, failing with the node's name.
struct ResizePlan {
  Shape out_shape;
  bool nearest = true;  // else linear
  std::vector<ResizeSample> h, w;
};
ResizePlan resize_plan(const Node& node, const std::vector<Tensor>& inputs);

}  // namespace tetra
