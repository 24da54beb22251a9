// Whole models on a GPU (runtime/aot/gpu_model_job.h), on this machine's OpenCL device (pocl on the
// CPU): every node's kernels in one program, the weights packed and uploaded once, the activations
// resident on the device, checked against the reference evaluator on fresh random inputs.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "dsl/target.h"
#include "examples/example_models.h"
#include "examples/exported_models.h"
#include "runtime/aot/gpu_model_job.h"
#include "runtime/model.h"
#include "runtime/reference_evaluator.h"
#include "tests/oclgrind.h"
#include "tests/ort_oracle.h"
#include "tests/test_support.h"
#include "tools/model_builder.h"

using namespace tetra;
using namespace tetra::test;

namespace {

namespace fs = std::filesystem;

// A fresh seed per run, reported when a check fails.
// A new seed each run; TETRA_TEST_SEED replays the one a failure printed.
uint32_t fresh_seed() {
  if (const char* seed = std::getenv("TETRA_TEST_SEED")) return uint32_t(std::stoul(seed));
  return std::random_device{}();
}

Tensor uniform(std::mt19937& gen, const Shape& shape, float lo, float hi) {
  Tensor t(DType::Float32, shape);
  std::uniform_real_distribution<float> u(lo, hi);
  for (int64_t i = 0; i < t.size(); ++i) t.mutable_data<float>()[i] = u(gen);
  return t;
}

Tensor as_half(const Tensor& t) {
  Tensor half(DType::Float16, t.shape());
  for (int64_t i = 0; i < t.size(); ++i) half.set(i, t.get(i));
  return half;
}

struct GpuRunResult {
  GpuModelJob job;
  TensorMap outputs, expected;
};

// `model` with these inputs through the job and tetra-device, and through the reference evaluator.
GpuRunResult run_model_on_opencl(const std::string& model, const TensorMap& inputs) {
  std::map<std::string, Shape> shapes;
  for (const auto& [name, t] : inputs) shapes[name] = t.shape();
  Graph graph = load_model(model, shapes);
  GpuModelJob job;
  TensorMap outputs = run_on_opencl(graph, inputs, &job);
  return {job, outputs, run_reference(graph, inputs)};
}

// Each of `kinds` names what ran some node of the job (the kernels its nodes were given).
void check_kernel_kinds(const GpuRunResult& r, const std::vector<std::string>& kinds) {
  std::string ran;
  for (const auto& [node, what] : r.job.kernels) ran += what + "\n";
  for (const std::string& kind : kinds) {
    INFO("kernel kind " << kind);
    CHECK(ran.find(kind) != std::string::npos);
  }
}

// Every output within 1e-4 of (1 + the reference's largest magnitude): float32 sums in another order.
void check_outputs(const GpuRunResult& r) {
  REQUIRE(r.outputs.size() == r.expected.size());
  for (const auto& [name, want] : r.expected) {
    const Tensor& got = r.outputs.at(name);
    REQUIRE(got.shape() == want.shape());
    double scale = 0;
    for (int64_t i = 0; i < want.size(); ++i) scale = std::max(scale, std::fabs(want.get(i)));
    INFO("output " << name);
    CHECK(compare_tensors(got, want, 1e-4 * (1 + scale), 0) == "");
  }
}

// The nodes the GPU path runs besides GEMMs, each with its awkward cases: an int4 conv with zero points
// and pads and a residual, broadcasting against constants of lower rank, both average-pool divisors,
// a linear resize, a global max pool, a flatten, a blocked int4 GEMV, a layer norm with bias and a softmax.
std::string ops_model(const std::string& dir, std::mt19937& gen) {
  ModelBuilder b(21, "gpu_ops");
  b.input("x", DType::Float32, {2, 4, 9, 11});
  b.output("probs", DType::Float32);
  b.output("resized", DType::Float32);
  b.initializer("k", random_tensor(DType::UInt4, {8, 4, 3, 3}, 0, 15));
  b.initializer("k_s", uniform(gen, {8}, 0.01f, 0.1f));
  b.initializer("k_z", random_tensor(DType::UInt4, {8}, 0, 15));
  b.initializer("k_b", uniform(gen, {8}, -0.5f, 0.5f));
  b.node("DequantizeLinear", {"k", "k_s", "k_z"}, {"k_f"}, {{"axis", 0}});
  b.node("Conv", {"x", "k_f", "k_b"}, {"c"}, {{"pads", std::vector<int64_t>{1, 1, 1, 1}}});
  b.initializer("skip", uniform(gen, {2, 8, 9, 11}, -1, 1));
  b.node("Add", {"c", "skip"}, {"c2"});
  b.initializer("per_channel", uniform(gen, {8, 1, 1}, 0.5f, 1.5f));
  b.node("Mul", {"c2", "per_channel"}, {"m"});
  b.initializer("shift", uniform(gen, {1}, -0.3f, 0.3f));
  b.node("Sub", {"m", "shift"}, {"s"});
  b.node("Tanh", {"s"}, {"t"});
  const std::vector<Attr> pool = {{"kernel_shape", std::vector<int64_t>{3, 3}},
                                  {"strides", std::vector<int64_t>{2, 2}},
                                  {"pads", std::vector<int64_t>{1, 1, 1, 1}}};
  b.node("AveragePool", {"t"}, {"p1"}, pool);
  std::vector<Attr> pool_with_pad = pool;
  pool_with_pad.push_back({"count_include_pad", int64_t(1)});
  b.node("AveragePool", {"t"}, {"p2"}, pool_with_pad);
  b.node("Max", {"p1", "p2"}, {"q"});
  b.initializer("scales", Tensor(DType::Float32, {4}, [] {
                  std::vector<uint8_t> bytes(16);
                  const float s[4] = {1, 1, 2, 1.5f};
                  std::memcpy(bytes.data(), s, 16);
                  return bytes;
                }()));
  b.node("Resize", {"q", "", "scales"}, {"resized"}, {{"mode", "linear"}});
  b.node("GlobalMaxPool", {"resized"}, {"g"});
  b.node("Flatten", {"g"}, {"f"});
  b.initializer("w", random_tensor(DType::Int4, {8, 24}, -8, 7));
  b.initializer("w_s", uniform(gen, {2, 24}, 0.05f, 0.2f));
  b.node("DequantizeLinear", {"w", "w_s"}, {"w_f"}, {{"axis", 0}, {"block_size", 4}});
  b.node("MatMul", {"f", "w_f"}, {"h"});
  b.initializer("ln_s", uniform(gen, {24}, 0.5f, 1.5f));
  b.initializer("ln_b", uniform(gen, {24}, -0.5f, 0.5f));
  b.node("LayerNormalization", {"h", "ln_s", "ln_b"}, {"ln"}, {{"axis", -1}});
  b.node("Softmax", {"ln"}, {"probs"}, {{"axis", -1}});
  return b.save(dir + "/gpu_ops.onnx");
}

// Data movement and the rarer convs: a transpose, a strided slice, a split, a concat, a ConvTranspose
// whose kernel is its stride (with a Relu epilogue), and a 1x1 int4 conv of 1x1 planes after a global pool.
std::string movement_model(const std::string& dir, std::mt19937& gen) {
  ModelBuilder b(21, "gpu_movement");
  b.input("x", DType::Float32, {2, 6, 5, 4});
  for (const char* out : {"joined", "upsampled", "excited"}) b.output(out, DType::Float32);
  b.node("Transpose", {"x"}, {"t"}, {{"perm", std::vector<int64_t>{0, 2, 3, 1}}});  // [2, 5, 4, 6]
  auto ints = [](const std::vector<int64_t>& v) {
    Tensor t(DType::Int64, {int64_t(v.size())});
    for (size_t i = 0; i < v.size(); ++i) t.mutable_data<int64_t>()[i] = v[i];
    return t;
  };
  b.initializer("starts", ints({1, -5}));
  b.initializer("ends", ints({5, 100}));
  b.initializer("axes", ints({1, 3}));
  b.initializer("steps", ints({2, 2}));
  b.node("Slice", {"t", "starts", "ends", "axes", "steps"}, {"s"});  // [2, 2, 4, 3]
  b.initializer("sizes", ints({1, 2}));
  b.node("Split", {"s", "sizes"}, {"a", "c"}, {{"axis", int64_t(3)}});
  b.node("Concat", {"c", "a"}, {"joined"}, {{"axis", int64_t(-1)}});
  b.initializer("up_w", uniform(gen, {6, 3, 2, 2}, -1, 1));
  b.initializer("up_b", uniform(gen, {3}, -0.5f, 0.5f));
  b.node("ConvTranspose", {"x", "up_w", "up_b"}, {"up"}, {{"strides", std::vector<int64_t>{2, 2}}});
  b.node("Relu", {"up"}, {"upsampled"});
  b.node("GlobalAveragePool", {"x"}, {"g"});
  b.initializer("se_w", random_tensor(DType::Int4, {4, 6, 1, 1}, -8, 7));
  b.initializer("se_s", uniform(gen, {4}, 0.05f, 0.2f));
  b.node("DequantizeLinear", {"se_w", "se_s"}, {"se_f"}, {{"axis", 0}});
  b.initializer("se_b", uniform(gen, {4}, -0.5f, 0.5f));
  b.node("Conv", {"g", "se_f", "se_b"}, {"se"});
  b.node("Sigmoid", {"se"}, {"excited"});
  return b.save(dir + "/gpu_movement.onnx");
}

// Pads of every mode (and a crop), Where of a constant condition, a Cast to float, Gathers of uneven and
// of 2-D indices, int4 1-D convs (dense with a stride, depthwise with a dilation), and an Expand.
std::string padding_model(const std::string& dir, std::mt19937& gen) {
  ModelBuilder b(18, "gpu_padding");
  b.input("x", DType::Float32, {2, 3, 4, 5});
  for (const char* out :
       {"padded", "edged", "reflected", "chosen", "averaged", "picked", "picked2d", "conv1d", "expanded"})
    b.output(out, DType::Float32);
  auto ints = [](const std::vector<int64_t>& v, const Shape& shape) {
    Tensor t(DType::Int64, shape);
    for (size_t i = 0; i < v.size(); ++i) t.mutable_data<int64_t>()[i] = v[i];
    return t;
  };
  b.initializer("pads", ints({0, 1, 2, -1, 0, 0, 1, 3}, {8}));  // crops one column at the start of dim 3
  Tensor value(DType::Float32, {});
  value.mutable_data<float>()[0] = 0.75f;
  b.initializer("value", value);
  b.node("Relu", {"x"}, {"r"});
  b.node("Pad", {"r", "pads", "value"}, {"padded"});
  b.initializer("hw_pads", ints({1, 2, 2, 1}, {4}));
  b.initializer("hw_axes", ints({2, 3}, {2}));
  b.node("Pad", {"x", "hw_pads", "", "hw_axes"}, {"edged"}, {{"mode", std::string("edge")}});
  b.node("Pad", {"x", "hw_pads", "", "hw_axes"}, {"reflected"}, {{"mode", std::string("reflect")}});
  Tensor condition(DType::Bool, {4, 1});
  for (int64_t i = 0; i < 4; ++i) condition.mutable_data<uint8_t>()[i] = uint8_t(i % 3 == 0);
  b.initializer("condition", condition);
  b.initializer("other", uniform(gen, {5}, -1, 1));
  b.node("Where", {"condition", "x", "other"}, {"chosen"});
  b.node("Cast", {"x"}, {"xf"}, {{"to", int64_t(1)}});
  b.initializer("channel_axis", ints({1}, {1}));
  b.node("ReduceMean", {"xf", "channel_axis"}, {"averaged"});
  b.initializer("uneven", ints({3, 0, 0, -1}, {4}));
  b.node("Gather", {"x", "uneven"}, {"picked"}, {{"axis", int64_t(3)}});
  b.initializer("square", ints({2, 0, 1, 2}, {2, 2}));
  b.node("Gather", {"x", "square"}, {"picked2d"}, {{"axis", int64_t(1)}});
  b.initializer("rows", ints({2, 3, 20}, {3}));
  b.node("Reshape", {"x", "rows"}, {"seq"});
  b.initializer("c1_w", random_tensor(DType::Int4, {6, 3, 3}, -8, 7));
  b.initializer("c1_s", uniform(gen, {6}, 0.05f, 0.2f));
  b.node("DequantizeLinear", {"c1_w", "c1_s"}, {"c1_f"}, {{"axis", 0}});
  b.node("Conv", {"seq", "c1_f"}, {"c1"}, {{"pads", std::vector<int64_t>{1, 1}}, {"strides", std::vector<int64_t>{2}}});
  b.initializer("dw_w", random_tensor(DType::Int4, {6, 1, 3}, -8, 7));
  b.initializer("dw_s", uniform(gen, {6}, 0.05f, 0.2f));
  b.node("DequantizeLinear", {"dw_w", "dw_s"}, {"dw_f"}, {{"axis", 0}});
  b.initializer("dw_b", uniform(gen, {6}, -0.5f, 0.5f));
  b.node("Conv", {"c1", "dw_f", "dw_b"}, {"dw"},
         {{"group", int64_t(6)}, {"pads", std::vector<int64_t>{2, 2}}, {"dilations", std::vector<int64_t>{2}}});
  b.node("Relu", {"dw"}, {"conv1d"});
  b.initializer("expand_to", ints({3, 2, 1, 4, 5}, {5}));
  b.node("Expand", {"averaged", "expand_to"}, {"expanded"});  // [2, 1, 4, 5] to [3, 2, 1, 4, 5]
  return b.save(dir + "/gpu_padding.onnx");
}

// A float16 model: a float16 input, weights and bias, a MatMul, a layer norm, a softmax, and Casts both ways.
std::string half_model(const std::string& dir, std::mt19937& gen) {
  ModelBuilder b(17, "gpu_half");
  b.input("x", DType::Float16, {3, 16});
  b.output("probs", DType::Float16);
  b.output("wide", DType::Float32);
  b.initializer("w", as_half(uniform(gen, {16, 8}, -0.5f, 0.5f)));
  b.initializer("bias", as_half(uniform(gen, {8}, -0.5f, 0.5f)));
  b.initializer("gamma", as_half(uniform(gen, {8}, 0.5f, 1.5f)));
  b.node("MatMul", {"x", "w"}, {"h"});
  b.node("Add", {"h", "bias"}, {"hb"});
  b.node("Relu", {"hb"}, {"r"});
  b.node("LayerNormalization", {"r", "gamma"}, {"n"}, {{"axis", int64_t(-1)}});
  b.node("Softmax", {"n"}, {"probs"}, {{"axis", int64_t(-1)}});
  b.node("Cast", {"n"}, {"n32"}, {{"to", int64_t(1)}});
  b.node("Cast", {"n32"}, {"n16"}, {{"to", int64_t(10)}});
  b.node("Cast", {"n16"}, {"wide"}, {{"to", int64_t(1)}});
  return b.save(dir + "/gpu_half.onnx");
}

// A float16 int4 model of `rows` rows: a MatMulNBits with zero points and ragged blocks of 16, a Relu, and
// a DequantizeLinear MatMul blocked by 8 along K with float16 scales.
// Random multiples of 1/256 in [lo, hi] (at most 6 significant bits for hi <= 0.25): as scales, every
// dequantized weight (|q - zp| <= 15) is exact in float16.
Tensor short_scales(std::mt19937& gen, const Shape& shape, float lo, float hi) {
  Tensor t = uniform(gen, shape, lo, hi);
  for (int64_t i = 0; i < t.size(); ++i) t.set(i, std::round(t.get(i) * 256) / 256);
  return t;
}

// The float16 GEMV and GEMM multiply float16 scales into a k-block's sum, where the reference rounds
// each dequantized weight to float16 (a difference of up to 2^-11 of each term, checked against its bound
// in the kernel tests); scales of few significant bits keep that out of this model's comparison.
std::string half_int4_model(const std::string& dir, std::mt19937& gen, int64_t rows) {
  const int64_t K = 40, N = 24, block = 16, blocks = 3;
  ModelBuilder b(21, "gpu_half_int4");
  b.opset("com.microsoft", 1);
  b.input("a", DType::Float16, {rows, K});
  b.output("y", DType::Float16);
  b.initializer("B", random_tensor(DType::UInt8, {N, blocks, block / 2}, 0, 255));
  b.initializer("scales", as_half(short_scales(gen, {N * blocks}, 0.01f, 0.1f)));
  b.initializer("zp", random_tensor(DType::UInt8, {N * ((blocks + 1) / 2)}, 0, 255));
  b.node("MatMulNBits", {"a", "B", "scales", "zp"}, {"h"}, {{"K", K}, {"N", N}, {"bits", 4}, {"block_size", block}},
         "com.microsoft");
  b.node("Relu", {"h"}, {"r"});
  b.initializer("w", random_tensor(DType::Int4, {N, 8}, -8, 7));
  b.initializer("s", as_half(short_scales(gen, {N / 8, 8}, 0.05f, 0.2f)));
  b.node("DequantizeLinear", {"w", "s"}, {"wf"}, {{"axis", int64_t(0)}, {"block_size", int64_t(8)}});
  b.node("MatMul", {"r", "wf"}, {"y"});
  return b.save(dir + "/gpu_half_int4_" + std::to_string(rows) + ".onnx");
}

// Attention written out (fused into tetra.Attention), a MatMul of two activations, Gathers of one index
// and of a run of indices, and reductions over a middle and the last axis.
std::string attention_model(const std::string& dir) {
  ModelBuilder b(17, "gpu_attention");
  b.input("x", DType::Float32, {2, 5, 8});
  for (const char* out : {"attended", "scores", "picked", "every_other", "mean", "top", "shared", "crossed"})
    b.output(out, DType::Float32);
  b.node("Transpose", {"x"}, {"xt"}, {{"perm", std::vector<int64_t>{0, 2, 1}}});
  b.node("MatMul", {"x", "xt"}, {"s"});
  b.node("Softmax", {"s"}, {"p"}, {{"axis", int64_t(-1)}});
  b.node("MatMul", {"p", "x"}, {"attended"});
  b.node("MatMul", {"x", "xt"}, {"scores"});
  Tensor one(DType::Int64, {}), run(DType::Int64, {3});
  one.mutable_data<int64_t>()[0] = -2;
  for (int64_t i = 0; i < 3; ++i) run.mutable_data<int64_t>()[i] = 2 * i;
  b.initializer("one", one);
  b.initializer("run", run);
  b.node("Gather", {"x", "one"}, {"picked"}, {{"axis", int64_t(1)}});
  b.node("Gather", {"x", "run"}, {"every_other"}, {{"axis", int64_t(1)}});
  b.node("ReduceMean", {"x"}, {"mean"}, {{"axes", std::vector<int64_t>{1}}});
  b.node("ReduceMax", {"x"}, {"top"}, {{"axes", std::vector<int64_t>{-1}}, {"keepdims", int64_t(0)}});
  // Broadcast batch dims: a 2-D activation against every batch, and [2, 1] against [1, 2].
  Tensor first(DType::Int64, {});
  b.initializer("first", first);
  b.node("Gather", {"x", "first"}, {"x0"}, {{"axis", int64_t(0)}});  // [5, 8]
  b.node("Transpose", {"x0"}, {"x0t"});                              // [8, 5]
  b.node("MatMul", {"x", "x0t"}, {"shared"});                        // [2, 5, 5]
  auto shape = [](const std::vector<int64_t>& v) {
    Tensor t(DType::Int64, {int64_t(v.size())});
    for (size_t i = 0; i < v.size(); ++i) t.mutable_data<int64_t>()[i] = v[i];
    return t;
  };
  b.initializer("rows_shape", shape({2, 1, 5, 8}));
  b.initializer("cols_shape", shape({1, 2, 8, 5}));
  b.node("Reshape", {"x", "rows_shape"}, {"x_rows"});
  b.node("Reshape", {"x", "cols_shape"}, {"x_cols"});
  b.node("MatMul", {"x_rows", "x_cols"}, {"crossed"});  // [2, 2, 5, 5]
  return b.save(dir + "/gpu_attention.onnx");
}

}  // namespace

