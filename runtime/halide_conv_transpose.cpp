// ConvTranspose (1-D and 2-D, group 1, a constant weight) as a GEMM on the QMatMul kernels plus col2im:
//
//   cols[(i, j), (m, kh, kw)] = sum_c X[n, c, i, j] * W[c, m, kh, kw]        GEMM, K = C, N = M*KH*KW
//   Y[n, m, i*SH - PT + kh*DH, j*SW - PL + kw*DW] += cols[(i, j), (m, kh, kw)]   col2im, + bias[m]
//
// The ONNX weight [C, M, KH, KW] already is the GEMM's [K, N] weight, so it is used as it is: float32 /
// float16, tuned like any GEMM (the tuner sees a QMatMul workload). The input is first laid out
// channels-last (the GEMM's A).
//
// With kernel = stride (the usual upsampling) every output takes one tap, and a direct kernel
// (schedules/cpu/conv_transpose.h) computes it in one pass over the output, with no transposed input,
// GEMM result or col2im in memory: 5x faster on a detector's 2x2 upsampling.
#include <algorithm>
#include <thread>

#include "HalideBuffer.h"
#include "importer/error.h"
#include "runtime/epilogue.h"
#include "runtime/halide_backend.h"
#include "runtime/halide_epilogue.h"
#include "runtime/ops/conv_core.h"
#include "runtime/qmatmul_runner.h"

namespace tetra {
namespace {

class HalideConvTranspose : public NodeKernel {
 public:
  HalideConvTranspose(const Node& node, std::shared_ptr<const QuantizedWeight> matrix, Shape weight_shape,
                      KernelSource& source)
      : node_(node),
        weight_shape_(std::move(weight_shape)),
        runner_(std::move(matrix), false, false, dsl::OutputEpilogue{}, false, source, node.label()) {}

  std::vector<Tensor> run(const std::vector<Tensor>& inputs) override {
    const Tensor& x = inputs.at(0);
    const Tensor* bias = inputs.size() > 2 && !inputs[2].empty() ? &inputs[2] : nullptr;
    // The adjoint Conv's geometry: out_spatial is this node's input, in_spatial its output.
    ConvParams p = conv_transpose_params(node_, x.shape(), weight_shape_);
    // So the adjoint's output (OH, OW) is this node's input (H, W), and its input this node's output.
    const Conv2d g = Conv2d::of(p);
    const int64_t H = g.OH, W = g.OW, OH = g.H, OW = g.W, KH = g.KH, KW = g.KW;
    // The input goes to [position, channel] rows for the GEMM (col2im writes NCHW): a permutation
    // unless there is one position.
    layout_conversions_ = H * W > 1 ? 1 : 0;
    const int64_t SH = g.SH, SW = g.SW, DH = g.DH, DW = g.DW, PT = g.PT, PL = g.PL;
    int64_t C = p.out_channels, M = p.in_channels;
    check(!bias || bias->size() == M, ErrorKind::Invalid, [&] {
      return node_.label() + ": bias " + shape_str(bias ? bias->shape() : Shape{}) + " must have " + std::to_string(M) +
             " values";
    });
    std::vector<float> x_copy, bias_copy;
    const float* xd = float_data(x, x_copy);
    const float* bd = bias ? float_data(*bias, bias_copy) : nullptr;

    Shape out_shape = {p.batch, M};
    out_shape.insert(out_shape.end(), p.in_spatial.begin(), p.in_spatial.end());
    Tensor y = places_.make(0, DType::Float32, out_shape);
    float* yd = y.mutable_data<float>();
    const int64_t N = M * KH * KW;
    a_.resize(size_t(H * W * C));
    cols_.resize(size_t(H * W * N));
    for (int64_t n = 0; n < p.batch; ++n) {
      const float* xn = xd + n * C * H * W;
      for (int64_t c = 0; c < C; ++c)
        for (int64_t q = 0; q < H * W; ++q) a_[size_t(q * C + c)] = xn[c * H * W + q];
      runner_.run(a_.data(), H * W, cols_.data(), nullptr, 1.0f, 1.0f);
      float* yn = yd + n * M * OH * OW;
      // col2im, output channels split over the hardware threads (each thread owns its channels).
      auto channels = [&](int64_t first, int64_t last) {
        for (int64_t m = first; m < last; ++m) {
          float* ym = yn + m * OH * OW;
          std::fill(ym, ym + OH * OW, bd ? bd[m] : 0.0f);
          for (int64_t kh = 0; kh < KH; ++kh)
            for (int64_t i = 0; i < H; ++i) {
              int64_t oh = i * SH - PT + kh * DH;
              if (oh < 0 || oh >= OH) continue;
              for (int64_t kw = 0; kw < KW; ++kw) {
                const float* col = cols_.data() + i * W * N + (m * KH + kh) * KW + kw;
                float* row = ym + oh * OW;
                for (int64_t j = 0; j < W; ++j) {
                  int64_t ow = j * SW - PL + kw * DW;
                  if (ow >= 0 && ow < OW) row[ow] += col[j * N];
                }
              }
            }
        }
      };
      int64_t workers = std::min<int64_t>(host_cores(), M);
      std::vector<std::thread> pool;
      for (int64_t t = 1; t < workers; ++t) pool.emplace_back(channels, M * t / workers, M * (t + 1) / workers);
      channels(0, M / workers);
      for (std::thread& t : pool) t.join();
    }
    if (x.dtype() == DType::Float32) return {y};
    Tensor out = places_.make(0, x.dtype(), out_shape);
    for (int64_t i = 0; i < y.size(); ++i) out.set(i, yd[i]);  // rounds once, to float16
    return {out};
  }

