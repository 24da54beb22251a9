// Bias correction of int4 layers (tools/quantize/bias_correction.h): the predicted mean output shift
// of a weight error, and writing a shift into each kind of layer, both checked by running the
// models on tetra's reference evaluator.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>

#include "runtime/tensor_io.h"
#include "tests/ort_oracle.h"
#include "tests/test_support.h"
#include "tools/model_builder.h"
#include "tools/quantize/bias_correction.h"
#include "tools/quantize/quantizer.h"

using namespace tetra;
using namespace tetra::test;

namespace {

// One layer reading x through weight "w", as ONNX writes it.
struct LayerCase {
  std::string name;
  Shape x, w;
  int64_t out_channels;
  int64_t channel_axis;  // of the output, and of x's reduction channels
  std::string op;
  std::vector<Attr> attrs;
  std::string
      bias;  // "": none; "own": the layer's bias input; "add": MatMul -> Add(b); "shared": a bias two layers read
  int added_nodes;  // nodes add_output_shift must add (a new Add) for this form
  // How closely output_shift predicts the measured shift, relative to its largest channel: exact up
  // to rounding, except where padding or the borders make the windows' means differ from the input's.
  double tolerance = 1e-4;
};

std::vector<LayerCase> layer_cases() {
  return {
      {"MatMul then Add of its bias", {2, 5, 24}, {24, 12}, 12, -1, "MatMul", {}, "add", 0},
      {"MatMul alone", {2, 5, 24}, {24, 12}, 12, -1, "MatMul", {}, "", 1},
      {"Gemm transB alpha beta",
       {6, 24},
       {12, 24},
       12,
       1,
       "Gemm",
       {{"transB", 1}, {"alpha", 0.5}, {"beta", 2.0}},
       "own",
       0},
      {"Gemm without C", {6, 24}, {24, 12}, 12, 1, "Gemm", {}, "", 0},
      {"Conv 1x1 groups", {2, 8, 6, 7}, {6, 4, 1, 1}, 6, 1, "Conv", {{"group", 2}}, "", 0},
      {"Conv 3x3 padded",
       {1, 8, 32, 32},
       {6, 8, 3, 3},
       6,
       1,
       "Conv",
       {{"pads", std::vector<int64_t>{1, 1, 1, 1}}},
       "own",
       0,
       0.1},
      {"Conv shared bias", {2, 8, 6, 7}, {6, 8, 3, 3}, 6, 1, "Conv", {}, "shared", 1},
      {"ConvTranspose stride 2",
       {2, 8, 5, 4},
       {8, 3, 2, 2},
       3,
       1,
       "ConvTranspose",
       {{"group", 1}, {"strides", std::vector<int64_t>{2, 2}}},
       "own",
       0},
  };
}

// The layer with weight `w`; the shared-bias form adds a second layer on the same bias as another output.
ModelBuilder layer_model(const LayerCase& c, const Tensor& x, const Tensor& w, const Tensor& bias) {
  ModelBuilder b(21, "layer");
  b.input("x", DType::Float32, x.shape()).output("y", DType::Float32).initializer("w", w);
  std::vector<std::string> inputs = {"x", "w"};
  if (c.bias == "own" || c.bias == "shared") {
    b.initializer("b", bias);
    inputs.push_back("b");
  }
  if (c.bias == "add") {
    b.initializer("b", bias);
    b.node(c.op, inputs, {"mm"}, c.attrs);
    b.node("Add", {"mm", "b"}, {"y"});
  } else {
    b.node(c.op, inputs, {"y"}, c.attrs);
  }
  if (c.bias == "shared") {
    b.output("y2", DType::Float32);
    b.node(c.op, inputs, {"y2"}, c.attrs);
  }
  return b;
}

// Per-channel means of `t` along `axis` (from the end when negative).
std::vector<double> channel_means(const Tensor& t, int64_t axis) {
  const int64_t rank = t.rank();
  if (axis < 0) axis += rank;
  int64_t channels = t.shape()[axis], inner = 1;
  for (int64_t d = axis + 1; d < rank; ++d) inner *= t.shape()[d];
  std::vector<double> sums(channels, 0.0);
  for (int64_t i = 0; i < t.size(); ++i) sums[(i / inner) % channels] += t.get(i);
  for (double& s : sums) s /= double(t.size() / channels);
  return sums;
}

}  // namespace