TEST_CASE("The example models run whole on the OpenCL device and match the reference", "[gpu_model][opencl]") {
  if (!opencl_runs_here("the GPU model tests")) return;
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 gen(seed);
  const std::string dir = temp_dir("gpu_model_examples");
  std::mt19937 weights(seed + 1);
  const std::string mlp = example_mlp(weights).save(dir + "/mlp.onnx");
  const std::string cnn = example_cnn(weights).save(dir + "/cnn.onnx");

  SECTION("the MLP decoding: GEMVs, a bias and residual epilogue, a layer norm, a gated activation") {
    GpuRunResult r = run_model_on_opencl(mlp, {{"x", uniform(gen, {3, 64}, -2, 2)}});
    check_outputs(r);
    CHECK(r.job.kernels.front().second.find("gpu_int4_gemv") != std::string::npos);
    // Its weights' panels are padded (64 x 64 columns of int4 make 2 KiB), and uploaded so: a view with
    // strides over storage that holds the padding.
    CHECK(r.job.kernels.front().second.find("\"panel_pad\":256") != std::string::npos);
    std::ifstream in(r.job.job_file);
    const nlohmann::json job = nlohmann::json::parse(in);
    int padded_views = 0;
    for (const auto& [name, buffer] : job["buffers"].items())
      padded_views += buffer.contains("strides") && buffer.contains("alias");
    CHECK(padded_views > 0);
  }
  SECTION("the MLP on a batch of 24 rows: the GEMM template") {
    GpuRunResult r = run_model_on_opencl(mlp, {{"x", uniform(gen, {24, 64}, -2, 2)}});
    check_outputs(r);
    CHECK(r.job.kernels.front().second.find("gpu_int4_gemm") != std::string::npos);
  }
  SECTION("the CNN: int4 convs with folded batch norms and epilogues, pools, a resize, a softmax") {
    GpuRunResult r = run_model_on_opencl(cnn, {{"image", uniform(gen, {1, 3, 32, 32}, -1, 1)}});
    check_outputs(r);
    CHECK(r.job.weight_bytes > 0);
  }
}

