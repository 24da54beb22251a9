// Entry points of the Halide backend's kernel families; make_halide_kernel() (halide_kernels.cpp)
// asks each in turn. Each returns nullptr and sets `why_not` when it does not handle the node.
#pragma once
#include <memory>
#include <string>

#include "runtime/executor.h"

namespace tetra {

// Elementwise, normalization, pooling and reduction ops (halide_elementwise.cpp).
std::unique_ptr<NodeKernel> make_halide_elementwise_kernel(const Node& node, const Graph& graph, std::string* why_not);
// Direct and depthwise/grouped tetra.QConv (halide_conv.cpp); group-1 convs may also use im2col.
// The kernel computes the conv and its bias only: make_halide_kernel() applies Node::epilogue after it.
std::unique_ptr<NodeKernel> make_halide_conv_kernel(const Node& node, const Graph& graph, std::string* why_not);

}  // namespace tetra
