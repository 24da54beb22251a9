// The exporter-style models (examples/exported_models.h) at small input sizes: tetra on the reference
// and the Halide backend against ONNX Runtime (graph optimisations off), fp32 and int4, on fresh random
// inputs; and the exporter traits of the fp32 models, so that a change to the builder cannot silently
// drop what makes them hard.
#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>
#include <functional>
#include <map>

#include "examples/exported_models.h"
#include "runtime/executor.h"
#include "runtime/model.h"
#include "tests/ort_oracle.h"
#include "tests/test_support.h"

using namespace tetra;
using namespace tetra::test;

namespace {

const ExportedModel& model_named(const std::string& name) {
  for (const ExportedModel& m : exported_models())
    if (m.name == name) return m;
  throw std::runtime_error("no exported model " + name);
}

// Small inputs that keep every stage of each model (the detector and classifier reduce by 32).
std::pair<int64_t, int64_t> small_size(const std::string& name) {
  if (name == "detector") return {64, 96};
  if (name == "classifier") return {64, 64};
  return {16, 48};  // recognizer: 4x12 tokens
}

// The fp32 and int4 forms of one model, from the same generator state (the same fp32 weights).
struct ModelPair {
  onnx::ModelProto fp32, int4;
};
ModelPair build_pair(const ExportedModel& m) {
  auto [height, width] = small_size(m.name);
  const unsigned seed = rng()();
  std::mt19937 fp32_rng(seed), int4_rng(seed);
  return {m.build(fp32_rng, {false, height, width}).proto(), m.build(int4_rng, {true, height, width}).proto()};
}

std::string save(const onnx::ModelProto& model, const std::string& path) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  REQUIRE(model.SerializeToOstream(&file));
  return path;
}

// ---- graph queries on the ModelProto (the file as an exporter wrote it) ----------------------

std::map<std::string, int> histogram(const onnx::ModelProto& model) {
  std::map<std::string, int> ops;
  for (const auto& n : model.graph().node()) ++ops[n.op_type()];
  return ops;
}

const onnx::NodeProto* producer(const onnx::ModelProto& model, const std::string& value) {
  for (const auto& n : model.graph().node())
    for (const auto& out : n.output())
      if (out == value) return &n;
  return nullptr;
}

const onnx::AttributeProto* attribute(const onnx::NodeProto& node, const std::string& name) {
  for (const auto& a : node.attribute())
    if (a.name() == name) return &a;
  return nullptr;
}

// True when some path of nodes with these op types exists, each consuming the previous one's output.
bool has_chain(const onnx::ModelProto& model, const std::vector<std::string>& ops) {
  std::function<bool(const onnx::NodeProto&, size_t)> continues = [&](const onnx::NodeProto& node, size_t next) {
    if (next == ops.size()) return true;
    for (const auto& n : model.graph().node()) {
      if (n.op_type() != ops[next]) continue;
      for (const auto& in : n.input())
        if (in == node.output(0) && continues(n, next + 1)) return true;
    }
    return false;
  };
  for (const auto& n : model.graph().node())
    if (n.op_type() == ops[0] && continues(n, 1)) return true;
  return false;
}

int64_t opset_of(const onnx::ModelProto& model) {
  for (const auto& imp : model.opset_import())
    if (imp.domain().empty() || imp.domain() == "ai.onnx") return imp.version();
  return 0;
}

// Every Conv/Gemm/ConvTranspose weight, and `min_matmuls` MatMul weights, come from a `producer_op` node.
void check_weights_from(const onnx::ModelProto& model, const std::string& producer_op, size_t min_matmuls) {
  size_t matmuls = 0;
  for (const auto& n : model.graph().node()) {
    if (n.op_type() != "Conv" && n.op_type() != "Gemm" && n.op_type() != "MatMul") continue;
    const onnx::NodeProto* w = producer(model, n.input(1));
    INFO(n.op_type() << " '" << n.name() << "' weight " << n.input(1));
    if (n.op_type() == "MatMul") {
      matmuls += w && w->op_type() == producer_op;
    } else {
      REQUIRE(w);
      CHECK(w->op_type() == producer_op);
    }
  }
  CHECK(matmuls >= min_matmuls);
}

// ---- running -----------------------------------------------------------------------------------

double max_abs(const Tensor& t) {
  double m = 0;
  for (int64_t i = 0; i < t.size(); ++i) m = std::max(m, std::fabs(t.get(i)));
  return m;
}

