// tetra quantize end to end: quantize generated fp32 models, check the result fuses in tetra, that
// tetra and ONNX Runtime agree on the int4 model, and that it stays close to the fp32 original.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "tools/model_builder.h"
#include "tests/ort_oracle.h"
#include "tests/test_support.h"

using namespace tetra;
using namespace tetra::test;
namespace fs = std::filesystem;

namespace {

// Weights scaled by fan-in so activations keep their magnitude through the layers.
Tensor weight(const Shape& shape, int64_t fan_in, DType dtype = DType::Float32) {
  double a = 1.5 / std::sqrt(static_cast<double>(fan_in));
  return random_tensor(dtype, shape, -a, a);
}

// x [M, 72] -> (MatMul + Add + Relu) x 3 -> Gemm(transB=1). K = 72, 64, 40 and 24 cover ragged,
// exact and shorter-than-a-block reductions. Returns the number of weights.
int build_mlp(ModelBuilder& b, int64_t m, DType dtype = DType::Float32) {
  const int64_t dims[] = {72, 64, 40, 24};
  b.input("x", dtype, {m, dims[0]}).output("y", dtype);
  std::string h = "x";
  for (int l = 0; l < 3; ++l) {
    std::string s = std::to_string(l);
    b.initializer("w" + s, weight({dims[l], dims[l + 1]}, dims[l], dtype));
    b.initializer("b" + s, random_tensor(dtype, {dims[l + 1]}, -0.1, 0.1));
    b.node("MatMul", {h, "w" + s}, {"mm" + s});
    b.node("Add", {"mm" + s, "b" + s}, {"add" + s});
    b.node("Relu", {"add" + s}, {"h" + s});
    h = "h" + s;
  }
  b.initializer("w3", weight({10, 24}, 24, dtype));
  b.initializer("b3", random_tensor(dtype, {10}, -0.1, 0.1));
  b.node("Gemm", {h, "w3", "b3"}, {"y"}, {{"transB", 1}, {"beta", 0.5f}});
  return 4;
}

// x [2,3,12,12] -> Conv+BN+Relu -> depthwise Conv+Relu -> residual Add -> 1x1 Conv+Relu ->
// 3x3 Conv with 40 input channels (blocked along C) -> GlobalAveragePool -> Flatten -> Gemm.
// Opset 17, so quantizing to DequantizeLinear also exercises the opset upgrade.
int build_cnn(ModelBuilder& b) {
  b.input("x", DType::Float32, {2, 3, 12, 12}).output("y", DType::Float32);
  auto conv = [&](const std::string& name, const std::string& in, Shape w, int64_t group, int64_t pad) {
    int64_t fan_in = w[1] * w[2] * w[3];
    b.initializer(name + "_w", weight(w, fan_in));
    b.initializer(name + "_b", random_tensor(DType::Float32, {w[0]}, -0.1, 0.1));
    b.node("Conv", {in, name + "_w", name + "_b"}, {name},
           {{"group", group}, {"pads", std::vector<int64_t>{pad, pad, pad, pad}}});
  };
  conv("c1", "x", {16, 3, 3, 3}, 1, 1);
  b.initializer("bn_scale", random_tensor(DType::Float32, {16}, 0.5, 1.5));
  b.initializer("bn_bias", random_tensor(DType::Float32, {16}, -0.2, 0.2));
  b.initializer("bn_mean", random_tensor(DType::Float32, {16}, -0.2, 0.2));
  b.initializer("bn_var", random_tensor(DType::Float32, {16}, 0.5, 1.5));
  b.node("BatchNormalization", {"c1", "bn_scale", "bn_bias", "bn_mean", "bn_var"}, {"bn"}, {{"epsilon", 1e-5f}});
  b.node("Relu", {"bn"}, {"r1"});
  conv("dw", "r1", {16, 1, 3, 3}, 16, 1);
  b.node("Relu", {"dw"}, {"r2"});
  b.node("Add", {"r1", "r2"}, {"res"});
  conv("pw", "res", {40, 16, 1, 1}, 1, 0);
  b.node("Relu", {"pw"}, {"r3"});
  conv("c4", "r3", {24, 40, 3, 3}, 1, 1);
  b.node("GlobalAveragePool", {"c4"}, {"gap"});
  b.node("Flatten", {"gap"}, {"flat"});
  b.initializer("fc_w", weight({10, 24}, 24));
  b.initializer("fc_b", random_tensor(DType::Float32, {10}, -0.1, 0.1));
  b.node("Gemm", {"flat", "fc_w", "fc_b"}, {"y"}, {{"transB", 1}});
  return 5;
}

int run_tetra_cli(const std::string& args, std::string* output) {
  return run_command(tetra_cli() + " " + args, output);
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (int64_t i = 0; i < t.size(); ++i) m = std::max(m, std::fabs(t.get(i)));
  return m;
}

// Quantizes `model` in every format/range combination and checks each result.
void check_quantize(const ModelBuilder& model, int weights, const Tensor& input, const std::string& what) {
  const bool ort = require_ort();
  const std::string dir = temp_dir("quantize");
  const std::string fp32_path = model.save(dir + "/fp32.onnx");
  const Tensor reference = run_tetra(fp32_path, {input}).at(0);
  for (const char* format : {"dq", "matmulnbits"}) {
    for (bool asymmetric : {false, true}) {
      std::string out = dir + "/" + format + (asymmetric ? "_asym" : "_sym") + ".onnx";
      std::string args = fp32_path + " -o " + out + " --format " + format + (asymmetric ? " --asymmetric" : "");
      INFO(what << ": tetra quantize " << args);
      std::string log;
      REQUIRE(run_tetra_cli("quantize " + args, &log) == 0);
      INFO(log);
      CHECK(log.find("rel RMS") != std::string::npos);

      size_t fused = 0;
      Tensor ours = run_tetra(out, {input}, &fused).at(0);
      CHECK(fused == static_cast<size_t>(weights));
      // Weight-only int4 stays near the fp32 network (loose: the error compounds over layers).
      CHECK(relative_l2(ours, reference) < 0.25);
      if (ort) {
        // Tight: the same int4 model, differing only in summation order (and fp16 rounding points),
        // on the reference evaluator and on the Halide backend.
        Tensor theirs = run_ort(out, {input}).at(0);
        Tensor compiled = run_tetra(out, {input}, nullptr, Backend::Halide).at(0);
        double tol = input.dtype() == DType::Float16 ? 4e-3 : 1e-5;
        CHECK(compare_tensors(ours, theirs, tol * (1 + max_abs(theirs)), 10 * tol) == "");
        CHECK(compare_tensors(compiled, theirs, tol * (1 + max_abs(theirs)), 10 * tol) == "");
      }
    }
  }
}

}  // namespace

