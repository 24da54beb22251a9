// The Halide backend's entry point: which kernel family runs a node, and the helpers the families share.
// No libHalide here: the code comes from a KernelSource.
#include "runtime/halide_backend.h"

#include <algorithm>
#include <thread>

namespace tetra {

int64_t host_cores() {
  static const int64_t cores = std::max(1u, std::thread::hardware_concurrency());
  return cores;
}

const float* float_data(const Tensor& t, std::vector<float>& storage) {
  if (t.dtype() == DType::Float32) return t.data<float>();
  storage.resize(size_t(t.size()));
  for (int64_t i = 0; i < t.size(); ++i) storage[size_t(i)] = static_cast<float>(t.get(i));
  return storage.data();
}

std::unique_ptr<NodeKernel> make_halide_kernel(const Node& node, const Graph& graph, KernelSource& source,
                                               std::string* why_not) {
  // 2-D convs and grouped ones have direct kernels; 1-D dense convs and GEMV-like ones run as im2col + GEMM.
  if (node.domain == "tetra" && node.op_type == "QConv" &&
      (node.attr_int("group", 1) != 1 || conv_runs_direct(node, graph)))
    return make_halide_conv_kernel(node, graph, source, why_not);
  if (node.domain == "tetra" && node.weight) return make_halide_gemm_kernel(node, graph, source, why_not);
  if (node.domain.empty() && node.op_type == "MatMul") return make_halide_matmul_kernel(node, graph, source, why_not);
  if (node.domain == "tetra" && node.op_type == "Attention") return make_halide_attention_kernel(node, source);
  if (node.domain.empty() && node.op_type == "ConvTranspose")
    return make_halide_conv_transpose_kernel(node, graph, source, why_not);
  return make_halide_elementwise_kernel(node, graph, source, why_not);
}

}  // namespace tetra