TEST_CASE("Every GPU model kernel kind matches the reference on the OpenCL device", "[gpu_model][opencl]") {
  if (!opencl_runs_here("the GPU model tests")) return;
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 gen(seed);
  const std::string model = ops_model(temp_dir("gpu_model_ops"), gen);
  GpuRunResult r = run_model_on_opencl(model, {{"x", uniform(gen, {2, 4, 9, 11}, -2, 2)}});
  check_outputs(r);
  check_kernel_kinds(r, {"gpu_int4_conv", "gpu elementwise Add", "gpu elementwise Mul", "gpu average pool 3x3",
                         "gpu resize linear", "gpu global max pool", "gpu_int4_gemv", "gpu layer norm", "gpu softmax"});
}

TEST_CASE("A node with no GPU kernel is an error that names it, before anything runs", "[gpu_model]") {
  ModelBuilder b(21, "no_gpu_kernel");
  b.input("x", DType::Float32, {2, 3});
  b.output("y", DType::Float32);
  b.initializer("scale", Tensor::scalar(DType::Float32, 0.05));
  b.initializer("zero_point", Tensor(DType::Int8, {}));
  b.node("QuantizeLinear", {"x", "scale", "zero_point"}, {"q"});  // an int8 activation
  b.node("DequantizeLinear", {"q", "scale", "zero_point"}, {"y"});
  const std::string dir = temp_dir("gpu_model_refused");
  Graph graph = load_model(b.save(dir + "/m.onnx"));
  dsl::Result<GpuModelJob> job = write_gpu_model_job(graph, {{"x", random_tensor(DType::Float32, {2, 3})}},
                                                     dsl::parse_target("opencl").value(), nullptr, dir + "/job");
  REQUIRE_FALSE(job.ok());
  CHECK_THAT(job.failure().message, Catch::Contains("QuantizeLinear '") && Catch::Contains("no GPU kernel"));
  CHECK_FALSE(fs::exists(dir + "/job/job.json"));
}

