// The Halide backend's int4 GEMM family. tetra.QMatMul runs as a compiled QMatMul over the packed int4
// weight; a group-1 tetra.QConv that does not run direct (a 1-D conv, or one with a single output
// position) runs as im2col + the same kernel over the conv weight laid out as a [M, kh*kw*C] matrix.
#include <algorithm>
#include <cstring>
#include <thread>

#include "importer/error.h"
#include "runtime/epilogue.h"
#include "runtime/executor.h"
#include "runtime/halide_backend.h"
#include "runtime/halide_epilogue.h"
#include "runtime/kernel_source.h"
#include "runtime/ops/conv_core.h"
#include "runtime/qmatmul_runner.h"

namespace tetra {

namespace {

Tensor output_like(const OutputPlaces& places, DType dtype, const Shape& shape, const std::vector<float>& values) {
  Tensor out = places.make(0, dtype, shape);
  for (int64_t i = 0; i < out.size(); ++i) out.set(i, values[i]);
  return out;
}

bool wants_int8_activations(const Node& node) { return node.attr_int(kInt8ActivationsAttr, 0) != 0; }

// The epilogue as tuned (dsl::QMatMulWorkload::for_tuning): a lone Relu, which the im2col GEMMs and
// the GPU jobs also apply inside the kernel; they run any other steps after it.
KernelEpilogue lone_relu_epilogue(const Node& node) {
  KernelEpilogue k;
  if (node.epilogue.size() == 1 && node.epilogue[0].domain.empty() && node.epilogue[0].op_type == "Relu")
    k.epilogue = dsl::OutputEpilogue::relu(), k.steps = 1;
  return k;
}

class HalideQMatMul : public NodeKernel {
 public:
  HalideQMatMul(const Node& node, const Graph& graph, bool has_bias, KernelSource& source)
      : node_(node),
        in_kernel_(kernel_epilogue(node, graph)),
        runner_(node.weight, node.attr_flag("trans_b", false), has_bias, in_kernel_.epilogue,
                wants_int8_activations(node), source, node.label()),
        epilogue_(node, graph, source, in_kernel_.steps),
        alpha_(static_cast<float>(node.attr_float("alpha", 1.0))),
        beta_(static_cast<float>(node.attr_float("beta", 1.0))),
        trans_a_(node.attr_flag("trans_a", false)) {}

  std::vector<Tensor> run(const std::vector<Tensor>& inputs) override {
    // Gemm's transA: A [K, M] laid out as [M, K] first (a copy of the activations, not of the weight).
    Tensor transposed;
    if (trans_a_) transposed = transpose_2d(inputs[0]);
    const Tensor& a = trans_a_ ? transposed : inputs[0];
    int64_t K = runner_.K(), N = runner_.N();
    Shape out_shape = a.shape();
    out_shape.back() = N;
    if (a.rank() == 1) out_shape = {N};
    int64_t M = a.size() / K;
    std::vector<float> a_copy, bias_copy;
    const float* a_data = float_data(a, a_copy);
    const float* bias = inputs.size() > 1 && !inputs[1].empty() ? float_data(inputs[1], bias_copy) : nullptr;
    std::vector<float> residual_copy;
    const float* residual = nullptr;
    if (in_kernel_.epilogue.residual) {
      const Tensor& r = inputs.at(in_kernel_.residual_input);
      check(r.shape() == out_shape, ErrorKind::Invalid, [&] {
        return node_.label() + ": residual " + shape_str(r.shape()) + " must have the output's shape " +
               shape_str(out_shape);
      });
      residual = float_data(r, residual_copy);
    }
    Tensor y;
    if (a.dtype() == DType::Float32) {
      y = places_.make(0, DType::Float32, out_shape);
      runner_.run(a_data, M, y.mutable_data<float>(), bias, alpha_, beta_, residual);
    } else {
      std::vector<float> values(M * N);
      runner_.run(a_data, M, values.data(), bias, alpha_, beta_, residual);
      y = output_like(places_, a.dtype(), out_shape, values);
    }
    return {epilogue_.apply(std::move(y), inputs)};
  }

  void set_places(OutputPlaces places) override {
    if (!epilogue_.take_places(places)) places_ = std::move(places);
  }

  KernelInfo info() const override {
    return {node_.label(), "halide", kernel_detail(runner_.describe(), in_kernel_.epilogue, epilogue_),
            runner_.compile_ms() + epilogue_.compile_ms()};
  }

