#include "examples/exported_models.h"

#include <algorithm>
#include <cmath>

#include "examples/example_models.h"
#include "importer/error.h"

namespace tetra {

namespace {

constexpr int64_t kInt4Opset = 21;
constexpr int64_t kInt4Block = 32;

// The IR version an exporter writes with each opset (the one released with it); 10 for int4 types.
int64_t ir_version_of(int64_t opset) {
  if (opset >= 21) return 10;
  if (opset >= 11) return 6;
  return opset == 10 ? 5 : 4;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// An int4 weight in DequantizeLinear's layout: codes of `weight`'s shape, float32 scales, and the
// DequantizeLinear attributes that say how scales map to codes.
struct Int4Weight {
  Tensor codes, scales;
  std::vector<Attr> attrs;
};

// Symmetric round-to-nearest: scale = max|w| / 7 per block of kInt4Block along `reduction_axis`, or
// per index of `output_axis` when the reduction axis is no longer than one block. Codes stay in
// [-7, 7] so that the largest weight of each block is exact.
Int4Weight quantize_int4(const Tensor& w, int64_t reduction_axis, int64_t output_axis) {
  const Shape& shape = w.shape();
  const bool blocked = shape[reduction_axis] > kInt4Block;
  Shape scale_shape = blocked ? shape : Shape{shape[output_axis]};
  if (blocked) scale_shape[reduction_axis] = ceil_div(shape[reduction_axis], kInt4Block);
  const std::vector<int64_t> strides = strides_of(shape), scale_strides = strides_of(scale_shape);
  auto scale_index = [&](int64_t i) {
    if (!blocked) return (i / strides[output_axis]) % shape[output_axis];
    int64_t index = 0;
    for (size_t d = 0; d < shape.size(); ++d) {
      int64_t coord = (i / strides[d]) % shape[d];
      if (static_cast<int64_t>(d) == reduction_axis) coord /= kInt4Block;
      index += coord * scale_strides[d];
    }
    return index;
  };
  std::vector<double> max_abs(num_elements(scale_shape), 0.0);
  for (int64_t i = 0; i < w.size(); ++i) {
    double& m = max_abs[scale_index(i)];
    m = std::max(m, std::fabs(w.get(i)));
  }
  Int4Weight q{Tensor(DType::Int4, shape), Tensor(DType::Float32, scale_shape), {}};
  for (int64_t s = 0; s < q.scales.size(); ++s) q.scales.set(s, max_abs[s] > 0 ? max_abs[s] / 7 : 1.0);
  for (int64_t i = 0; i < w.size(); ++i) {
    double code = std::nearbyint(w.get(i) / q.scales.get(scale_index(i)));
    q.codes.set(i, std::clamp(code, -7.0, 7.0));
  }
  if (blocked)
    q.attrs = {{"axis", reduction_axis}, {"block_size", kInt4Block}};
  else
    q.attrs = {{"axis", output_axis}};
  return q;
}

std::vector<int64_t> same_pads(int64_t kernel) {
  int64_t p = kernel / 2;
  return {p, p, p, p};
}

// Writes a model as an exporter does: every constant a `Constant` node, each operator in the form of
// the model's opset (the one place that knows those forms), activations and LayerNorm written out.
class Exporter {
 public:
  Exporter(std::mt19937& rng, const ExportedModelOptions& options, int64_t fp32_opset, const std::string& name)
      : rng_(rng), int4_(options.int4), opset_(options.int4 ? kInt4Opset : fp32_opset), b_(opset_, name) {
    b_.proto().set_ir_version(ir_version_of(opset_));
  }

  ModelBuilder& builder() { return b_; }

  // A node with one output, named `output` or a fresh name.
  std::string op(const std::string& type, const std::vector<std::string>& inputs, const std::vector<Attr>& attrs = {},
                 std::string output = "") {
    if (output.empty()) output = fresh(type);
    b_.node(type, inputs, {output}, attrs);
    return output;
  }

  // ---- constants -----------------------------------------------------------------------------
  std::string constant(const Tensor& value) { return op("Constant", {}, {{"value", value}}); }
  std::string scalar(double value) { return constant(Tensor::scalar(DType::Float32, value)); }
  std::string ints(const std::vector<int64_t>& values) {
    return constant(Tensor::from_ints(DType::Int64, {static_cast<int64_t>(values.size())}, values));
  }
  Tensor uniform(const Shape& shape, double lo, double hi) { return example_uniform(rng_, shape, lo, hi); }
  // Variance gain / fan_in: 1 for a linear layer, 2 before a Relu (He), 3 before a HardSwish (which
  // keeps a third of a unit normal's second moment).
  Tensor he(const Shape& shape, int64_t fan_in, double gain) {
    double a = std::sqrt(3.0 * gain / static_cast<double>(fan_in));
    return uniform(shape, -a, a);
  }
  // The weight of a Conv, MatMul or Gemm: a Constant, or in the int4 model an int4 initializer
  // behind DequantizeLinear.
  std::string weight(const Tensor& w, int64_t reduction_axis, int64_t output_axis) {
    if (!int4_) return constant(w);
    Int4Weight q = quantize_int4(w, reduction_axis, output_axis);
    std::string name = fresh("weight");
    b_.initializer(name + "_int4", q.codes);
    b_.initializer(name + "_scale", q.scales);
    return op("DequantizeLinear", {name + "_int4", name + "_scale"}, q.attrs);
  }

  // ---- layers --------------------------------------------------------------------------------
  // A Conv with "same" pads; with a bias of U(-0.1, 0.1) + bias_offset when `bias`.
  std::string conv(const std::string& x, int64_t cin, int64_t cout, int64_t kernel, int64_t stride, int64_t group,
                   double gain, bool bias = false, double bias_offset = 0) {
    const int64_t fan_in = cin / group * kernel * kernel;
    std::vector<std::string> inputs = {x, weight(he({cout, cin / group, kernel, kernel}, fan_in, gain), 1, 0)};
    if (bias) inputs.push_back(constant(uniform({cout}, bias_offset - 0.1, bias_offset + 0.1)));
    return op("Conv", inputs,
              {{"dilations", std::vector<int64_t>{1, 1}},
               {"group", group},
               {"kernel_shape", std::vector<int64_t>{kernel, kernel}},
               {"pads", same_pads(kernel)},
               {"strides", std::vector<int64_t>{stride, stride}}});
  }
  std::string batchnorm(const std::string& x, int64_t c) {
    return op("BatchNormalization",
              {x, constant(uniform({c}, 0.8, 1.2)), constant(uniform({c}, -0.1, 0.1)),
               constant(uniform({c}, -0.1, 0.1)), constant(uniform({c}, 0.8, 1.2))},
              {{"epsilon", 1e-5f}, {"momentum", 0.9f}});
  }
  // Conv (no bias) + BatchNormalization, the exporter's form of a conv layer with a norm.
  std::string conv_bn(const std::string& x, int64_t cin, int64_t cout, int64_t kernel, int64_t stride,
                      int64_t group = 1, double gain = 2) {
    return batchnorm(conv(x, cin, cout, kernel, stride, group, gain), cout);
  }
  // A 2x2 stride-2 ConvTranspose (learned x2 upsampling); its weight stays float32 in the int4 model.
  std::string conv_transpose(const std::string& x, int64_t cin, int64_t cout, bool bias, double gain) {
    std::vector<std::string> inputs = {x, constant(he({cin, cout, 2, 2}, cin, gain))};
    if (bias) inputs.push_back(constant(uniform({cout}, -0.1, 0.1)));
    return op("ConvTranspose", inputs,
              {{"kernel_shape", std::vector<int64_t>{2, 2}}, {"strides", std::vector<int64_t>{2, 2}}});
  }
  // torch's nn.Linear on a rank > 2 input: MatMul by W [k, n], then Add of the bias.
  std::string linear(const std::string& x, int64_t k, int64_t n, double gain = 1) {
    std::string y = op("MatMul", {x, weight(he({k, n}, k, gain), 0, 1)});
    return op("Add", {y, constant(uniform({n}, -0.1, 0.1))});
  }
  // nn.Linear on a 2-D input: Gemm with W [n, k] and transB = 1.
  std::string gemm(const std::string& x, int64_t k, int64_t n, double gain = 1, const std::string& output = "") {
    return op("Gemm", {x, weight(he({n, k}, k, gain), 1, 0), constant(uniform({n}, -0.1, 0.1))},
              {{"alpha", 1.0f}, {"beta", 1.0f}, {"transB", 1}}, output);
  }

  // ---- operators whose form depends on the opset ------------------------------------------------
  std::string clip(const std::string& x, double lo, double hi) {
    if (opset_ < 11) return op("Clip", {x}, {{"min", float(lo)}, {"max", float(hi)}});
    return op("Clip", {x, scalar(lo), scalar(hi)});
  }
  std::string reduce_mean(const std::string& x, int64_t axis, bool keepdims) {
    if (opset_ < 18)
      return op("ReduceMean", {x}, {{"axes", std::vector<int64_t>{axis}}, {"keepdims", int64_t(keepdims)}});
    return op("ReduceMean", {x, ints({axis})}, {{"keepdims", int64_t(keepdims)}});
  }
  std::string squeeze(const std::string& x, int64_t axis) {
    if (opset_ < 13) return op("Squeeze", {x}, {{"axes", std::vector<int64_t>{axis}}});
    return op("Squeeze", {x, ints({axis})});
  }
  // Softmax over the last axis, which before opset 13 (flatten to 2-D at `axis`) means the same.
  std::string softmax(const std::string& x, int64_t last_axis, const std::string& output = "") {
    return op("Softmax", {x}, {{"axis", last_axis}}, output);
  }
  // Nearest upsampling of an NCHW tensor by an integer factor, as torch exports F.interpolate.
  std::string resize_nearest(const std::string& x, int64_t factor) {
    std::string scales = constant(Tensor::from_doubles(DType::Float32, {4}, {1, 1, double(factor), double(factor)}));
    if (opset_ < 11) return op("Resize", {x, scales}, {{"mode", "nearest"}});
    return op("Resize", {x, constant(Tensor(DType::Float32, {0})), scales},
              {{"coordinate_transformation_mode", "asymmetric"}, {"mode", "nearest"}, {"nearest_mode", "floor"}});
  }
  std::string reshape(const std::string& x, const std::vector<int64_t>& shape) {
    return op("Reshape", {x, ints(shape)});
  }
  std::string transpose(const std::string& x, const std::vector<int64_t>& perm) {
    return op("Transpose", {x}, {{"perm", perm}});
  }

  // ---- activations and norms written out --------------------------------------------------------
  std::string relu(const std::string& x) { return op("Relu", {x}); }
  std::string hardswish(const std::string& x) {
    return op("Div", {op("Mul", {x, clip(op("Add", {x, scalar(3)}), 0, 6)}), scalar(6)});
  }
  std::string hardsigmoid(const std::string& x) {
    return op("Div", {clip(op("Add", {x, scalar(3)}), 0, 6), scalar(6)});
  }
  std::string gelu(const std::string& x) {
    std::string erf = op("Erf", {op("Div", {x, scalar(std::sqrt(2.0))})});
    return op("Mul", {op("Mul", {x, op("Add", {erf, scalar(1)})}), scalar(0.5)});
  }
  // LayerNorm over the last axis `axis` (of size d).
  std::string layer_norm(const std::string& x, int64_t axis, int64_t d) {
    std::string centred = op("Sub", {x, reduce_mean(x, axis, true)});
    std::string variance = reduce_mean(op("Pow", {centred, scalar(2)}), axis, true);
    std::string normed = op("Div", {centred, op("Sqrt", {op("Add", {variance, scalar(1e-5)})})});
    return op("Add", {op("Mul", {normed, constant(uniform({d}, 0.8, 1.2))}), constant(uniform({d}, -0.1, 0.1))});
  }

 private:
  std::string fresh(const std::string& prefix) { return prefix + "_" + std::to_string(count_++); }

  std::mt19937& rng_;
  bool int4_;
  int64_t opset_;
  ModelBuilder b_;
  int count_ = 0;
};

// The input's size: the options', else the real one; each a positive multiple of `multiple`.
std::pair<int64_t, int64_t> image_size(const ExportedModelOptions& options, const std::string& model,
                                       int64_t real_height, int64_t real_width, int64_t multiple) {
  int64_t h = options.height ? options.height : real_height, w = options.width ? options.width : real_width;
  check(h > 0 && w > 0 && h % multiple == 0 && w % multiple == 0, ErrorKind::Invalid,
        "the " + model + "'s input must be a positive multiple of " + std::to_string(multiple) +
            " high and wide, got " + std::to_string(h) + "x" + std::to_string(w));
  return {h, w};
}

}  // namespace

ModelBuilder exported_detector(std::mt19937& rng, const ExportedModelOptions& options) {
  auto [height, width] = image_size(options, "detector", 640, 640, 32);
  Exporter e(rng, options, 11, "detector");
  e.builder().input("x", DType::Float32, {1, 3, height, width}).output("maps", DType::Float32);

  // Backbone: a stride-2 stem, then per stage a stride-2 depthwise-separable block and a residual one.
  auto separable = [&](const std::string& x, int64_t cin, int64_t cout, int64_t stride) {
    std::string dw = e.relu(e.conv_bn(x, cin, cin, 3, stride, cin));
    return e.relu(e.conv_bn(dw, cin, cout, 1, 1));
  };
  std::string x = e.relu(e.conv_bn("x", 3, 16, 3, 2));
  std::vector<std::string> levels;  // C2..C5, strides 4..32
  const std::vector<int64_t> channels = {16, 24, 40, 80, 160};
  for (size_t s = 1; s < channels.size(); ++s) {
    x = separable(x, channels[s - 1], channels[s], 2);
    x = e.op("Add", {separable(x, channels[s], channels[s], 1), x});
    levels.push_back(x);
  }

  // FPN neck (DBNet's): 1x1 laterals to 64 channels, top-down nearest x2 + Add, a 3x3 conv per level
  // to 16 channels, each level brought to stride 4 (nearest x8/x4, a stride-2 ConvTranspose for x2)
  // and concatenated.
  const int64_t inner = 64, out = inner / 4;
  std::vector<std::string> lateral(4), merged(4), outputs(4);
  for (int i = 0; i < 4; ++i) lateral[i] = e.conv(levels[i], channels[i + 1], inner, 1, 1, 1, 1);
  merged[3] = lateral[3];
  for (int i = 2; i >= 0; --i) merged[i] = e.op("Add", {lateral[i], e.resize_nearest(merged[i + 1], 2)});
  for (int i = 0; i < 4; ++i) outputs[i] = e.conv(merged[i], inner, out, 3, 1, 1, 1);
  std::string fused = e.op("Concat",
                           {e.resize_nearest(outputs[3], 8), e.resize_nearest(outputs[2], 4),
                            e.conv_transpose(outputs[1], out, out, true, 1), outputs[0]},
                           {{"axis", 1}});

  // Head: conv + BN + Relu, two stride-2 ConvTransposes back to the input size, Sigmoid.
  std::string h = e.relu(e.conv_bn(fused, inner, out, 3, 1));
  h = e.relu(e.batchnorm(e.conv_transpose(h, out, out, false, 2), out));
  e.op("Sigmoid", {e.conv_transpose(h, out, 1, true, 1)}, {}, "maps");
  return e.builder();
}

ModelBuilder exported_classifier(std::mt19937& rng, const ExportedModelOptions& options) {
  auto [height, width] = image_size(options, "classifier", 224, 224, 32);
  Exporter e(rng, options, 10, "classifier");
  e.builder().input("x", DType::Float32, {1, 3, height, width}).output("probs", DType::Float32);

  auto activation = [&](const std::string& x, bool hardswish) { return hardswish ? e.hardswish(x) : e.relu(x); };
  auto gain = [](bool hardswish) { return hardswish ? 3.0 : 2.0; };
  // Squeeze-excite: channel weights from the global average, through a bottleneck of a quarter (a
  // multiple of 8) and a HardSigmoid. The gate's bias centres it near 1, so that activations keep
  // their size through the eleven blocks.
  auto squeeze_excite = [&](const std::string& x, int64_t c) {
    int64_t mid = std::max<int64_t>(8, (c / 4 + 4) / 8 * 8);
    std::string s = e.relu(e.conv(e.op("GlobalAveragePool", {x}), c, mid, 1, 1, 1, 2, true));
    s = e.hardsigmoid(e.conv(s, mid, c, 1, 1, 1, 1, true, 2.5));
    return e.op("Mul", {x, s});
  };
  struct Block {
    int64_t kernel, expanded, out;
    bool se, hardswish;
    int64_t stride;
  };
  // MobileNetV3-small's inverted residual blocks.
  const std::vector<Block> blocks = {
      {3, 16, 16, true, false, 2}, {3, 72, 24, false, false, 2}, {3, 88, 24, false, false, 1},
      {5, 96, 40, true, true, 2},  {5, 240, 40, true, true, 1},  {5, 240, 40, true, true, 1},
      {5, 120, 48, true, true, 1}, {5, 144, 48, true, true, 1},  {5, 288, 96, true, true, 2},
      {5, 576, 96, true, true, 1}, {5, 576, 96, true, true, 1}};
  std::string x = e.hardswish(e.conv_bn("x", 3, 16, 3, 2, 1, 3));
  int64_t c = 16;
  for (const Block& b : blocks) {
    std::string y = x;
    if (b.expanded != c) y = activation(e.conv_bn(y, c, b.expanded, 1, 1, 1, gain(b.hardswish)), b.hardswish);
    y = activation(e.conv_bn(y, b.expanded, b.expanded, b.kernel, b.stride, b.expanded, gain(b.hardswish)),
                   b.hardswish);
    if (b.se) y = squeeze_excite(y, b.expanded);
    y = e.conv_bn(y, b.expanded, b.out, 1, 1, 1, 1);
    x = b.stride == 1 && b.out == c ? e.op("Add", {y, x}) : y;
    c = b.out;
  }
  x = e.hardswish(e.conv_bn(x, c, 576, 1, 1, 1, 3));
  x = e.op("Flatten", {e.op("GlobalAveragePool", {x})}, {{"axis", 1}});
  x = e.hardswish(e.gemm(x, 576, 1024, 3));
  // Logits of a few units, so that the probabilities are those of a confident classifier.
  e.softmax(e.gemm(x, 1024, 1000, 4), 1, "probs");
  return e.builder();
}

ModelBuilder exported_recognizer(std::mt19937& rng, const ExportedModelOptions& options) {
  auto [height, width] = image_size(options, "recognizer", 32, 320, 4);
  const int64_t dim = 128, heads = 4, head_dim = dim / heads, mlp = 4 * dim, depth = 3, classes = 97;
  const int64_t rows = height / 4, cols = width / 4, tokens = rows * cols;
  Exporter e(rng, options, 9, "recognizer");
  e.builder().input("x", DType::Float32, {1, 3, height, width}).output("probs", DType::Float32);

  // Conv stem to stride 4, then the feature map as a sequence [1, tokens, dim] plus a position embedding.
  std::string x = e.hardswish(e.conv_bn("x", 3, dim / 2, 3, 2, 1, 3));
  x = e.hardswish(e.conv_bn(x, dim / 2, dim, 3, 2, 1, 3));
  x = e.transpose(e.reshape(x, {0, 0, -1}), {0, 2, 1});
  x = e.op("Add", {x, e.constant(e.uniform({1, tokens, dim}, -0.1, 0.1))});

  for (int64_t block = 0; block < depth; ++block) {
    // Attention: one QKV projection split into heads as torch exports qkv[0], qkv[1], qkv[2].
    std::string qkv = e.linear(e.layer_norm(x, 2, dim), dim, 3 * dim);
    qkv = e.transpose(e.reshape(qkv, {0, 0, 3, heads, head_dim}), {2, 0, 3, 1, 4});  // [3, 1, heads, tokens, head_dim]
    auto part = [&](int64_t i) {
      return e.op("Gather", {qkv, e.constant(Tensor::scalar(DType::Int64, double(i)))}, {{"axis", 0}});
    };
    std::string q = part(0), k = part(1), v = part(2);
    std::string scores = e.op("MatMul", {q, e.transpose(k, {0, 1, 3, 2})});
    scores = e.softmax(e.op("Mul", {scores, e.scalar(1.0 / std::sqrt(double(head_dim)))}), 3);
    std::string attended = e.reshape(e.transpose(e.op("MatMul", {scores, v}), {0, 2, 1, 3}), {0, 0, dim});
    x = e.op("Add", {x, e.linear(attended, dim, dim)});
    // MLP with GELU.
    std::string hidden = e.gelu(e.linear(e.layer_norm(x, 2, dim), dim, mlp, 2));
    x = e.op("Add", {x, e.linear(hidden, mlp, dim)});
  }

  // CTC head: average over the feature map's rows, then per column a linear layer to the classes.
  x = e.reshape(e.transpose(e.layer_norm(x, 2, dim), {0, 2, 1}), {0, 0, rows, cols});
  x = e.transpose(e.squeeze(e.reduce_mean(x, 2, true), 2), {0, 2, 1});  // [1, cols, dim]
  e.softmax(e.linear(x, dim, classes, 8), 2, "probs");
  return e.builder();
}

const std::vector<ExportedModel>& exported_models() {
  static const std::vector<ExportedModel> models = {{"detector", 11, 640, 640, exported_detector},
                                                    {"classifier", 10, 224, 224, exported_classifier},
                                                    {"recognizer", 9, 32, 320, exported_recognizer}};
  return models;
}

}  // namespace tetra