TEST_CASE("tetra quantize: fp32 MLP (MatMul+Add+Relu x3, Gemm)", "[quantize]") {
  ModelBuilder b(13, "mlp");
  int weights = build_mlp(b, 5);
  check_quantize(b, weights, random_tensor(DType::Float32, {5, 72}), "MLP");
}

TEST_CASE("tetra quantize: fp16 MLP gets fp16 scales", "[quantize]") {
  ModelBuilder b(13, "mlp16");
  int weights = build_mlp(b, 3, DType::Float16);
  check_quantize(b, weights, random_tensor(DType::Float16, {3, 72}), "fp16 MLP");
}

TEST_CASE("tetra quantize: small CNN (Conv+BN+Relu, depthwise, residual, GAP, Gemm)", "[quantize]") {
  ModelBuilder b(17, "cnn");
  int weights = build_cnn(b);
  check_quantize(b, weights, random_tensor(DType::Float32, {2, 3, 12, 12}), "CNN");
}

TEST_CASE("tetra quantize upgrades old opsets where the meaning is unchanged", "[quantize]") {
  // Opset 11: Unsqueeze's axes is an attribute (an input from 13); Softmax with axis -1 is the same op.
  auto build = [](int64_t softmax_axis) {
    ModelBuilder b(11, "old");
    b.input("x", DType::Float32, {4, 40}).output("y", DType::Float32);
    b.initializer("w", weight({40, 12}, 40));
    b.node("MatMul", {"x", "w"}, {"mm"});
    b.node("Unsqueeze", {"mm"}, {"u"}, {{"axes", std::vector<int64_t>{0}}});
    b.node("Softmax", {"u"}, {"y"}, {{"axis", softmax_axis}});
    return b;
  };
  const std::string dir = temp_dir("quantize_opset");
  Tensor x = random_tensor(DType::Float32, {4, 40});
  std::string in = build(-1).save(dir + "/old.onnx"), out = dir + "/old_q.onnx", log;
  REQUIRE(run_tetra_cli("quantize " + in + " -o " + out, &log) == 0);
  INFO(log);
  CHECK(log.find("opset from 11 to 21") != std::string::npos);
  size_t fused = 0;
  Tensor ours = run_tetra(out, {x}, &fused).at(0);
  CHECK(fused == 1);
  if (require_ort()) CHECK(compare_tensors(ours, run_ort(out, {x}).at(0), 1e-6, 1e-4) == "");

  // Softmax over axis 1 of a 3-D tensor meant "flatten from axis 1" before opset 13: kept as such.
  std::string flattened = build(1).save(dir + "/flattened.onnx"), flattened_q = dir + "/flattened_q.onnx";
  REQUIRE(run_tetra_cli("quantize " + flattened + " -o " + flattened_q, &log) == 0);
  CHECK(log.find("Flatten/Reshape") != std::string::npos);
  if (require_ort()) CHECK(relative_l2(run_ort(flattened_q, {x}).at(0), run_ort(flattened, {x}).at(0)) < 0.05);

  // TopK's k became an input in opset 10; tetra has no adapter for it: refused, nothing written.
  ModelBuilder topk(9, "topk");
  topk.input("x", DType::Float32, {4, 40}).output("y", DType::Float32).output("i", DType::Int64);
  topk.initializer("w", weight({40, 12}, 40));
  topk.node("MatMul", {"x", "w"}, {"mm"});
  topk.node("TopK", {"mm"}, {"y", "i"}, {{"k", 3}});
  std::string refused_in = topk.save(dir + "/topk.onnx"), refused = dir + "/topk_q.onnx";
  CHECK(run_tetra_cli("quantize " + refused_in + " -o " + refused, &log) == 2);
  CHECK(log.find("TopK 'TopK_1' (ai.onnx opset 9)") != std::string::npos);
  CHECK_FALSE(fs::exists(refused));
}