  KernelInfo info() const override {
    return {node_.label(), "halide", "GEMM + col2im: " + runner_.describe(), runner_.compile_ms(), layout_conversions_};
  }

 private:
  const Node& node_;
  Shape weight_shape_;
  QMatMulRunner runner_;
  std::vector<float> a_, cols_;  // scratch, kept: fresh large allocations cost page faults every run
  int layout_conversions_ = 0;   // in the last run
};

class HalideConvTransposeDirect : public NodeKernel {
 public:
  // The kernel applies `activation` (an OutputEpilogue with no residual) in its output stage.
  HalideConvTransposeDirect(const Node& node, const Tensor& weight, dsl::OutputEpilogue activation,
                            KernelSource& source)
      : node_(node), weight_shape_(weight.shape()), activation_(std::move(activation)) {
    // [C, M, KH, KW] -> [M, KH, KW, C]: the kernel reads one channel run per tap, innermost.
    const Shape& s = weight_shape_;
    int64_t C = s[0], M = s[1], KH = s.size() == 4 ? s[2] : 1, KW = s.back();
    weight_.resize(size_t(C * M * KH * KW));
    for (int64_t c = 0; c < C; ++c)
      for (int64_t m = 0; m < M; ++m)
        for (int64_t r = 0; r < KH * KW; ++r)
          weight_[size_t((m * KH * KW + r) * C + c)] = static_cast<float>(weight.get((c * M + m) * KH * KW + r));
    KernelRequest request;
    request.kind = KernelRequest::Kind::ConvTransposeDirect;
    request.node = node.label();
    request.kernel_h = int(KH);
    request.kernel_w = int(KW);
    request.epilogue = activation_;
    code_ = source.get(request);
  }

  std::vector<Tensor> run(const std::vector<Tensor>& inputs) override {
    const Tensor& x = inputs.at(0);
    const Tensor* bias = inputs.size() > 2 && !inputs[2].empty() ? &inputs[2] : nullptr;
    ConvParams p = conv_transpose_params(node_, x.shape(), weight_shape_);
    const Conv2d g = Conv2d::of(p);  // the adjoint conv: its output (OH, OW) is this node's input
    const int64_t H = g.OH, W = g.OW, OH = g.H, OW = g.W, C = p.out_channels, M = p.in_channels;
    check(OH == H * g.KH && OW == W * g.KW, ErrorKind::Invalid, [&] {
      return node_.label() + ": the output is not the input times the kernel; the direct kernel cannot take it";
    });
    check(!bias || bias->size() == M, ErrorKind::Invalid, [&] {
      return node_.label() + ": bias " + shape_str(bias ? bias->shape() : Shape{}) + " must have " + std::to_string(M) +
             " values";
    });
    for (int64_t v : {W, H, C, p.batch, OW, OH, M})
      check(v <= INT32_MAX, ErrorKind::Invalid,
            [&] { return node_.label() + ": a dimension is too large for a Halide kernel"; });
    std::vector<float> x_copy, bias_values(size_t(M), 0.0f);
    const float* xd = float_data(x, x_copy);
    if (bias)
      for (int64_t m = 0; m < M; ++m) bias_values[size_t(m)] = static_cast<float>(bias->get(m));

    Shape out_shape = {p.batch, M};
    out_shape.insert(out_shape.end(), p.in_spatial.begin(), p.in_spatial.end());
    Tensor y = places_.make(0, DType::Float32, out_shape);
    Halide::Runtime::Buffer<float> X(const_cast<float*>(xd), {int(W), int(H), int(C), int(p.batch)});
    Halide::Runtime::Buffer<float> Wt(weight_.data(), {int(C), int(g.KW), int(g.KH), int(M)});
    Halide::Runtime::Buffer<float> B(bias_values.data(), int(M));
    Halide::Runtime::Buffer<float> Y(y.mutable_data<float>(), {int(OW), int(OH), int(M), int(p.batch)});
    void* argv[] = {X.raw_buffer(), Wt.raw_buffer(), B.raw_buffer(), Y.raw_buffer()};
    dsl::Status st = dsl::call_pipeline(*code_.pipeline, argv, "conv transpose");
    check(st.ok(), ErrorKind::Invalid,
          [&] { return node_.label() + ": Halide kernel failed: " + (st.ok() ? "" : st.failure().describe()); });
    if (x.dtype() == DType::Float32) return {y};
    Tensor out = places_.make(0, x.dtype(), out_shape);
    for (int64_t i = 0; i < y.size(); ++i) out.set(i, y.data<float>()[i]);  // rounds once, to float16
    return {out};
  }

