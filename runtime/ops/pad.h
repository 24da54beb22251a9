// Pad: its arguments resolved once (by opset: attributes before 11, inputs from 11, `axes` from 18,
// `wrap` from 19), shared by the reference kernel (pad.cpp), the Halide kernel
// (runtime/halide_data_movement.cpp) and the load-time fold of zero pads into convs.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "runtime/op_registry.h"

namespace tetra {

struct PadArgs {
  std::string mode = "constant";        // constant, reflect, edge or wrap
  std::vector<int64_t> begin, end;      // per dim of the input; negative crops
  double value = 0;                     // constant mode's fill
};

// nullopt when the pads (or axes, or value) come from inputs whose values are not known yet. Fails
// naming the node on a bad mode, pads of the wrong length, or axes out of range.
std::optional<PadArgs> pad_args(const Node& node, int64_t rank, const Tensor* pads, const Tensor* value,
                                const Tensor* axes);
// The same from a graph: the inputs that are initializers; nullopt when one is computed.
std::optional<PadArgs> pad_args(const Node& node, const Graph& graph, int64_t rank);

}  // namespace tetra
