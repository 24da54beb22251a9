// Which axes a ReduceSum / ReduceMean reduces, shared by the reference kernel (runtime/ops/reduce.cpp)
// and the Halide kernel (runtime/halide_data_movement.cpp).
#pragma once
#include <vector>

#include "runtime/op_registry.h"

namespace tetra {

struct ReduceAxes {
  std::vector<bool> reduced;  // per input dim; all false for a no-op (noop_with_empty_axes)
  bool keepdims = true;
};
// The axes from the attribute or the axes input (by the op's opset rule); fails naming the node.
ReduceAxes reduce_axes(const Node& node, const std::vector<Tensor>& inputs, int64_t rank);

}  // namespace tetra
