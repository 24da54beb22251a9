// The GPU kernels of the nodes around the GEMMs and convs, so that a whole model stays on the device
// (runtime/aot/gpu_model_job.h): elementwise ops with numpy broadcasting, and softmax and layer norm
// over rows. They are fixed schedules, not tuning templates: a thread per output element, or a thread
// per row, in blocks of one wave's multiple. Their bandwidth is not what bounds a decoding model.
#pragma once
#include <string>
#include <vector>

#include "schedules/gpu/build.h"

namespace tetra::schedules {

// An elementwise op over operands broadcast to one output shape. The expression is
// dsl/elementwise_expr.h's for `op_key` ("Relu", "Add", "Clip:min,max"); `floats` float parameters
// named p0, p1, ... follow it. `broadcast[k][d]`: whether operand k is read along dim d of the output
// (innermost first) or broadcast there (its extent is 1). Buffers: in0, in1, ..., then out.
dsl::Result<GpuKernels> lower_gpu_elementwise(const std::string& op_key, int floats,
                                              const std::vector<std::vector<bool>>& broadcast, const TargetSpec& target,
                                              const std::string& name);

// Rows of `x` (n, rows), innermost first, normalized: a softmax along each row, or a layer norm with a
// per-element scale (n) and, when `has_bias`, bias (n), and the float parameters epsilon and count (n).
// Buffers: x, scale, bias, then out (n, rows).
enum class GpuRowOp { Softmax, LayerNorm };
dsl::Result<GpuKernels> lower_gpu_rows(GpuRowOp op, bool has_bias, const TargetSpec& target, const std::string& name);

// A global pool: each row of `x` (n, rows) reduced to one value, its mean or its max. Buffers: x, out
// (rows); the float parameter count (n).
dsl::Result<GpuKernels> lower_gpu_global_pool(bool is_max, const TargetSpec& target, const std::string& name);

// A 2-D max or average pool of `x` (W, H, planes) into out (OW, OH, planes): a thread per output. The
// window is compiled in; the pads (pad_top, pad_left, pad_bottom, pad_right) are int parameters. An
// average divides by the taps inside the input, or with `count_include_pad` inside the padded input.
struct GpuPoolWindow {
  bool is_max = true, count_include_pad = false;
  int kh = 1, kw = 1, sh = 1, sw = 1, dh = 1, dw = 1;
};
dsl::Result<GpuKernels> lower_gpu_pool(const GpuPoolWindow& window, const TargetSpec& target, const std::string& name);

// dsl/resize_def.h's Resize of x (W, H, planes) into out (OW, OH, planes), a thread per output.
dsl::Result<GpuKernels> lower_gpu_resize(bool nearest, const TargetSpec& target, const std::string& name);

// A copy of `in` into `out` of the same rank: input dim j is read at v[out_dim[j]] * step_j + start_j,
// where v is the output position (dims innermost first) and start0, step0, start1, ... are int parameters.
// Transpose (a permutation), Slice and Split (starts and steps).
dsl::Result<GpuKernels> lower_gpu_copy(const std::vector<int>& out_dim, const TargetSpec& target,
                                       const std::string& name);

// Pad: out(v) reads in at v_j - begin_j along each dim j (innermost first; begin0, begin1, ... are int
// parameters, negative to crop). Outside the input: the float parameter `value` (Constant), the nearest
// edge (Edge), or the mirror image without repeating the edge (Reflect).
enum class GpuPadMode { Constant, Edge, Reflect };
dsl::Result<GpuKernels> lower_gpu_pad(GpuPadMode mode, int rank, const TargetSpec& target, const std::string& name);

// Gather along the middle dim of in (inner, n, outer) by the int32 indices idx (m), into out (inner, m,
// outer): out(i, j, o) = in(i, idx(j), o). A negative index counts from the end, as in ONNX; one
// outside [-n, n) reads the nearest row instead of faulting the device (a kernel cannot report it).
dsl::Result<GpuKernels> lower_gpu_gather(const TargetSpec& target, const std::string& name);

// Inputs in0, in1, ... of one rank joined along dim `axis` (innermost first) into out.
dsl::Result<GpuKernels> lower_gpu_concat(int inputs, int rank, int axis, const TargetSpec& target,
                                         const std::string& name);

// A 2-D ConvTranspose whose kernel equals its stride (no pads, dilations or groups): each output takes
// one tap, out(ox, oy, m, n) = bias(m) + sum over c of x(ox / kw, oy / kh, c, n) * w(ox % kw, oy % kh, m, c).
// Buffers x (W, H, C, N), w (kw, kh, M, C): ONNX's [C, M, kh, kw], float32, bias (M), out (W*kw, H*kh, M, N).
dsl::Result<GpuKernels> lower_gpu_conv_transpose(int kh, int kw, const TargetSpec& target, const std::string& name);

// A batched matmul of two activations: out(n, m, batch) = sum over k of a(k, m, batch) * b(n, k, batch),
// innermost first (ONNX's A [batch, M, K] x B [batch, K, N]). Two kernels: zeros, then the sum.
dsl::Result<GpuKernels> lower_gpu_batch_matmul(const TargetSpec& target, const std::string& name);

// A reduction of the middle dim of x (inner, reduced, outer) into out (inner, outer): "sum", "mean" (by
// the float parameter count), "max" or "min".
dsl::Result<GpuKernels> lower_gpu_reduce(const std::string& op, const TargetSpec& target, const std::string& name);

}  // namespace tetra::schedules
