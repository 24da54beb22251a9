// Placeholder: elementwise kernels are being written; every such node falls back for now.
#include "runtime/halide_ops.h"

namespace tetra {

std::unique_ptr<NodeKernel> make_halide_elementwise_kernel(const Node&, const Graph&, std::string* why_not) {
  *why_not = "no Halide kernel for this op yet";
  return nullptr;
}

}  // namespace tetra
