// Where the Halide backend's node kernels get their compiled code. A node kernel describes the code
// it needs (a KernelRequest: plain data, whose key() names the code) and calls what comes back
// through Halide's argv convention (dsl/core/compiled_pipeline.h). Two sources implement it:
//   * the JIT source (runtime/jit_kernel_source.h) defines, schedules and compiles the pipeline in
//     this process, picking QMatMul schedules from a tuning database;
//   * a model library compiled ahead of time (runtime/aot/) looks the key up in the table of the
//     functions `tetra compile` compiled into it.
// The node kernels themselves (runtime/halide_gemm.cpp, halide_conv.cpp, halide_elementwise.cpp)
// need no libHalide, so the same code runs in the JIT runtime and in model libraries.
#pragma once
#include <memory>
#include <string>

#include "dsl/core/compiled_pipeline.h"
#include "dsl/core/int4_format.h"
#include "dsl/core/kernel_spec.h"
#include "dsl/core/qconv_format.h"
#include "dsl/core/qmatmul_workload.h"

namespace tetra {

// A MaxPool/AveragePool window. The window is unrolled and the strides are constants in the code
// (dense loads and shuffles instead of gathers); pads and sizes are run-time values.
struct PoolWindow {
  bool is_max = true;
  int kh = 1, kw = 1, sh = 1, sw = 1, dh = 1, dw = 1;  // kernel, strides, dilations: H and W (1-D: H = 1)

  std::string signature() const;  // "max pool 3x3 stride 2x2 dilation 1x1"
};

// Dims of the strided kernels (Copy, Where): operands of higher rank run when their dims merge to this many.
inline constexpr int kStridedRank = 6;

struct KernelRequest {
  // Copy: a strided copy of up to kStridedRank dims (Transpose, Slice, Concat, Split); Where: a select
  // over strided operands; Gather: rows picked by an index list; Resize: nearest or linear sampling
  // of the last two dims; Reduce: a sum, mean, max or min over up to 3 merged dims; BatchMatMul: activation x activation;
  // ConvTransposeDirect: a ConvTranspose whose kernel equals its stride; Attention: softmax(A·B)·V.
  enum class Kind { QMatMul, QConv, Elementwise, Softmax, LayerNorm, GlobalPool, Pool, Copy, Where, Gather, Resize, Reduce,
              BatchMatMul, ConvTransposeDirect, Attention };
  Kind kind = Kind::Elementwise;
  std::string node;  // the asking node's label, for messages

  dsl::QMatMulWorkload qmatmul;  // QMatMul: the workload (its shapes pick the schedule)
  dsl::QConvWorkload qconv;      // QConv
  std::string op;                // Elementwise: the op key ("Add", "Clip:min,max", "Gelu:tanh");
                                 // Resize: "nearest" or "linear"; Reduce: "sum", "mean", "max" or "min"
  std::string pattern;           // Elementwise: the broadcast pattern, innermost dim first ("x1,xx")
  bool flag = false;             // LayerNorm: has a bias; GlobalPool: max (else average)
  PoolWindow window;             // Pool
  int element_bits = 32;         // Copy, Where, Gather: the element size moved (any type of that size)
  int kernel_h = 0, kernel_w = 0;  // ConvTransposeDirect: the kernel (= the stride)
  dsl::OutputEpilogue epilogue;    // ConvTransposeDirect: the activation of its output stage (no residual)

  // Names the code: equal keys get equal code (a QMatMul's and a QConv's name the epilogue their tuning
  // keys leave out). Model libraries look their functions up by it.
  std::string key() const;
};

struct KernelCode {
  std::shared_ptr<const dsl::CompiledPipeline> pipeline;
  std::string schedule;     // QMatMul / QConv: the schedule as JSON; empty for fixed pipelines
  std::string source;       // where the schedule came from ("database exact", "default schedule (...)")
  dsl::Int4Layout layout;   // QMatMul: the weight layout the code reads
  dsl::KernelSpec spec;     // QMatMul, QConv: what the code was compiled for, resolved for its target
                            // (a QMatMul's weights are packed in spec.weight)
  double compile_ms = 0;    // spent compiling for this request; 0 when cached or ahead of time
  bool from_disk_cache = false;
};

class KernelSource {
 public:
  virtual ~KernelSource() = default;
  // The code for `request`; throws tetra::Error naming request.node when there is none.
  virtual KernelCode get(const KernelRequest& request) = 0;
  // A weight as `code` (a QMatMul's) reads it: packed in its layout and format, in the memory that code
  // runs on. Node kernels never pack weights themselves, so a device source hands them device buffers
  // (uploaded once) through the same calls. These CPU sources pack into host memory.
  virtual dsl::Result<std::shared_ptr<const dsl::PackedInt4Buffers>> prepare_qmatmul_weight(
      const QuantizedWeight& weight, bool trans_b, const KernelCode& code);
  // A direct conv's weight as its kernels read it (dsl::pack_conv_weight), likewise.
  virtual dsl::Result<std::shared_ptr<const dsl::ConvInt4Buffers>> prepare_conv_weight(const QuantizedWeight& weight);
  // Float32 lanes of one vector on the code's target, for descriptions.
  virtual int vector_lanes() const = 0;
};

}  // namespace tetra