 private:
  static Tensor transpose_2d(const Tensor& x) {
    check(x.rank() == 2, ErrorKind::Invalid, "Gemm's A must be a matrix");
    const int64_t rows = x.shape()[0], cols = x.shape()[1];
    const size_t bytes = size_t(dtype_bits(x.dtype()) / 8);
    Tensor t(x.dtype(), {cols, rows});
    const uint8_t* from = x.bytes();
    uint8_t* to = t.mutable_bytes();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) std::memcpy(to + (c * rows + r) * bytes, from + (r * cols + c) * bytes, bytes);
    return t;
  }

  const Node& node_;
  KernelEpilogue in_kernel_;  // the steps the kernel applies in its output stage
  QMatMulRunner runner_;
  EpilogueSteps epilogue_;
  float alpha_, beta_;
  bool trans_a_;
};

class HalideQConv : public NodeKernel {
 public:
  HalideQConv(const Node& node, const Graph& graph, std::shared_ptr<const QuantizedWeight> matrix, bool has_bias,
              KernelSource& source)
      : node_(node),
        in_kernel_(lone_relu_epilogue(node)),
        runner_(std::move(matrix), true, has_bias, in_kernel_.epilogue, wants_int8_activations(node), source,
                node.label()),
        epilogue_(node, graph, source, in_kernel_.steps) {}

  std::vector<Tensor> run(const std::vector<Tensor>& inputs) override {
    const Tensor& x = inputs[0];
    if (x.shape() != last_x_shape_) {  // attributes read once per input shape
      last_p_ = conv_params(node_, x.shape(), node_.weight->shape());
      last_x_shape_ = x.shape();
      // The input goes channels-last for im2col, and the GEMM's [position, channel] rows go back to
      // NCHW: real permutations unless there is a single position (a squeeze-excite conv's 1x1 input).
      layout_conversions_ = (num_elements(last_p_.in_spatial) > 1) + (num_elements(last_p_.out_spatial) > 1);
    }
    const ConvParams& p = last_p_;
    int64_t C = p.in_channels, M = p.out_channels, R = 1, P = 1;
    for (int64_t k : p.kernel) R *= k;
    for (int64_t o : p.out_spatial) P *= o;
    int64_t K = R * C;
    std::vector<float> x_copy, bias_copy;
    const float* xd = float_data(x, x_copy);
    // im2col: row (n, output position), column (kernel position, channel).
    // Scratch buffers live with the kernel: fresh 7 MB allocations per call cost more in page faults
    // than the copy itself. (An Executor runs one graph at a time, so they are never shared.)
    cols_.resize(p.batch * P * K);
    y_rows_.resize(p.batch * P * M);
    std::vector<float>& cols = cols_;
    std::vector<float>& y_rows = y_rows_;
    im2col(p, xd, cols.data(), nhwc_);
    const float* bias = inputs.size() > 1 && !inputs[1].empty() ? float_data(inputs[1], bias_copy) : nullptr;
    runner_.run(cols.data(), p.batch * P, y_rows.data(), bias, 1.0f, 1.0f);
    // [n, position, m] -> [n, m, position]
    Shape out_shape = {p.batch, M};
    out_shape.insert(out_shape.end(), p.out_spatial.begin(), p.out_spatial.end());
    Tensor y = places_.make(0, x.dtype(), out_shape);
    for (int64_t n = 0; n < p.batch; ++n)
      for (int64_t m = 0; m < M; ++m) {
        const float* src = y_rows.data() + n * P * M + m;
        int64_t base = (n * M + m) * P;
        if (x.dtype() == DType::Float32) {
          float* dst = y.mutable_data<float>() + base;
          for (int64_t q = 0; q < P; ++q) dst[q] = src[q * M];
        } else {
          for (int64_t q = 0; q < P; ++q) y.set(base + q, src[q * M]);
        }
      }
    return {epilogue_.apply(std::move(y), inputs)};
  }

  void set_places(OutputPlaces places) override {
    if (!epilogue_.take_places(places)) places_ = std::move(places);
  }

  KernelInfo info() const override {
    return {node_.label(), "halide", kernel_detail("im2col + " + runner_.describe(), in_kernel_.epilogue, epilogue_),
            runner_.compile_ms() + epilogue_.compile_ms(), layout_conversions_};
  }