TEST_CASE("Bias correction predicts the mean output shift of a weight error", "[quantize][bias]") {
  const LayerCase c = GENERATE(from_range(layer_cases()));
  if (c.bias == "shared") return;  // the same prediction as "Conv 3x3 padded"
  INFO(c.name);
  const std::string dir = temp_dir("bias_shift");
  // Inputs with a clear mean per channel, as post-activation values have.
  Tensor x = random_tensor(DType::Float32, c.x, 0.0, 2.0);
  Tensor w = random_tensor(DType::Float32, c.w), error = random_tensor(DType::Float32, c.w, -0.05, 0.05);
  Tensor w2(DType::Float32, c.w);
  for (int64_t i = 0; i < w.size(); ++i) w2.set(i, w.get(i) + error.get(i));
  const int64_t n = c.out_channels;
  Tensor bias = random_tensor(DType::Float32, {n});
  const Tensor y = run_tetra(layer_model(c, x, w, bias).save(dir + "/w.onnx"), {x}).at(0);
  const Tensor y2 = run_tetra(layer_model(c, x, w2, bias).save(dir + "/w2.onnx"), {x}).at(0);
  Tensor diff = y2;
  for (int64_t i = 0; i < y.size(); ++i) diff.set(i, y2.get(i) - y.get(i));
  const std::vector<double> measured = channel_means(diff, c.channel_axis);

  ModelBuilder m = layer_model(c, x, w, bias);
  const onnx::NodeProto& layer = m.proto().graph().node(0);
  const quantize::ChannelProbe probe = quantize::input_probe(layer, DType::Float32);
  CHECK(probe.value == "x");
  const std::vector<double> predicted = quantize::output_shift(layer, error, channel_means(x, probe.channel_axis));
  REQUIRE(predicted.size() == measured.size());
  double scale = 0;
  for (double v : measured) scale = std::max(scale, std::fabs(v));
  REQUIRE(scale > 1e-3);  // the case must have a shift to predict
  for (size_t k = 0; k < measured.size(); ++k) {
    INFO("channel " << k);
    CHECK(predicted[k] == Approx(measured[k]).margin(c.tolerance * scale + 1e-6));
  }
}

TEST_CASE("Bias correction writes a shift into each kind of layer", "[quantize][bias]") {
  const LayerCase c = GENERATE(from_range(layer_cases()));
  INFO(c.name);
  const std::string dir = temp_dir("bias_write");
  Tensor x = random_tensor(DType::Float32, c.x);
  Tensor w = random_tensor(DType::Float32, c.w);
  const int64_t n = c.out_channels;
  Tensor bias = random_tensor(DType::Float32, {n});
  ModelBuilder m = layer_model(c, x, w, bias);
  const Tensor y = run_tetra(m.save(dir + "/before.onnx"), {x}).at(0);

  Shape shift_shape = {n};
  if (c.op == "Conv" || c.op == "ConvTranspose") shift_shape = {n, 1, 1};
  const Tensor shift = random_tensor(DType::Float32, shift_shape);
  const int nodes_before = m.proto().graph().node_size();
  quantize::add_output_shift(*m.proto().mutable_graph(), 0, shift, "");
  CHECK(m.proto().graph().node_size() == nodes_before + c.added_nodes);
  const std::vector<Tensor> after = run_tetra(m.save(dir + "/after.onnx"), {x});

  const int64_t axis = c.channel_axis < 0 ? c.channel_axis + y.rank() : c.channel_axis;
  int64_t inner = 1;
  for (int64_t d = axis + 1; d < y.rank(); ++d) inner *= y.shape()[d];
  REQUIRE(after[0].size() == y.size());
  for (int64_t i = 0; i < y.size(); ++i) {
    INFO("element " << i);
    REQUIRE(after[0].get(i) == Approx(y.get(i) + shift.get((i / inner) % n)).margin(1e-5));
  }
  // A bias another layer also reads must not move for that layer.
  if (c.bias == "shared") {
    const Tensor y2 = run_tetra(layer_model(c, x, w, bias).save(dir + "/shared.onnx"), {x}).at(1);
    for (int64_t i = 0; i < y2.size(); ++i) REQUIRE(after[1].get(i) == Approx(y2.get(i)).margin(1e-6));
  }
  if (require_ort()) {
    const std::vector<Tensor> theirs = run_ort(dir + "/after.onnx", {x});
    CHECK(relative_l2(after[0], theirs[0]) <= 1e-5);
  }
}