TEST_CASE("tetra quantize rejects bad input with exit code 2 and writes nothing", "[quantize]") {
  const std::string dir = temp_dir("quantize_bad");
  ModelBuilder b(13, "mlp");
  build_mlp(b, 2);
  const std::string model = b.save(dir + "/mlp.onnx");
  struct Case {
    std::string args, output, message;
  };
  const Case cases[] = {
      {dir + "/missing.onnx -o " + dir + "/a.onnx", dir + "/a.onnx", "does not exist"},
      {model + " -o " + dir + "/b.onnx --bits 8", dir + "/b.onnx", "--bits 8"},
      {model + " -o " + dir + "/nowhere/c.onnx", dir + "/nowhere/c.onnx", "output folder"},
      {model + " -o " + dir + "/d.onnx --format gguf", dir + "/d.onnx", "--format"},
      {model + " -o " + dir + "/e.onnx --format matmulnbits --block-size 24", dir + "/e.onnx", "power of two"},
  };
  for (const Case& c : cases) {
    std::string log;
    INFO("tetra quantize " << c.args);
    CHECK(run_tetra_cli("quantize " + c.args, &log) == 2);
    INFO(log);
    CHECK(log.find("tetra: error:") != std::string::npos);
    CHECK(log.find(c.message) != std::string::npos);
    CHECK_FALSE(fs::exists(c.output));
  }
  // Nothing else (no temporary files) was left next to the outputs.
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir)) files += entry.is_regular_file();
  CHECK(files == 1);
}

TEST_CASE("tetra quantize inlines external data and refuses more than 2 GiB of it", "[quantize]") {
  const std::string dir = temp_dir("quantize_external");
  ModelBuilder b(13, "mlp");
  build_mlp(b, 2);
  // Move the first weight into weights.bin next to the model.
  onnx::TensorProto* w0 = b.proto().mutable_graph()->mutable_initializer(0);
  REQUIRE(w0->name() == "w0");
  std::ofstream(dir + "/weights.bin", std::ios::binary) << w0->raw_data();
  auto external = [&](const char* key, const std::string& value) {
    auto* entry = w0->add_external_data();
    entry->set_key(key);
    entry->set_value(value);
  };
  external("location", "weights.bin");
  external("length", std::to_string(w0->raw_data().size()));
  w0->clear_raw_data();
  w0->set_data_location(onnx::TensorProto::EXTERNAL);
  std::string model = b.save(dir + "/external.onnx"), out = temp_dir("quantize_external_out") + "/q.onnx", log;
  REQUIRE(run_tetra_cli("quantize " + model + " -o " + out, &log) == 0);
  size_t fused = 0;
  run_tetra(out, {random_tensor(DType::Float32, {2, 72})}, &fused);  // loads from another folder
  CHECK(fused == 4);

  // A tensor whose external data would not fit a single protobuf file.
  w0->clear_dims();
  w0->add_dims(int64_t(1) << 30);
  w0->add_dims(3);
  w0->mutable_external_data(1)->set_value(std::to_string(int64_t(12) << 30));
  std::string huge = b.save(dir + "/huge.onnx"), huge_out = dir + "/huge_q.onnx";
  CHECK(run_tetra_cli("quantize " + huge + " -o " + huge_out, &log) == 2);
  CHECK(log.find("2 GiB") != std::string::npos);
  CHECK_FALSE(fs::exists(huge_out));
}