 private:
  // Spatial rank 1 or 2 (a 1-D conv is a 2-D conv of height 1). The input is first laid out
  // channels-last, so each (output position, kernel position) copies one contiguous run of C floats.
  static void im2col(const ConvParams& p, const float* x, float* cols, std::vector<float>& nhwc) {
    const Conv2d g = Conv2d::of(p);
    const int64_t H = g.H, W = g.W, OH = g.OH, OW = g.OW, KH = g.KH, KW = g.KW;
    const int64_t SH = g.SH, SW = g.SW, DH = g.DH, DW = g.DW, PH = g.PT, PW = g.PL;
    int64_t C = p.in_channels, K = KH * KW * C;
    nhwc.resize(H * W * C);
    for (int64_t n = 0; n < p.batch; ++n) {
      const float* xn = x + n * C * H * W;
      for (int64_t c = 0; c < C; ++c)
        for (int64_t q = 0; q < H * W; ++q) nhwc[q * C + c] = xn[c * H * W + q];
      // Output rows split over the hardware threads: the copy is memory-bound, and the GEMM that
      // follows is parallel anyway.
      auto rows = [&](int64_t first, int64_t last) {
        for (int64_t oh = first; oh < last; ++oh)
          for (int64_t ow = 0; ow < OW; ++ow) {
            float* row = cols + ((n * OH + oh) * OW + ow) * K;
            for (int64_t i = 0; i < KH; ++i) {
              int64_t ih = oh * SH - PH + i * DH;
              for (int64_t j = 0; j < KW; ++j) {
                int64_t iw = ow * SW - PW + j * DW;
                float* dst = row + (i * KW + j) * C;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W)
                  std::fill(dst, dst + C, 0.0f);
                else
                  std::copy_n(nhwc.data() + (ih * W + iw) * C, C, dst);
              }
            }
          }
      };
      int64_t workers = std::min<int64_t>(host_cores(), OH);
      std::vector<std::thread> pool;
      for (int64_t t = 1; t < workers; ++t) pool.emplace_back(rows, OH * t / workers, OH * (t + 1) / workers);
      rows(0, OH / workers);
      for (std::thread& t : pool) t.join();
    }
  }

  const Node& node_;
  KernelEpilogue in_kernel_;  // a lone Relu, applied by the GEMM
  QMatMulRunner runner_;
  EpilogueSteps epilogue_;
  std::vector<float> cols_, y_rows_, nhwc_;
  Shape last_x_shape_;  // the last call's input shape and its parameters
  ConvParams last_p_;
  int layout_conversions_ = 0;
};

// A bias the kernels take: float, and one value per output column.
bool per_column_bias(const Node& node, const Graph& graph, int64_t N) {
  if (!node.has_input(1)) return true;
  const ValueInfo* b = graph.find_value(node.input(1));
  if (!b || !b->has_shape || !fully_known(b->shape) || !is_float(b->dtype)) return false;
  Shape s = to_shape(b->shape);
  return num_elements(s) == N && s.back() == N;
}

std::string format_problem(const QuantizedWeight& w, bool trans_b) {
  auto format = dsl::int4_format_of(w, trans_b);
  return format.ok() ? "" : format.failure().describe();
}

// The weight of a node that runs as a Halide GEMM, as the GEMM sees it, or the reason it cannot.
struct GemmWeight {
  std::shared_ptr<const QuantizedWeight> matrix;
  bool trans_b = false;
  std::string problem;  // empty when the node runs as a GEMM
};

GemmWeight gemm_weight_of(const Node& node, const Graph& graph) {
  const ValueInfo* x = node.inputs.empty() ? nullptr : graph.find_value(node.input(0));
  bool float_input = x && (x->dtype == DType::Float32 || x->dtype == DType::Float16);
  GemmWeight g;
  if (node.domain == "tetra" && node.op_type == "QMatMul") {
    g.trans_b = node.attr_flag("trans_b", false);
    g.matrix = node.weight;
    int64_t N = node.weight->shape()[g.trans_b ? 0 : 1];
    if (!float_input)
      g.problem = "input is not float";
    else if (!per_column_bias(node, graph, N))
      g.problem = "bias is not one value per output column";
    else
      g.problem = format_problem(*g.matrix, g.trans_b);
    return g;
  }
  if (conv_runs_direct(node, graph)) {
    g.problem = "runs as a direct conv";
    return g;
  }
  if (node.domain == "tetra" && node.op_type == "QConv" && node.attr_int("group", 1) == 1) {
    g.trans_b = true;
    std::optional<QuantizedWeight> matrix = conv_weight_as_matrix(*node.weight);
    int64_t rank = node.weight->shape().size();
    if (!per_column_bias(node, graph, node.weight->shape()[0]))
      g.problem = "bias is not one value per output channel";
    else if (rank != 3 && rank != 4)
      g.problem = "only 1-D and 2-D convs have a Halide kernel";
    else if (!float_input)
      g.problem = "input is not float";
    else if (!matrix)
      g.problem = "weight quantization does not map onto a [M, kh*kw*C] matrix";
    else
      g.problem = format_problem(*matrix, true);
    if (g.problem.empty()) g.matrix = std::make_shared<QuantizedWeight>(std::move(*matrix));
    return g;
  }
  g.problem = "not an int4 GEMM";
  return g;
}

}  // namespace

