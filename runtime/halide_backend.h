// Entry points of the Halide backend's kernel families; make_halide_kernel() (halide_backend.cpp)
// asks each in turn. Each returns nullptr and sets `why_not` when it does not handle the node.
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "dsl/core/qconv_format.h"
#include "dsl/core/qmatmul_workload.h"
#include "runtime/executor.h"
#include "runtime/kernel_source.h"

namespace tetra {

// Float32 data of a float tensor for a kernel: its own bytes when it is float32, else a converted copy
// (of a float16 tensor) kept in `storage`.
const float* float_data(const Tensor& t, std::vector<float>& storage);

// The elementwise ops with a Halide kernel, by key (op type, then after a ':' the attribute choices
// that change the code): how many tensors each reads elementwise and how many float attributes it takes.
struct ElementwiseArity {
  int operands;  // tensors read elementwise (broadcast against each other)
  int floats;    // float attributes, run-time parameters
};
const std::map<std::string, ElementwiseArity>& elementwise_ops();

// Elementwise, normalization, pooling and reduction ops (halide_elementwise.cpp).
std::unique_ptr<NodeKernel> make_halide_elementwise_kernel(const Node& node, const Graph& graph, KernelSource& source,
                                                           std::string* why_not);
// The int4 GEMMs: tetra.QMatMul, and a group-1 tetra.QConv that does not run direct, as im2col + GEMM
// (halide_gemm.cpp).
std::unique_ptr<NodeKernel> make_halide_gemm_kernel(const Node& node, const Graph& graph, KernelSource& source,
                                                    std::string* why_not);
// tetra.Attention: softmax(A·B)·V without the scores in memory (halide_matmul.cpp).
std::unique_ptr<NodeKernel> make_halide_attention_kernel(const Node& node, KernelSource& source);
// Activation x activation MatMul (neither input constant), batched and broadcast (halide_matmul.cpp).
std::unique_ptr<NodeKernel> make_halide_matmul_kernel(const Node& node, const Graph& graph, KernelSource& source,
                                                      std::string* why_not);
// 1-D and 2-D ConvTranspose of group 1 with a constant float weight: direct where the kernel equals the
// stride, else GEMM + col2im (halide_conv_transpose.cpp).
std::unique_ptr<NodeKernel> make_halide_conv_transpose_kernel(const Node& node, const Graph& graph,
                                                              KernelSource& source, std::string* why_not);
// Whether such a ConvTranspose runs directly, one tap per output (kernel = stride, no pads, dilations
// or output padding: schedules/cpu/conv_transpose.h) rather than as GEMM + col2im.
bool conv_transpose_runs_direct(const Node& node, const Graph& graph);
// The GEMM weight of such a ConvTranspose, [C, M*KH*KW] (its own weight, viewed), or nullptr and why not.
std::shared_ptr<const QuantizedWeight> conv_transpose_gemm_weight(const Node& node, const Graph& graph,
                                                                  std::string* why_not);
// Data movement (views, Transpose, Slice, Concat, Split, Gather, Where), Resize and ReduceSum /
// ReduceMean (halide_data_movement.cpp); is_data_movement() names the ops it decides on.
bool is_data_movement(const std::string& op_type);
// Comparisons and logic (Equal, Less, ..., Not, And, Or, Xor): bool results, on the reference kernel on
// the CPU (masks are small or folded at load) and as float masks on the GPU.
bool is_predicate(const std::string& op_type);
std::unique_ptr<NodeKernel> make_halide_data_movement_kernel(const Node& node, const Graph& graph, KernelSource& source,
                                                             std::string* why_not);
// Direct 2-D tetra.QConv, dense, grouped or depthwise (halide_conv.cpp); 1-D dense convs use im2col.
// The kernel applies the leading residual Add and activation of Node::epilogue itself, the rest after.
std::unique_ptr<NodeKernel> make_halide_conv_kernel(const Node& node, const Graph& graph, KernelSource& source,
                                                    std::string* why_not);

// The GEMM a node runs as on the Halide backend (tetra.QMatMul, a group-1 1-D tetra.QConv through
// im2col, or a ConvTranspose before its col2im) for the shapes in `graph`, with its weight as the GEMM sees it. The
// runtime's kernels and the tuner's tasks both come from here, so their workload keys agree. nullopt: not a Halide
// GEMM.
struct HalideGemm {
  dsl::QMatMulWorkload workload;
  std::shared_ptr<const QuantizedWeight> weight;
  bool trans_b = false;
};
std::optional<HalideGemm> halide_gemm_of(const Node& node, const Graph& graph);

// Whether a tetra.QConv runs on the direct conv kernel (every 2-D conv but one with a single output
// position, a GEMV) rather than as im2col + GEMM, at the shapes in `graph`.
bool conv_runs_direct(const Node& node, const Graph& graph);

// The direct conv a node runs as on the Halide backend, at the shapes in `graph`: like halide_gemm_of,
// shared by the runtime and the tuner's tasks. nullopt: not a direct conv, or shapes not known.
struct HalideConv {
  dsl::QConvWorkload workload;
  std::shared_ptr<const QuantizedWeight> weight;  // [M, C / group, KH, KW]
};
std::optional<HalideConv> halide_conv_of(const Node& node, const Graph& graph);
// The same, and a 1-D conv as the 2-D conv of height 1 it is (its weight [M, C / group, K] seen as
// [M, C / group, 1, K], the same bytes), for kernels that take 2-D convs only: the GPU's. (The CPU runs
// 1-D convs as im2col + GEMM.)
std::optional<HalideConv> halide_conv_as_2d(const Node& node, const Graph& graph);

// The conv weight [M, C, k...] as a GEMM weight [M, k...*C] (trans_b), still 4-bit; nullopt when its
// quantization grid does not map onto that matrix.
std::optional<QuantizedWeight> conv_weight_as_matrix(const QuantizedWeight& weight);

// Hardware threads for the host-side loops beside the kernels (im2col, col2im), read once: the query
// reads /sys on every call, and system calls cost microseconds a piece on a virtual machine.
int64_t host_cores();

}  // namespace tetra
