// Dense, grouped and depthwise 2-D tetra.QConv as direct Halide kernels (dsl/qconv.h, schedules/cpu/conv.h),
// with a residual Add and an activation of the node's epilogue applied in the kernel's output stage.
// The weight is copied once, still 4-bit, into the kernel's buffers; a float16 X is converted to
// float32 for the kernel and the result rounded back. The code comes from a KernelSource.
#include <map>

#include "HalideBuffer.h"
#include "dsl/core/kernel_calls.h"
#include "importer/error.h"
#include "runtime/epilogue.h"
#include "runtime/halide_backend.h"
#include "runtime/halide_epilogue.h"
#include "runtime/ops/conv_core.h"

namespace tetra {
namespace {

// A conv's workload from its resolved parameters and its weight's format.
dsl::QConvWorkload conv_workload(const ConvParams& p, const dsl::ConvInt4Format& format, int64_t block, bool has_bias) {
  dsl::QConvWorkload wl;
  wl.N = p.batch;
  wl.C = p.in_channels;
  wl.H = p.in_spatial[0];
  wl.W = p.in_spatial[1];
  wl.M = p.out_channels;
  wl.group = p.group;
  wl.KH = p.kernel[0];
  wl.KW = p.kernel[1];
  wl.SH = p.strides[0];
  wl.SW = p.strides[1];
  wl.DH = p.dilations[0];
  wl.DW = p.dilations[1];
  wl.pad_top = p.pads_begin[0];
  wl.pad_left = p.pads_begin[1];
  wl.pad_bottom = p.pads_end[0];
  wl.pad_right = p.pads_end[1];
  wl.OH = p.out_spatial[0];
  wl.OW = p.out_spatial[1];
  // A pointwise conv (1x1, stride 1, no padding) reads and writes each plane in order, so the plane is
  // one row of H*W: full vectors and long tiles where a 7x7 or 14x14 map would leave lanes idle.
  if (wl.KH == 1 && wl.KW == 1 && wl.SH == 1 && wl.SW == 1 && wl.pad_top == 0 && wl.pad_left == 0 &&
      wl.pad_bottom == 0 && wl.pad_right == 0) {
    wl.W = wl.OW = wl.H * wl.W;
    wl.H = wl.OH = 1;
  }
  wl.format = format;
  wl.block = block;
  wl.has_bias = has_bias;
  return wl;
}

class HalideDirectConv : public NodeKernel {
 public:
  HalideDirectConv(const Node& node, std::shared_ptr<const dsl::ConvInt4Buffers> weight, KernelEpilogue epilogue,
                   KernelSource& source)
      : node_(node),
        weight_(std::move(weight)),
        block_(node.weight->block_size),
        epilogue_(std::move(epilogue)),
        source_(source) {}

  std::vector<Tensor> run(const std::vector<Tensor>& inputs) override {
    const Tensor& x = inputs[0];
    const Tensor* bias = inputs.size() > 1 && !inputs[1].empty() ? &inputs[1] : nullptr;
    // The same input shape as the last call (every call of a model with fixed shapes): its parameters,
    // workload and code as they were, with no attributes to read or key to build.
    if (!last_code_ || x.shape() != last_x_shape_ || (bias != nullptr) != last_has_bias_) {
      last_p_ = conv_params(node_, x.shape(), node_.weight->shape());
      last_wl_ = workload_of(last_p_, bias != nullptr);
      last_code_ = &code_for(last_wl_);
      last_x_shape_ = x.shape();
      last_has_bias_ = bias != nullptr;
    }
    const ConvParams& p = last_p_;
    const dsl::QConvWorkload& wl = last_wl_;
    const KernelCode& code = *last_code_;
    check(!bias || bias->shape() == Shape{p.out_channels}, ErrorKind::Invalid, [&] {
      return node_.label() + ": bias " + shape_str(bias ? bias->shape() : Shape{}) + " must be [" +
             std::to_string(p.out_channels) + "]";
    });

    std::vector<float> x_copy, bias_copy, y_copy;
    Halide::Runtime::Buffer<float> X(const_cast<float*>(float_data(x, x_copy)),
                                     {int(wl.W), int(wl.H), int(wl.C), int(wl.N)});
    Halide::Runtime::Buffer<float> B;
    if (bias) B = Halide::Runtime::Buffer<float>(const_cast<float*>(float_data(*bias, bias_copy)), int(wl.M));
    Tensor y = places_.make(0, x.dtype(), {wl.N, wl.M, p.out_spatial[0], p.out_spatial[1]});
    float* y_data = y.dtype() == DType::Float32 ? y.mutable_data<float>() : nullptr;
    if (!y_data) {
      y_copy.resize(size_t(y.size()));
      y_data = y_copy.data();
    }
    Halide::Runtime::Buffer<float> Y(y_data, {int(wl.OW), int(wl.OH), int(wl.M), int(wl.N)});
    std::vector<float> residual_copy;
    Halide::Runtime::Buffer<float> R;
    if (wl.epilogue.residual) {
      const Tensor& r = inputs.at(epilogue_.residual_input);
      check(r.shape() == y.shape(), ErrorKind::Invalid, [&] {
        return node_.label() + ": residual " + shape_str(r.shape()) + " must have the output's shape " +
               shape_str(y.shape());
      });
      R = Halide::Runtime::Buffer<float>(const_cast<float*>(float_data(r, residual_copy)),
                                         {int(wl.OW), int(wl.OH), int(wl.M), int(wl.N)});
    }
    dsl::QConvCall call{X.raw_buffer(), weight_.get(), Y.raw_buffer(), bias ? B.raw_buffer() : nullptr,
                        wl.epilogue.residual ? R.raw_buffer() : nullptr};
    dsl::Status st = dsl::call_qconv(*code.pipeline, wl, wl, call);
    check(st.ok(), ErrorKind::Invalid,
          [&] { return node_.label() + ": Halide kernel failed: " + (st.ok() ? "" : st.failure().describe()); });
    if (y.dtype() != DType::Float32)
      for (int64_t i = 0; i < y.size(); ++i) y.set(i, y_copy[size_t(i)]);  // rounds once, to float16
    return {y};
  }