TEST_CASE("A kernel refused or failing on the device names the graph node it runs for", "[gpu_model][opencl]") {
  if (!opencl_runs_here("the GPU model tests")) return;
  ModelBuilder b(17, "gpu_named_failure");
  b.input("x", DType::Float32, {4, 8});
  b.output("y", DType::Float32);
  b.node("Relu", {"x"}, {"r"});
  b.node("Sigmoid", {"r"}, {"y"});
  const std::string dir = temp_dir("gpu_model_named_failure");
  Graph graph = load_model(b.save(dir + "/m.onnx"));
  dsl::Result<GpuModelJob> job = write_gpu_model_job(graph, {{"x", random_tensor(DType::Float32, {4, 8})}},
                                                     dsl::parse_target("opencl").value(), nullptr, dir + "/job");
  REQUIRE(job.ok());
  REQUIRE(job.value().kernels.size() == 2);
  const std::string sigmoid = job.value().kernels[1].first;
  CHECK_THAT(sigmoid, Catch::Contains("Sigmoid"));
  nlohmann::json plan;
  std::ifstream(job.value().job_file) >> plan;
  REQUIRE(plan["kernels"].size() == 2);
  CHECK(plan["kernels"][1]["node"] == sigmoid);
  auto run_with = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json edited = plan;
    edit(edited["kernels"][1]);
    std::ofstream(job.value().job_file) << edited.dump();
    std::string out;
    CHECK(run_command(tetra_device_program() + " run " + job.value().job_file, &out) != 0);
    return out;
  };
  // Refused before anything runs: a range past the buffer it reads.
  std::string read;  // the first buffer it binds
  for (const nlohmann::json& p : plan["kernels"][1]["params"])
    if (read.empty() && p["kind"] == "buffer") read = p["name"];
  REQUIRE_FALSE(read.empty());
  std::string out = run_with([&](nlohmann::json& k) {
    k["touched"] = {{{"buffer", read}, {"dim", 0}, {"min", 0}, {"max", 1000}}};
  });
  CHECK_THAT(out, Catch::Contains(plan["kernels"][1]["kernel"].get<std::string>() + " (" + sigmoid + ")") &&
                      Catch::Contains("touches " + read + " beyond the buffer"));
  // Failing at launch: a workgroup larger than any device takes.
  out = run_with([](nlohmann::json& k) { k["threads"] = {1 << 20, 1, 1}; });
  CHECK_THAT(out,
             Catch::Contains("running " + sigmoid + ": launching " + plan["kernels"][1]["kernel"].get<std::string>()));
}

