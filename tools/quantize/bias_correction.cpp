#include "tools/quantize/bias_correction.h"

#include <algorithm>

#include "importer/error.h"
#include "importer/onnx_loader.h"
#include "tools/quantize/proto_util.h"

namespace tetra::quantize {
namespace {

bool is_conv(const std::string& op) { return op == "Conv" || op == "ConvTranspose"; }

// The input of `layer` that holds its bias, or -1 where it has none.
int bias_input(const onnx::NodeProto& layer) {
  const std::string& op = layer.op_type();
  if (is_conv(op) || op == "Gemm") return 2;
  if (op == "MatMulNBits") return 5;
  return -1;
}

onnx::TensorProto* find_initializer(onnx::GraphProto& g, const std::string& name) {
  for (auto& t : *g.mutable_initializer())
    if (t.name() == name) return &t;
  return nullptr;
}

}  // namespace

ChannelProbe input_probe(const onnx::NodeProto& layer, DType dtype) {
  const std::string& op = layer.op_type();
  int64_t axis = -1;
  if (is_conv(op))
    axis = 1;
  else if (op == "Gemm")
    axis = attr_int(layer, "transA", 0) ? 0 : 1;
  return {layer.input(0), axis, dtype};
}

std::vector<double> output_shift(const onnx::NodeProto& layer, const Tensor& rounding,
                                 const std::vector<double>& input_mean) {
  const std::string& op = layer.op_type();
  const Shape& s = rounding.shape();
  auto mean_of = [&](int64_t c) {
    check(c < static_cast<int64_t>(input_mean.size()), ErrorKind::Invalid,
          label(layer) + ": its input has fewer channels than its weight reads");
    return input_mean[c];
  };
  std::vector<double> shift;
  if (is_conv(op)) {
    // Conv W [M, C/g, k...]: out m reads in-channel (m / (M/g)) * (C/g) + c.
    // ConvTranspose W [C, M/g, k...]: in-channel c feeds out (c / (C/g)) * (M/g) + m; each output
    // pixel receives on average prod(k) / prod(strides) of the taps.
    const int64_t group = attr_int(layer, "group", 1), taps = rounding.size() / (s[0] * s[1]);
    const bool transposed = op == "ConvTranspose";
    const int64_t out_channels = transposed ? s[1] * group : s[0];
    shift.assign(out_channels, 0.0);
    double tap_share = 1.0;
    if (transposed)
      if (const onnx::AttributeProto* strides = find_attr(layer, "strides"))
        for (int64_t st : strides->ints()) tap_share /= static_cast<double>(std::max<int64_t>(1, st));
    for (int64_t a = 0; a < s[0]; ++a)
      for (int64_t b = 0; b < s[1]; ++b) {
        double sum = 0;
        for (int64_t t = 0; t < taps; ++t) sum += rounding.get((a * s[1] + b) * taps + t);
        if (transposed)
          shift[(a / (s[0] / group)) * s[1] + b] += sum * mean_of(a) * tap_share;
        else
          shift[a] += sum * mean_of((a / (s[0] / group)) * s[1] + b);
      }
    return shift;
  }
  // MatMul and Gemm: W [K, N], or [N, K] with transB.
  const bool transposed = op == "Gemm" && attr_int(layer, "transB", 0) != 0;
  const int64_t K = transposed ? s[1] : s[0], N = transposed ? s[0] : s[1];
  const double alpha = op == "Gemm" ? attr_float(layer, "alpha", 1.0f) : 1.0;
  shift.assign(N, 0.0);
  for (int64_t k = 0; k < K; ++k) {
    const double m = mean_of(k) * alpha;
    for (int64_t n = 0; n < N; ++n) shift[n] += rounding.get(transposed ? n * K + k : k * N + n) * m;
  }
  return shift;
}

void add_output_shift(onnx::GraphProto& g, int layer, const Tensor& shift, const std::string& base_dir) {
  std::map<std::string, int> uses = count_uses(g);
  NameSet names(g);
  const int64_t channels = shift.size();
  // A constant of one value per channel that only this node reads takes the shift in place.
  auto shift_in_place = [&](const std::string& name, double factor) {
    onnx::TensorProto* t = name.empty() ? nullptr : find_initializer(g, name);
    if (!t || uses[name] != 1) return false;
    Tensor bias = tensor_from_proto(*t, base_dir);
    if (bias.size() != channels || bias.shape().empty() || bias.shape().back() != channels) return false;
    for (int64_t c = 0; c < channels; ++c) bias.set(c, bias.get(c) + shift.get(c) * factor);
    tensor_to_proto(bias, name, t);
    return true;
  };
  auto new_constant = [&](const std::string& base, const Tensor& value) {
    std::string name = names.fresh(base);
    tensor_to_proto(value, name, g.add_initializer());
    return name;
  };

  onnx::NodeProto& n = *g.mutable_node(layer);
  const std::string output = n.output(0);
  const int bias = bias_input(n);
  double factor = 1.0;
  if (n.op_type() == "Gemm") {
    const double beta = attr_float(n, "beta", 1.0f);
    factor = beta != 0 ? 1.0 / beta : 0.0;
  }
  if (bias >= 0 && factor != 0) {
    if (n.input_size() > bias && !n.input(bias).empty()) {
      if (shift_in_place(n.input(bias), factor)) return;
    } else {
      Tensor value(shift.dtype(), {channels});  // a copy: Tensors share their bytes
      for (int64_t c = 0; c < channels; ++c) value.set(c, shift.get(c) * factor);
      while (n.input_size() <= bias) n.add_input("");
      n.set_input(bias, new_constant(output + "_bias", value));
      return;
    }
  }
  if (n.op_type() == "MatMul" && uses[output] == 1) {
    for (const auto& reader : g.node())
      if (reader.op_type() == "Add" && reader.input_size() == 2 &&
          (reader.input(0) == output || reader.input(1) == output)) {
        const std::string& other = reader.input(0) == output ? reader.input(1) : reader.input(0);
        if (shift_in_place(other, 1.0)) return;
      }
  }
  // A new Add right after the layer, producing the name its readers know.
  const std::string uncorrected = names.fresh(output + "_uncorrected");
  n.set_output(0, uncorrected);
  onnx::NodeProto add;
  add.set_op_type("Add");
  add.set_name(names.fresh(output + "_bias_correction"));
  add.add_input(uncorrected);
  add.add_input(new_constant(output + "_shift", shift));
  add.add_output(output);
  auto* nodes = g.mutable_node();
  *nodes->Add() = std::move(add);
  std::rotate(nodes->begin() + layer + 1, nodes->end() - 1, nodes->end());
}

}  // namespace tetra::quantize