// Runs `path` on `input` with ORT and with tetra on both backends (the model loaded as the CLI loads
// it: int4 weights and epilogues fused) and checks that they agree. Returns ORT's output.
Tensor check_against_ort(const std::string& path, const Tensor& input) {
  Graph graph = load_model(path);
  std::vector<Tensor> theirs = run_ort(path, {input});
  REQUIRE(theirs.size() == 1);
  // fp32 through 40-90 layers: ORT rounds every sum in float, tetra's reference in double, and the
  // Halide kernels sum in another order. The worst difference seen is 3e-6 of the output's largest
  // value (the detector on Halide); 2e-5 leaves room for other machines' instruction choices.
  const double atol = 2e-5 * max_abs(theirs[0]);
  // The Halide kernels go through a kernel cache in the build tree: an int4 model needs some 30
  // distinct kernels, 15 s of compiling the first time.
  const std::string kernel_cache = std::string(TETRA_BINARY_DIR) + "/test_kernel_cache";
  for (Backend backend : {Backend::Reference, Backend::Halide}) {
    Executor executor(graph, ExecutorOptions{backend, 0, nullptr, kernel_cache});
    TensorMap ours = executor.run({{"x", input}});
    const Tensor& got = ours.at(graph.outputs.at(0).name);
    INFO(path << " on " << (backend == Backend::Halide ? "halide" : "reference"));
    CHECK(got.shape() == theirs[0].shape());
    CHECK(compare_tensors(got, theirs[0], atol, 1e-4) == "");
  }
  // The first run made the memory plan; a run on it, on other data, agrees with ORT as well.
  Executor executor(graph, ExecutorOptions{Backend::Halide, 0, nullptr, kernel_cache});
  executor.run({{"x", input}});
  const Tensor other = random_tensor(DType::Float32, input.shape(), -1, 1);
  const Tensor planned = executor.run({{"x", other}}).at(graph.outputs.at(0).name);
  const Tensor expected = run_ort(path, {other}).at(0);
  INFO(path << " on halide, on the memory plan");
  CHECK(compare_tensors(planned, expected, 2e-5 * max_abs(expected), 1e-4) == "");
  Executor::MemoryStats stats = executor.memory_stats();
  CHECK(stats.arena_bytes > 0);
  CHECK(stats.arena_bytes < stats.value_bytes);
  CHECK(stats.predicted);  // planned before the first run: every shape inferred, no view unforeseen
  return theirs[0];
}

// The logits behind a model's probabilities, which int4 errors move without the saturation of the
// probabilities hiding it: log(p / (1 - p)) behind the detector's Sigmoid, log p less its mean over
// the last axis (the logits less theirs) behind a Softmax.
std::vector<double> logits_of(const Tensor& probs, bool sigmoid) {
  std::vector<double> logits(probs.size());
  for (int64_t i = 0; i < probs.size(); ++i)
    logits[i] = sigmoid ? std::log(probs.get(i) / (1 - probs.get(i))) : std::log(probs.get(i));
  if (sigmoid) return logits;
  const int64_t row = probs.shape().back();
  for (int64_t start = 0; start < probs.size(); start += row) {
    double mean = 0;
    for (int64_t i = start; i < start + row; ++i) mean += logits[i] / row;
    for (int64_t i = start; i < start + row; ++i) logits[i] -= mean;
  }
  return logits;
}

double cosine(const std::vector<double>& a, const std::vector<double>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return ab / std::sqrt(aa * bb);
}

// The fp32 or the int4 form of `name` against ORT; for int4, every weight fused and the output close
// to the fp32 model's.
void check_model_against_ort(const std::string& name, bool int4) {
  if (!require_ort()) return;
  const ExportedModel& m = model_named(name);
  ModelPair pair = build_pair(m);
  std::string dir = temp_dir("exported_" + name);
  auto [height, width] = small_size(name);
  const Tensor input = random_tensor(DType::Float32, {1, 3, height, width}, -1, 1);
  std::string fp32 = save(pair.fp32, dir + "/fp32.onnx");
  if (!int4) {
    check_against_ort(fp32, input);
    return;
  }
  std::string quantized = save(pair.int4, dir + "/int4.onnx");
  Tensor int4_out = check_against_ort(quantized, input);
  // Every DequantizeLinear feeds one weight, and every one became a fused int4 node.
  CHECK(load_model(quantized).quantized_nodes().size() == size_t(histogram(pair.int4)["DequantizeLinear"]));
  // Round-to-nearest int4 in every layer moves the logits but keeps them: cosines of 0.98 (detector,
  // recognizer) and 0.86 (classifier, some 50 quantized layers); a wrong scale layout gives about 0.
  Tensor fp32_out = run_ort(fp32, {input}).at(0);
  const bool sigmoid = name == "detector";
  CHECK(cosine(logits_of(int4_out, sigmoid), logits_of(fp32_out, sigmoid)) > 0.8);
}

}  // namespace

TEST_CASE("Exported detector matches ONNX Runtime, fp32", "[exported][ort]") {
  check_model_against_ort("detector", false);
}
TEST_CASE("Exported detector matches ONNX Runtime, int4", "[exported][ort]") {
  check_model_against_ort("detector", true);
}
TEST_CASE("Exported classifier matches ONNX Runtime, fp32", "[exported][ort]") {
  check_model_against_ort("classifier", false);
}
TEST_CASE("Exported classifier matches ONNX Runtime, int4", "[exported][ort]") {
  check_model_against_ort("classifier", true);
}
TEST_CASE("Exported recognizer matches ONNX Runtime, fp32", "[exported][ort]") {
  check_model_against_ort("recognizer", false);
}
TEST_CASE("Exported recognizer matches ONNX Runtime, int4", "[exported][ort]") {
  check_model_against_ort("recognizer", true);
}