// Integer inputs as transformers take them: token ids (int64) into an embedding table, and int32
// indices into a computed activation, negative ones counting from the end.
std::string indices_model(const std::string& dir, std::mt19937& gen) {
  ModelBuilder b(17, "gpu_indices");
  b.input("x", DType::Float32, {2, 5, 8}).input("ids", DType::Int64, {2, 3}).input("pick", DType::Int32, {4});
  b.output("h", DType::Float32).output("picked", DType::Float32);
  b.initializer("emb", uniform(gen, {10, 8}, -1, 1));
  b.initializer("w", uniform(gen, {8, 6}, -0.5f, 0.5f));
  b.node("Gather", {"emb", "ids"}, {"e"});
  b.node("MatMul", {"e", "w"}, {"h"});
  b.node("Relu", {"x"}, {"r"});
  b.node("Gather", {"r", "pick"}, {"picked"}, {{"axis", int64_t(1)}});
  return b.save(dir + "/gpu_indices.onnx");
}

Tensor random_indices(std::mt19937& gen, DType dtype, const Shape& shape, int64_t lo, int64_t hi) {
  Tensor t(dtype, shape);
  std::uniform_int_distribution<int64_t> u(lo, hi);
  for (int64_t i = 0; i < t.size(); ++i) t.set_int(i, u(gen));
  return t;
}

TEST_CASE("Gathers of integer inputs (token ids, negative indices) match the reference on the OpenCL device",
          "[gpu_model][opencl]") {
  if (!opencl_runs_here("the GPU model tests")) return;
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 gen(seed);
  const std::string model = indices_model(temp_dir("gpu_model_indices"), gen);
  GpuRunResult r = run_model_on_opencl(model, {{"x", uniform(gen, {2, 5, 8}, -2, 2)},
                                               {"ids", random_indices(gen, DType::Int64, {2, 3}, -10, 9)},
                                               {"pick", random_indices(gen, DType::Int32, {4}, -5, 4)}});
  check_outputs(r);
  check_kernel_kinds(r, {"gpu gather (computed indices)"});
}

TEST_CASE(
    "A Where of a computed condition (comparisons, logic, Casts to and from bool) matches the reference on "
    "OpenCL",
    "[gpu_model][opencl]") {
  if (!opencl_runs_here("the GPU model tests")) return;
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 gen(seed);
  ModelBuilder b(17, "gpu_masks");
  b.input("x", DType::Float32, {3, 8});
  b.output("y", DType::Float32).output("z", DType::Float32).output("positive", DType::Float32);
  b.output("logic", DType::Float32);
  b.initializer("zero", Tensor(DType::Float32, {}));
  b.initializer("keep", random_tensor(DType::Bool, {8}, 0, 1));  // a bool constant
  b.node("Relu", {"x"}, {"r"});
  b.node("Equal", {"r", "zero"}, {"is_zero"});  // true where x <= 0
  b.node("Where", {"is_zero", "x", "r"}, {"w"});
  b.node("Neg", {"w"}, {"y"});
  b.node("Cast", {"r"}, {"is_positive"}, {{"to", int64_t(DType::Bool)}});
  b.node("Equal", {"is_positive", "keep"}, {"agree"});  // two bools
  b.node("Where", {"agree", "x", "zero"}, {"z"});
  b.node("Cast", {"is_positive"}, {"positive"}, {{"to", int64_t(DType::Float32)}});
  // Every comparison and logic operator; Relu's zeros give ties.
  b.initializer("half", Tensor::scalar(DType::Float32, 0.5));
  b.node("Less", {"x", "half"}, {"lt"});
  b.node("LessOrEqual", {"r", "zero"}, {"le"});
  b.node("Greater", {"x", "half"}, {"gt"});
  b.node("GreaterOrEqual", {"r", "half"}, {"ge"});
  b.node("And", {"lt", "is_positive"}, {"small_positive"});
  b.node("Or", {"gt", "le"}, {"outer"});
  b.node("Xor", {"ge", "agree"}, {"either"});
  b.node("Not", {"either"}, {"neither"});
  b.node("Where", {"small_positive", "x", "half"}, {"s1"});
  b.node("Where", {"outer", "s1", "zero"}, {"s2"});
  b.node("Where", {"neither", "s2", "x"}, {"logic"});
  const std::string model = b.save(temp_dir("gpu_model_masks") + "/masks.onnx");
  GpuRunResult r = run_model_on_opencl(model, {{"x", uniform(gen, {3, 8}, -2, 2)}});
  check_outputs(r);
  check_kernel_kinds(
      r, {"gpu elementwise Equal:mask", "gpu elementwise Cast:mask", "gpu elementwise Where", "Less:mask",
          "LessOrEqual:mask", "Greater:mask", "GreaterOrEqual:mask", "And:mask", "Or:mask", "Xor:mask", "Not:mask"});
}