  KernelInfo info() const override {
    return {node_.label(), "halide",
            std::string("direct: one tap per output (kernel = stride), phases interleaved in vectors") +
                (activation_.empty() ? "" : "; in the kernel: " + activation_.describe()),
            code_.compile_ms};
  }

 private:
  const Node& node_;
  Shape weight_shape_;
  dsl::OutputEpilogue activation_;
  std::vector<float> weight_;  // [M, KH, KW, C]
  KernelCode code_;
};

}  // namespace

bool conv_transpose_runs_direct(const Node& node, const Graph& graph) {
  std::string why_not;
  if (!conv_transpose_gemm_weight(node, graph, &why_not)) return false;
  const Shape& w = graph.initializers.at(node.input(1)).shape();
  std::vector<int64_t> kernel(w.begin() + 2, w.end());
  auto all = [](const std::vector<int64_t>& v, int64_t value) {
    return std::all_of(v.begin(), v.end(), [&](int64_t e) { return e == value; });
  };
  std::string auto_pad = node.attr_string("auto_pad", "NOTSET");
  return node.attr_ints("strides", std::vector<int64_t>(kernel.size(), 1)) == kernel &&
         all(node.attr_ints("dilations"), 1) && all(node.attr_ints("pads"), 0) &&
         all(node.attr_ints("output_padding"), 0) && !node.has_attr("output_shape") &&
         (auto_pad == "NOTSET" || auto_pad == "VALID") && std::all_of(kernel.begin(), kernel.end(), [](int64_t k) {
           return k >= 1 && k <= 8;
         });
}

std::shared_ptr<const QuantizedWeight> conv_transpose_gemm_weight(const Node& node, const Graph& graph,
                                                                   std::string* why_not) {
  auto decline = [&](const std::string& why) {
    *why_not = why;
    return nullptr;
  };
  if (!node.domain.empty() || node.op_type != "ConvTranspose") return decline("not a ConvTranspose");
  const ValueInfo* x = graph.find_value(node.input(0));
  auto w = graph.initializers.find(node.input(1));
  if (w == graph.initializers.end()) return decline("the weight is not a constant");
  const Tensor& weight = w->second;
  if (weight.dtype() != DType::Float32 && weight.dtype() != DType::Float16) return decline("the weight is not float");
  if (!x || (x->dtype != DType::Float32 && x->dtype != DType::Float16)) return decline("input is not float32 or float16");
  if (weight.rank() != 3 && weight.rank() != 4) return decline("only 1-D and 2-D ConvTranspose have a Halide kernel");
  if (node.attr_int("group", 1) != 1) return decline("grouped ConvTranspose has no Halide kernel");
  if (node.has_input(2)) {
    const ValueInfo* b = graph.find_value(node.input(2));
    if (!b || !is_float(b->dtype)) return decline("bias is not float");
  }
  auto matrix = std::make_shared<QuantizedWeight>();
  matrix->name = node.input(1);
  matrix->pattern = "Float";
  int64_t rest = weight.size() / weight.shape()[0];
  matrix->data = weight.reshaped({weight.shape()[0], rest});  // [C, M*KH*KW]: the GEMM's [K, N]
  return matrix;
}

std::unique_ptr<NodeKernel> make_halide_conv_transpose_kernel(const Node& node, const Graph& graph,
                                                              KernelSource& source, std::string* why_not) {
  std::shared_ptr<const QuantizedWeight> matrix = conv_transpose_gemm_weight(node, graph, why_not);
  if (!matrix) return nullptr;
  // A fused activation (importer/epilogue_fusion.h) runs in the direct kernel's output stage, else after
  // the kernel on an elementwise one.
  KernelEpilogue in_kernel;
  std::unique_ptr<NodeKernel> kernel;
  if (conv_transpose_runs_direct(node, graph)) {
    in_kernel = kernel_epilogue(node, graph);
    if (in_kernel.epilogue.residual) in_kernel = {};  // the direct kernel adds no residual
    kernel = std::make_unique<HalideConvTransposeDirect>(node, graph.initializers.at(node.input(1)), in_kernel.epilogue,
                                                         source);
  } else {
    Shape weight_shape = graph.initializers.at(node.input(1)).shape();
    kernel = std::make_unique<HalideConvTranspose>(node, std::move(matrix), weight_shape, source);
  }
  if (in_kernel.steps == node.epilogue.size()) return kernel;
  return with_epilogue(node, graph, source, std::move(kernel), in_kernel.steps);
}

}  // namespace tetra