TEST_CASE("Exported fp32 models keep the exporter traits", "[exported]") {
  for (const ExportedModel& m : exported_models()) {
    INFO(m.name);
    ModelPair pair = build_pair(m);
    const onnx::ModelProto& fp32 = pair.fp32;
    std::map<std::string, int> ops = histogram(fp32);
    CHECK(opset_of(fp32) == m.fp32_opset);
    CHECK(fp32.ir_version() < 7);
    CHECK(fp32.graph().initializer_size() == 0);  // every weight and constant a Constant node
    CHECK(ops["Constant"] > 20);
    check_weights_from(fp32, "Constant", m.name == "recognizer" ? 10 : 0);
    // Old operator forms: Clip bounds as attributes before opset 11, as inputs after.
    for (const auto& n : fp32.graph().node()) {
      INFO(n.op_type() << " '" << n.name() << "'");
      if (n.op_type() == "Clip") CHECK((n.input_size() == 1) == (m.fp32_opset < 11));
      if (n.op_type() == "Clip" && m.fp32_opset < 11) CHECK((attribute(n, "min") && attribute(n, "max")));
      if (n.op_type() == "ReduceMean" || n.op_type() == "Squeeze") {
        CHECK(n.input_size() == 1);
        CHECK(attribute(n, "axes"));
      }
      if (n.op_type() == "Softmax") REQUIRE(attribute(n, "axis"));
    }

    if (m.name == "detector") {
      for (const char* op : {"BatchNormalization", "Relu", "Resize", "ConvTranspose", "Concat", "Sigmoid"})
        CHECK(ops[op] > 0);
      CHECK(ops["Resize"] >= 5);
      CHECK(ops["ConvTranspose"] >= 3);
      CHECK(has_chain(fp32, {"Conv", "BatchNormalization", "Relu"}));
      CHECK(has_chain(fp32, {"Resize", "Add", "Resize", "Add"}));  // the FPN's top-down path
      CHECK(has_chain(fp32, {"ConvTranspose", "BatchNormalization", "Relu", "ConvTranspose", "Sigmoid"}));
      bool depthwise = false, strided = false;
      for (const auto& n : fp32.graph().node()) {
        if (n.op_type() != "Conv") continue;
        depthwise = depthwise || attribute(n, "group")->i() > 1;
        strided = strided || attribute(n, "strides")->ints(0) == 2;
      }
      CHECK(depthwise);
      CHECK(strided);
    }
    if (m.name == "classifier") {
      CHECK(has_chain(fp32, {"Add", "Clip", "Mul", "Div"}));                                               // HardSwish
      CHECK(has_chain(fp32, {"GlobalAveragePool", "Conv", "Relu", "Conv", "Add", "Clip", "Div", "Mul"}));  // SE
      CHECK(has_chain(fp32, {"GlobalAveragePool", "Flatten", "Gemm", "Add", "Clip", "Mul", "Div", "Gemm", "Softmax"}));
      CHECK(ops["Gemm"] == 2);
      CHECK(ops["Conv"] > 40);
    }
    if (m.name == "recognizer") {
      CHECK(has_chain(fp32,
                      {"ReduceMean", "Sub", "Pow", "ReduceMean", "Add", "Sqrt", "Div", "Mul", "Add"}));  // LayerNorm
      CHECK(has_chain(fp32, {"Div", "Erf", "Add", "Mul", "Mul"}));                                       // GELU
      CHECK(has_chain(fp32, {"Add", "Clip", "Mul", "Div"}));  // HardSwish in the stem
      CHECK(has_chain(fp32, {"Reshape", "Transpose", "Gather", "MatMul", "Mul", "Softmax", "MatMul"}));  // attention
      CHECK(has_chain(fp32, {"ReduceMean", "Squeeze", "Transpose", "MatMul", "Add", "Softmax"}));
      CHECK(ops["LayerNormalization"] == 0);
      CHECK(ops["Gelu"] == 0);
    }

    // The int4 form: opset 21, every Conv/Gemm and weight MatMul behind DequantizeLinear of an int4
    // initializer, ConvTranspose weights still float Constants.
    const onnx::ModelProto& int4 = pair.int4;
    CHECK(opset_of(int4) == 21);
    check_weights_from(int4, "DequantizeLinear", m.name == "recognizer" ? 10 : 0);
    for (const auto& init : int4.graph().initializer()) {
      if (init.data_type() == onnx::TensorProto::FLOAT) continue;  // scales
      CHECK(init.data_type() == static_cast<int32_t>(DType::Int4));
    }
    for (const auto& n : int4.graph().node()) {
      if (n.op_type() == "ConvTranspose") CHECK(producer(int4, n.input(1))->op_type() == "Constant");
      if (n.op_type() == "Clip") CHECK(n.input_size() == 3);
    }
  }
}

TEST_CASE("Exported models refuse input sizes their strides cannot take", "[exported]") {
  CHECK_THROWS_WITH(exported_detector(rng(), {false, 100, 64}), Catch::Contains("multiple of 32"));
  CHECK_THROWS_WITH(exported_recognizer(rng(), {false, 30, 64}), Catch::Contains("multiple of 4"));
}