// End to end: a float16 MLP (MatMul -> Add -> Relu three times, then Gemm with beta 0.5) quantized
// with and without correction. On inputs it was not calibrated on, the corrected model's mean error
// per output channel must be a fraction of the uncorrected one's.
TEST_CASE("tetra quantize --calibration-data removes the mean error of int4 layers (float16 MLP)", "[quantize][bias]") {
  const std::string dir = temp_dir("bias_mlp");
  ModelBuilder b(13, "mlp16");
  const int64_t dims[] = {72, 64, 40, 24}, rows = 48;
  b.input("x", DType::Float16, {rows, dims[0]}).output("y", DType::Float16);
  b.output("h0", DType::Float16);  // a layer's input that is also an output: probed as it is
  std::string h = "x";
  for (int l = 0; l < 3; ++l) {
    const std::string s = std::to_string(l);
    const double a = 1.5 / std::sqrt(double(dims[l]));
    b.initializer("w" + s, random_tensor(DType::Float16, {dims[l], dims[l + 1]}, -a, a));
    b.initializer("b" + s, random_tensor(DType::Float16, {dims[l + 1]}, -0.1, 0.1));
    b.node("MatMul", {h, "w" + s}, {"mm" + s});
    b.node("Add", {"mm" + s, "b" + s}, {"add" + s});
    b.node("Relu", {"add" + s}, {"h" + s});
    h = "h" + s;
  }
  b.initializer("w3", random_tensor(DType::Float16, {10, 24}, -0.3, 0.3));
  b.initializer("b3", random_tensor(DType::Float16, {10}, -0.1, 0.1));
  b.node("Gemm", {h, "w3", "b3"}, {"y"}, {{"transB", 1}, {"beta", 0.5f}});
  const std::string fp = b.save(dir + "/mlp16.onnx");
  for (int s = 0; s < 2; ++s) {
    const std::string set = dir + "/data/test_data_set_" + std::to_string(s);
    std::filesystem::create_directories(set);
    write_tensor_pb(set + "/input_0.pb", random_tensor(DType::Float16, {rows, dims[0]}, 0.0, 2.0), "x");
  }
  quantize::QuantizeOptions opt;
  opt.calibration_data = dir + "/data";
  opt.min_cosine = 0.5;  // every layer int4: the correction alone makes the difference
  opt.calibration_backend = Backend::Reference;
  const quantize::QuantizeReport corrected = quantize::quantize_file(fp, dir + "/corrected.onnx", opt);
  opt.bias_correction = false;
  const quantize::QuantizeReport plain = quantize::quantize_file(fp, dir + "/plain.onnx", opt);
  CHECK(corrected.quantized.size() == 4);
  CHECK(corrected.bias_corrected == 4);
  CHECK(plain.bias_corrected == 0);

  const Tensor x = random_tensor(DType::Float16, {rows, dims[0]}, 0.0, 2.0);
  const Tensor y = run_tetra(fp, {x}).at(0);
  auto mean_error = [&](const std::string& model) {
    const Tensor q = run_tetra(model, {x}).at(0);
    REQUIRE(q.dtype() == DType::Float16);
    Tensor error(DType::Float32, q.shape());
    for (int64_t i = 0; i < q.size(); ++i) error.set(i, q.get(i) - y.get(i));
    double rms = 0;
    for (double m : channel_means(error, 1)) rms += m * m;
    return std::sqrt(rms / 10);
  };
  const double with = mean_error(dir + "/corrected.onnx"), without = mean_error(dir + "/plain.onnx");
  INFO("rms of the channel mean errors: corrected " << with << ", plain " << without);
  CHECK(without > 1e-3);
  CHECK(with < 0.5 * without);
}