TEST_CASE("An integer value read as a float, or a bool output, is an error naming it on the GPU", "[gpu_model]") {
  ModelBuilder b(17, "gpu_int_as_float");
  b.input("ids", DType::Int64, {4});
  b.output("y", DType::Float32);
  b.node("Cast", {"ids"}, {"f"}, {{"to", int64_t(1)}});
  b.node("Relu", {"f"}, {"y"});
  const std::string dir = temp_dir("gpu_model_int_as_float");
  Graph graph = load_model(b.save(dir + "/m.onnx"));
  Tensor ids(DType::Int64, {4});
  for (int64_t i = 0; i < 4; ++i) ids.set_int(i, i - 1);
  dsl::Result<GpuModelJob> job =
      write_gpu_model_job(graph, {{"ids", ids}}, dsl::parse_target("opencl").value(), nullptr, dir + "/job");
  REQUIRE_FALSE(job.ok());
  CHECK_THAT(job.failure().message, Catch::Contains("'ids' is an integer"));
  // An index beyond int32 is refused where the input is taken, naming it.
  ids.set_int(0, int64_t(1) << 40);
  ModelBuilder g(17, "gpu_big_index");
  g.input("ids", DType::Int64, {4});
  g.output("y", DType::Float32);
  g.initializer("emb", random_tensor(DType::Float32, {3, 2}));
  g.node("Gather", {"emb", "ids"}, {"y"});
  Graph gather = load_model(g.save(dir + "/g.onnx"));
  job = write_gpu_model_job(gather, {{"ids", ids}}, dsl::parse_target("opencl").value(), nullptr, dir + "/job2");
  REQUIRE_FALSE(job.ok());
  CHECK_THAT(job.failure().message, Catch::Contains("input 'ids' holds 1099511627776"));
  // A bool output would come back as a float mask: refused, naming it.
  ModelBuilder m(17, "gpu_bool_output");
  m.input("x", DType::Float32, {4});
  m.output("b", DType::Bool);
  m.initializer("zero", Tensor(DType::Float32, {}));
  m.node("Equal", {"x", "zero"}, {"b"});
  Graph masks = load_model(m.save(dir + "/m2.onnx"));
  job = write_gpu_model_job(masks, {{"x", random_tensor(DType::Float32, {4})}}, dsl::parse_target("opencl").value(),
                            nullptr, dir + "/job3");
  REQUIRE_FALSE(job.ok());
  CHECK_THAT(job.failure().message, Catch::Contains("output 'b' is bool"));
}

TEST_CASE("tetra run and bench --target opencl run a model on the device", "[gpu_model][opencl][cli]") {
  if (!opencl_runs_here("the GPU model tests")) return;
  const std::string dir = temp_dir("gpu_model_cli");
  std::mt19937 weights(fresh_seed());
  const std::string mlp = example_mlp(weights).save(dir + "/mlp.onnx");
  std::string out;
  const int status = run_command(
      tetra_cli() + " run " + mlp + " --target opencl --random-inputs --shape x=2,64 --check --explain", &out);
  INFO(out);
  CHECK(status == 0);
  CHECK_THAT(out, Catch::Contains("device: ") && Catch::Contains("kernel tetra.QMatMul") &&
                      Catch::Contains("gpu layer norm") && !Catch::Contains("FAIL"));
  // bench times the runs on the device, weights and activations resident.
  REQUIRE(run_command(tetra_cli() + " bench " + mlp + " --target opencl --shape x=2,64 --repeat 5 --json", &out) == 0);
  nlohmann::json report = nlohmann::json::parse(out.substr(out.find('{')));
  CHECK(report["mean_ms"].get<double>() > 0);
  CHECK(report["median_ms"].get<double>() > 0);
  CHECK(report["launches"].get<int>() >= 6);
  CHECK(report["target"].get<std::string>().rfind("opencl-", 0) == 0);
  // A target naming another OpenCL device is refused, naming this one.
  CHECK(run_command(tetra_cli() + " run " + mlp + " --target opencl-other-device --random-inputs --shape x=2,64",
                    &out) == 2);
  CHECK_THAT(out, Catch::Contains("this machine's OpenCL device is opencl-"));
}

TEST_CASE("Activation opt-ins on the OpenCL device: int8 and float16 GEMVs up to 8 rows, their GEMMs past them",
          "[gpu_model][opencl][f16]") {
  if (!opencl_runs_here("the GPU model tests")) return;
  const std::string dir = temp_dir("gpu_model_opt_ins");
  std::mt19937 weights(fresh_seed());
  const std::string fp32 = example_mlp(weights).save(dir + "/mlp.onnx"), mlp = dir + "/mlp_int4.onnx";
  REQUIRE(run_command(tetra_cli() + " quantize " + fp32 + " -o " + mlp + " --bits 4 --block-size 16") == 0);
  for (const std::string kind : {"int8", "f16"}) {
    const std::string templates = kind == "int8" ? "_a8" : "_h2";
    for (int rows : {2, 16}) {
      std::string out;
      const int status = run_command(tetra_cli() + " run " + mlp + " --target opencl --random-inputs --shape x=" +
                                         std::to_string(rows) + ",64 --" + kind + "-activations --check --explain",
                                     &out);
      INFO(out);
      CHECK(status == 0);  // within the reference's tolerance for the opt-in
      CHECK_THAT(out, Catch::Contains("activations: 3 int4 MatMul nodes") && !Catch::Contains("FAIL"));
      // The int4 MatMuls' kernels: the opt-in's GEMV for 2 rows, its GEMM for 16; no float32 kernel.
      CHECK_THAT(out, Catch::Contains(rows <= 8 ? "gpu_int4_gemv" + templates : "gpu_int4_gemm" + templates));
      CHECK_THAT(out, !Catch::Contains(rows <= 8 ? "gpu_int4_gemm" : "gpu_int4_gemv"));
      CHECK_THAT(out, !Catch::Contains("\"gpu_int4_gemm\""));
    }
  }
  // One opt-in at a time.
  std::string out;
  CHECK(run_command(tetra_cli() + " run " + mlp +
                        " --target opencl --random-inputs --shape x=2,64 --f16-activations --int8-activations",
                    &out) != 0);
  CHECK_THAT(out, Catch::Contains("excludes"));
}