  KernelInfo info() const override {
    std::string detail;
    for (const auto& [key, code] : codes_) detail += (detail.empty() ? "" : "; ") + code.source + ": " + code.schedule;
    if (!epilogue_.epilogue.empty()) detail += "; in the kernel: " + epilogue_.epilogue.describe();
    return {node_.label(), "halide", detail.empty() ? "direct conv, not compiled yet" : detail, compile_ms_};
  }

 private:
  dsl::QConvWorkload workload_of(const ConvParams& p, bool has_bias) const {
    dsl::QConvWorkload wl = conv_workload(p, weight_->format, block_, has_bias);
    wl.epilogue = epilogue_.epilogue;
    return wl;
  }

  // The code for this shape (its schedule is the source's choice).
  const KernelCode& code_for(const dsl::QConvWorkload& wl) {
    std::string key = wl.key();
    auto it = codes_.find(key);
    if (it != codes_.end()) return it->second;
    KernelRequest request;
    request.kind = KernelRequest::Kind::QConv;
    request.node = node_.label();
    request.qconv = wl;
    KernelCode code = source_.get(request);
    compile_ms_ += code.compile_ms;
    return codes_.emplace(key, std::move(code)).first->second;
  }

  const Node& node_;
  std::shared_ptr<const dsl::ConvInt4Buffers> weight_;  // from the source, in the code's memory
  int64_t block_;
  KernelEpilogue epilogue_;
  KernelSource& source_;
  std::map<std::string, KernelCode> codes_;  // by workload key
  Shape last_x_shape_;                        // the last call's input shape, and what it resolved to
  bool last_has_bias_ = false;
  ConvParams last_p_;
  dsl::QConvWorkload last_wl_;
  const KernelCode* last_code_ = nullptr;  // in codes_ (map nodes stay put)
  double compile_ms_ = 0;
};

}  // namespace

std::unique_ptr<NodeKernel> make_halide_conv_kernel(const Node& node, const Graph& graph, KernelSource& source,
                                                    std::string* why_not) {
  if (node.domain != "tetra" || node.op_type != "QConv" || !node.weight) {
    *why_not = "not a tetra.QConv with a packed weight";
    return nullptr;
  }
  const ValueInfo* x = node.inputs.empty() ? nullptr : graph.find_value(node.input(0));
  const ValueInfo* b = node.has_input(1) ? graph.find_value(node.input(1)) : nullptr;
  int64_t M = node.weight->shape()[0];
  bool bias_ok = !node.has_input(1) || (b && is_float(b->dtype) && b->has_shape && fully_known(b->shape) &&
                                        to_shape(b->shape) == Shape{M});
  if (node.weight->shape().size() != 4) {
    *why_not = "only 2-D grouped convs have a Halide kernel";
  } else if (!x || (x->dtype != DType::Float32 && x->dtype != DType::Float16)) {
    *why_not = "input is not float32 or float16";
  } else if (x->has_shape && x->shape.size() != 4) {
    *why_not = "input is not [N, C, H, W]";
  } else if (!bias_ok) {
    *why_not = "bias is not one float per output channel";
  } else {
    auto weight = source.prepare_conv_weight(*node.weight);
    if (weight.ok()) {
      KernelEpilogue epilogue = kernel_epilogue(node, graph);
      size_t steps = epilogue.steps;
      auto kernel = std::make_unique<HalideDirectConv>(node, std::move(weight).value(), std::move(epilogue), source);
      if (steps == node.epilogue.size()) return kernel;
      return with_epilogue(node, graph, source, std::move(kernel), steps);
    }
    *why_not = weight.failure().describe();
  }
  return nullptr;
}

bool conv_runs_direct(const Node& node, const Graph& graph) {
  // Every 2-D conv: on the Zen 4 VM (default schedules, 2 threads) 3x3 64->64 56x56 int4 ran in 0.9 ms
  // direct against 2.2-2.8 ms as im2col + GEMM, whose 7 MB im2col copy alone cost as much as the GEMM;
  // in the example CNN a 1x1 32->32 conv at 32x32 in 0.07 against 0.19 ms, a stride-2 3x3 32->64 in
  // 0.12 against 0.20 ms.
  if (node.domain != "tetra" || node.op_type != "QConv" || !node.weight || node.weight->shape().size() != 4)
    return false;
  // Except a dense conv with one output position per image (squeeze-excite's 1x1 convs after a global
  // pool): that is a GEMV, whose im2col is a copy of the input, and the direct kernel's output tiles
  // would compute dozens of positions for one (0.09 ms against a few microseconds).
  const ValueInfo* x = node.inputs.empty() ? nullptr : graph.find_value(node.input(0));
  if (node.attr_int("group", 1) == 1 && x && x->has_shape && fully_known(x->shape) && x->shape.size() == 4) {
    ConvParams p = conv_params(node, to_shape(x->shape), node.weight->shape());
    int64_t positions = 1;
    for (int64_t o : p.out_spatial) positions *= o;
    if (positions == 1 && conv_weight_as_matrix(*node.weight)) return false;  // else blocks along C split a row
  }
  return true;
}

std::optional<HalideConv> halide_conv_of(const Node& node, const Graph& graph) {
  if (!conv_runs_direct(node, graph)) return std::nullopt;
  const ValueInfo* x = node.inputs.empty() ? nullptr : graph.find_value(node.input(0));
  if (!x || !x->has_shape || !fully_known(x->shape) || x->shape.size() != 4) return std::nullopt;
  auto format = dsl::conv_int4_format_of(*node.weight);
  if (!format) return std::nullopt;
  ConvParams p = conv_params(node, to_shape(x->shape), node.weight->shape());
  return HalideConv{conv_workload(p, format.value(), node.weight->block_size, node.has_input(1)), node.weight};
}

std::optional<HalideConv> halide_conv_as_2d(const Node& node, const Graph& graph) {
  if (std::optional<HalideConv> conv = halide_conv_of(node, graph)) return conv;
  if (node.domain != "tetra" || node.op_type != "QConv" || !node.weight || node.weight->shape().size() != 3)
    return std::nullopt;
  const ValueInfo* x = node.inputs.empty() ? nullptr : graph.find_value(node.input(0));
  if (!x || !x->has_shape || !fully_known(x->shape) || x->shape.size() != 3) return std::nullopt;
  // A unit dim before the kernel's: the packed bytes and the quantization grid (a scale per block or per
  // output channel) stay as they are.
  auto lift = [](const Tensor& t) {
    if (t.rank() != 3) return t;
    Shape s = t.shape();
    s.insert(s.begin() + 2, 1);
    return t.reshaped(s);
  };
  auto weight = std::make_shared<QuantizedWeight>(*node.weight);
  weight->data = lift(weight->data);
  weight->scale = lift(weight->scale);
  weight->zero_point = lift(weight->zero_point);
  if (weight->scale.rank() == 4 && weight->axis >= 2) weight->axis += 1;
  auto format = dsl::conv_int4_format_of(*weight);
  if (!format) return std::nullopt;
  ConvParams p = conv_params(node, to_shape(x->shape), node.weight->shape());
  p.spatial_rank = 2;
  for (Shape* dims : {&p.in_spatial, &p.kernel, &p.out_spatial}) dims->insert(dims->begin(), 1);
  for (std::vector<int64_t>* v : {&p.strides, &p.dilations}) v->insert(v->begin(), 1);
  for (std::vector<int64_t>* v : {&p.pads_begin, &p.pads_end}) v->insert(v->begin(), 0);
  return HalideConv{conv_workload(p, format.value(), weight->block_size, node.has_input(1)), weight};
}

}  // namespace tetra