// The GEMM order of a conv weight is k = (kernel position, channel): blocks along C stay contiguous runs of k when C is
// a multiple of the block size. Still 4-bit: the codes and scales are moved, never dequantized.
std::optional<QuantizedWeight> conv_weight_as_matrix(const QuantizedWeight& w) {
  const Shape& s = w.shape();
  int64_t M = s[0], C = s[1], R = 1;
  for (size_t d = 2; d < s.size(); ++d) R *= s[d];
  bool blocked_c = w.block_size > 0 && w.axis == 1;
  if (w.block_size > 0 && !blocked_c) return std::nullopt;
  if (w.block_size == 0 && w.scale.rank() > 0 && w.axis != 0) return std::nullopt;
  if (blocked_c && C % w.block_size != 0) return std::nullopt;
  QuantizedWeight m = w;
  m.data = Tensor(w.data.dtype(), {M, R * C});
  for (int64_t o = 0; o < M; ++o)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t r = 0; r < R; ++r) {
        int64_t to = (o * R + r) * C + c, from = (o * C + c) * R + r;
        if (w.is_float())
          m.data.set(to, w.data.get(from));
        else
          m.data.set_int(to, w.data.get_int(from));
      }
  if (blocked_c) {
    int64_t G = C / w.block_size;  // scale [M, G, kh, kw] -> [M, R*G]
    auto relayout = [&](const Tensor& t) {
      Tensor out(t.dtype(), {M, R * G});
      for (int64_t o = 0; o < M; ++o)
        for (int64_t g = 0; g < G; ++g)
          for (int64_t r = 0; r < R; ++r) {
            int64_t from = (o * G + g) * R + r, to = (o * R + r) * G + g;
            if (is_float(t.dtype()))
              out.set(to, t.get(from));
            else
              out.set_int(to, t.get_int(from));
          }
      return out;
    };
    m.scale = relayout(w.scale);
    if (!w.zero_point.empty()) m.zero_point = relayout(w.zero_point);
    m.axis = 1;
  }
  return m;
}

std::optional<HalideGemm> halide_gemm_of(const Node& node, const Graph& graph) {
  if (node.domain.empty() && node.op_type == "ConvTranspose") {
    std::string why_not;
    std::shared_ptr<const QuantizedWeight> matrix = conv_transpose_gemm_weight(node, graph, &why_not);
    const ValueInfo* x = graph.find_value(node.input(0));
    if (!matrix || conv_transpose_runs_direct(node, graph) || !x || !x->has_shape || !fully_known(x->shape))
      return std::nullopt;
    Shape xs = to_shape(x->shape);
    int64_t rows = 1;  // one GEMM row per input position, per image
    for (size_t d = 2; d < xs.size(); ++d) rows *= xs[d];
    auto workload = dsl::qmatmul_workload(*matrix, false, rows, false);
    if (!workload.ok()) return std::nullopt;
    return HalideGemm{workload.value(), matrix, false};
  }
  GemmWeight g = gemm_weight_of(node, graph);
  const ValueInfo* y = graph.find_value(node.outputs[0]);
  if (!g.problem.empty() || !y || !y->has_shape || !fully_known(y->shape)) return std::nullopt;
  Shape out = to_shape(y->shape);
  int64_t channels = g.matrix->shape()[g.trans_b ? 0 : 1];
  int64_t rows = num_elements(out) / std::max<int64_t>(channels, 1);
  auto workload = dsl::qmatmul_workload(*g.matrix, g.trans_b, rows, node.has_input(1));
  if (!workload.ok()) return std::nullopt;
  HalideGemm gemm{workload.value(), g.matrix, g.trans_b};
  gemm.workload.epilogue = lone_relu_epilogue(node).epilogue;
  gemm.workload.int8_activations = wants_int8_activations(node);  // a request: the source resolves it
  // A float16 A (a float16 model): float16 kernels may read it as it is; or the float16 opt-in, which
  // lets them round it. A request: resolve_qmatmul decides.
  const ValueInfo* a = graph.find_value(node.input(0));
  gemm.workload.f16_activations = (a && a->dtype == DType::Float16) || node.attr_int(kF16ActivationsAttr, 0) != 0;
  return gemm;
}

std::unique_ptr<NodeKernel> make_halide_gemm_kernel(const Node& node, const Graph& graph, KernelSource& source,
                                                    std::string* why_not) {
  GemmWeight g = gemm_weight_of(node, graph);
  *why_not = g.problem;
  if (!g.problem.empty()) return nullptr;
  if (node.op_type == "QMatMul") return std::make_unique<HalideQMatMul>(node, graph, node.has_input(1), source);
  return std::make_unique<HalideQConv>(node, graph, g.matrix, node.has_input(1), source);
}

}  // namespace tetra