TEST_CASE("Data movement, ConvTranspose and squeeze-excite convs match the reference on the OpenCL device",
          "[gpu_model][opencl]") {
  if (!opencl_runs_here("the GPU model tests")) return;
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 gen(seed);
  const std::string model = movement_model(temp_dir("gpu_model_movement"), gen);
  GpuRunResult r = run_model_on_opencl(model, {{"x", uniform(gen, {2, 6, 5, 4}, -2, 2)}});
  check_outputs(r);
  check_kernel_kinds(r, {"gpu transpose", "gpu slice", "gpu split", "gpu concat of 2", "gpu conv transpose 2x2",
                         "gpu_int4_gemv", "gpu elementwise Relu"});
}

TEST_CASE("Pads, Where, Cast, Expand, Gathers of any indices and 1-D convs match the reference on OpenCL",
          "[gpu_model][opencl]") {
  if (!opencl_runs_here("the GPU model tests")) return;
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 gen(seed);
  const std::string model = padding_model(temp_dir("gpu_model_padding"), gen);
  GpuRunResult r = run_model_on_opencl(model, {{"x", uniform(gen, {2, 3, 4, 5}, -2, 2)}});
  check_outputs(r);
  check_kernel_kinds(r, {"gpu pad constant", "gpu pad edge", "gpu pad reflect", "gpu elementwise Where",
                         "gpu gather (index table)", "gpu_int4_conv", "gpu elementwise Clip:"});
}

TEST_CASE("A float16 model runs on the OpenCL device as float32 and matches the reference", "[gpu_model][opencl]") {
  if (!opencl_runs_here("the GPU model tests")) return;
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 gen(seed);
  const std::string model = half_model(temp_dir("gpu_model_half"), gen);
  GpuRunResult r = run_model_on_opencl(model, {{"x", as_half(uniform(gen, {3, 16}, -2, 2))}});
  CHECK(r.outputs.at("probs").dtype() == DType::Float16);
  CHECK(r.outputs.at("wide").dtype() == DType::Float32);
  // The reference rounds every step to float16; the device rounds once, at the end.
  for (const auto& [name, want] : r.expected) {
    INFO("output " << name);
    CHECK(compare_tensors(r.outputs.at(name), want, 4e-3, 4e-3) == "");
  }
}

TEST_CASE(
    "A float16 int4 model: float16 GEMVs (v_dot2_f32_f16 on AMD) up to 8 rows, float16 GEMMs past them, on OpenCL",
    "[gpu_model][opencl][f16]") {
  if (!opencl_runs_here("the GPU model tests")) return;
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 gen(seed);
  const std::string dir = temp_dir("gpu_model_half_int4");
  for (int64_t rows : {2, 16}) {
    INFO(rows << " rows");
    const std::string model = half_int4_model(dir, gen, rows);
    GpuRunResult r = run_model_on_opencl(model, {{"a", as_half(uniform(gen, {rows, 40}, -2, 2))}});
    std::string ran;
    for (const auto& [node, what] : r.job.kernels) ran += what + "\n";
    INFO(ran);
    // Both int4 MatMuls read A as float16: the float16 GEMV, or past 8 rows the float16 GEMM.
    const std::string h2 = rows <= 8 ? "gpu_int4_gemv_h2" : "gpu_int4_gemm_h2";
    size_t count = 0;
    for (size_t at = ran.find(h2); at != std::string::npos; at = ran.find(h2, at + 1)) ++count;
    CHECK(count == 2u);
    // The reference rounds every step to float16.
    CHECK(compare_tensors(r.outputs.at("y"), r.expected.at("y"), 4e-3, 4e-3) == "");
  }
}

TEST_CASE("Attention, activation MatMuls, Gathers and reductions match the reference on the OpenCL device",
          "[gpu_model][opencl]") {
  if (!opencl_runs_here("the GPU model tests")) return;
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 gen(seed);
  const std::string model = attention_model(temp_dir("gpu_model_attention"));
  GpuRunResult r = run_model_on_opencl(model, {{"x", uniform(gen, {2, 5, 8}, -2, 2)}});
  check_outputs(r);
  check_kernel_kinds(
      r, {"gpu attention operand (view copy)", "gpu attention scores", "gpu attention softmax", "gpu attention output",
          "gpu batch matmul", "gpu gather", "gpu reduce mean", "gpu reduce max", "gpu elementwise Clip:"});
}

// The int4 detector (ConvTranspose, Concat, Resize) and the int4 recognizer (attention, Gathers,
// reductions), at 64x64 and 32x64: pocl compiles each model's kernels for 15 to 30 s here. (The
// classifier's kinds are in the models above, and float weights in the GPU kernel tests.)
TEST_CASE("The exported detector and recognizer (int4) run whole on the OpenCL device",
          "[gpu_model][opencl][exported]") {
  if (!opencl_runs_here("the GPU model tests")) return;
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 gen(seed);
  const std::string dir = temp_dir("gpu_model_exported");
  for (const std::string name : {"detector", "recognizer"}) {
    INFO(name);
    const ExportedModel* m = nullptr;
    for (const ExportedModel& e : exported_models())
      if (e.name == name) m = &e;
    REQUIRE(m != nullptr);
    std::mt19937 weights(seed + 1);
    ExportedModelOptions options;
    options.int4 = true;
    options.height = name == "recognizer" ? 32 : 64;
    options.width = 64;
    const std::string path = m->build(weights, options).save(dir + "/" + name + "_int4.onnx");
    GpuRunResult r = run_model_on_opencl(path, {{"x", uniform(gen, {1, 3, options.height, 64}, -1, 1)}});
    check_outputs(r);
  }
}

// Every kind of model kernel on Oclgrind (tests/oclgrind.h), which pocl cannot stand in for: no access past a
// buffer, no data race, no barrier left to part of a block; and the outputs match the reference.
TEST_CASE("Whole models on Oclgrind: every kernel kind stays within its buffers, with no data race",
          "[gpu_model][opencl][oclgrind]") {
  if (!opencl_runs_here("the GPU model tests")) return;
  REQUIRE_FALSE(oclgrind_icd().empty());  // scripts/setup.sh installs oclgrind
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 gen(seed);
  std::mt19937 weights(seed + 1);
  const std::string dir = temp_dir("gpu_model_oclgrind");
  const std::vector<std::pair<std::string, TensorMap>> models = {
      {example_cnn(weights).save(dir + "/cnn.onnx"), {{"image", uniform(gen, {1, 3, 32, 32}, -1, 1)}}},
      {example_mlp(weights).save(dir + "/mlp.onnx"), {{"x", uniform(gen, {24, 64}, -2, 2)}}},
      {ops_model(dir, gen), {{"x", uniform(gen, {2, 4, 9, 11}, -1, 1)}}},
      {movement_model(dir, gen), {{"x", uniform(gen, {2, 6, 5, 4}, -1, 1)}}},
      {attention_model(dir), {{"x", uniform(gen, {2, 5, 8}, -1, 1)}}},
      {padding_model(dir, gen), {{"x", uniform(gen, {2, 3, 4, 5}, -1, 1)}}},
      {indices_model(dir, gen),
       {{"x", uniform(gen, {2, 5, 8}, -2, 2)},
        {"ids", random_indices(gen, DType::Int64, {2, 3}, -10, 9)},
        {"pick", random_indices(gen, DType::Int32, {4}, -5, 4)}}}};
  for (const auto& [model, inputs] : models) {
    INFO(model);
    std::map<std::string, Shape> shapes;
    for (const auto& [name, t] : inputs) shapes[name] = t.shape();
    Graph graph = load_model(model, shapes);
    const std::string job_dir = temp_dir("gpu_model_oclgrind_job");
    dsl::Result<GpuModelJob> job =
        write_gpu_model_job(graph, inputs, dsl::parse_target("opencl").value(), nullptr, job_dir);
    INFO((job.ok() ? "" : job.failure().describe()));
    REQUIRE(job.ok());
    dsl::ProgramRun run = run_on_oclgrind({tetra_device_program(), "run", job.value().job_file}, job_dir);
    INFO(run.output);
    CHECK(oclgrind_faults(run.output) == "");
    REQUIRE(run.status == 0);
    CHECK_THAT(run.output, Catch::Contains("Oclgrind Simulator"));  // the device it ran on
    dsl::Result<TensorMap> outputs = read_gpu_model_outputs(graph, job_dir);
    INFO((outputs.ok() ? "" : outputs.failure().describe()));
    REQUIRE(outputs.ok());
    check_outputs(GpuRunResult{job.value(), outputs.value(), run_reference(graph, inputs)});
  }
}

// Without those GPUs, the jobs still build: every kernel kind in one HIP code object per arch, and in PTX.
TEST_CASE("Whole-model GPU jobs build for AMD archs and for NVIDIA", "[gpu_model][hip][cuda]") {
  const std::string dir = temp_dir("gpu_model_archs");
  std::mt19937 gen(fresh_seed());
  std::mt19937 weights(fresh_seed());
  const std::vector<std::pair<std::string, TensorMap>> models = {
      {example_cnn(weights).save(dir + "/cnn.onnx"), {{"image", uniform(gen, {1, 3, 32, 32}, -1, 1)}}},
      {ops_model(dir, gen), {{"x", uniform(gen, {2, 4, 9, 11}, -1, 1)}}},
      {movement_model(dir, gen), {{"x", uniform(gen, {2, 6, 5, 4}, -1, 1)}}},
      {attention_model(dir), {{"x", uniform(gen, {2, 5, 8}, -1, 1)}}},
      {padding_model(dir, gen), {{"x", uniform(gen, {2, 3, 4, 5}, -1, 1)}}}};
  for (const char* target : {"hip:gfx90a", "hip:gfx1201", "cuda:sm_90"})
    for (const auto& [model, inputs] : models) {
      INFO(target << " " << model);
      std::map<std::string, Shape> shapes;
      for (const auto& [name, t] : inputs) shapes[name] = t.shape();
      Graph graph = load_model(model, shapes);
      const std::string job_dir = temp_dir("gpu_model_arch_job");
      dsl::Result<GpuModelJob> job =
          write_gpu_model_job(graph, inputs, dsl::parse_target(target).value(), nullptr, job_dir);
      INFO((job.ok() ? "" : job.failure().describe()));
      REQUIRE(job.ok());
      const nlohmann::json j = nlohmann::json::parse(std::ifstream(job.value().job_file));
      const std::string program = job_dir + "/" + j["source"].get<std::string>();
      CHECK(fs::file_size(program) > 1000);
      if (std::string(target).rfind("hip:", 0) == 0) {
        std::string notes;
        REQUIRE(run_command("llvm-readelf-19 --notes " + program, &notes) == 0);
        CHECK_THAT(notes, Catch::Contains(std::string("amdgcn-amd-amdhsa--") + (std::string(target).substr(4))));
      }
    }
}

// No AMD GPU here: --target hip:ARCH says so and exits 2, and with --fallback cpu runs on the CPU.
TEST_CASE("tetra run|bench --target hip --fallback cpu run on the CPU when there is no AMD GPU",
          "[gpu_model][hip][cli]") {
  std::string info;
  if (run_command(tetra_device_program() + " info --dialect hip", &info) == 0) {
    WARN("this machine has a HIP device, so the fallback is not exercised: " << info);
    return;
  }
  const std::string dir = temp_dir("gpu_model_fallback");
  std::mt19937 weights(fresh_seed());
  const std::string mlp = example_mlp(weights).save(dir + "/mlp.onnx");
  const std::string run = tetra_cli() + " run " + mlp + " --target hip:gfx942 --random-inputs --shape x=2,64";
  std::string out;
  CHECK(run_command(run, &out) == 2);
  CHECK_THAT(out, Catch::Contains("--target hip:gfx942: ") && Catch::Contains("no HIP"));
  CHECK(run_command(run + " --fallback cpu --check", &out) == 0);
  CHECK_THAT(out, Catch::Contains("no HIP") &&
                      Catch::Contains("running on this machine's CPU instead (--fallback cpu)") &&
                      Catch::Contains("check 'logits' against the reference") && !Catch::Contains("FAIL"));
  CHECK(run_command(tetra_cli() + " bench " + mlp + " --target hip:gfx942 --fallback cpu --shape x=2,64 --repeat 2",
                    &out) == 0);
  CHECK_THAT(out, Catch::Contains("on halide"));
  CHECK(run_command(run + " --fallback gpu", &out) == 2);
  CHECK_THAT(out, Catch::Contains("--fallback takes cpu"));
}
