// The Halide backend's elementwise, normalisation, pooling and softmax kernels
// (runtime/halide_elementwise.cpp) against the reference kernels: one-node models with odd sizes and
// broadcasting patterns, run on both backends, and the example-style CNN and MLP (float32 and int4).
// Every check also asserts that the node really ran on its Halide kernel.
//
// JIT compiles dominate the time (~0.2 s each), so cases reuse shapes: a pipeline is compiled once
// per op and broadcast pattern, whatever the sizes.
#include <catch2/catch.hpp>
#include <cmath>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "runtime/executor.h"
#include "runtime/model.h"
#include "runtime/reference_evaluator.h"
#include "tests/test_support.h"
#include "examples/example_models.h"
#include "tools/model_builder.h"

using namespace tetra;
using namespace tetra::test;

namespace {

// A model input: a graph input, or a constant initializer; an empty name omits an optional input.
struct In {
  std::string name;
  Tensor value;
  bool constant = false;
};

struct Outcome {
  Tensor halide, reference;
  KernelInfo kernel;  // the node's kernel on the Halide backend
};

// Runs the one-node model `op(inputs)` on both backends.
Outcome run_node(const std::string& op, const std::vector<In>& inputs, const std::vector<Attr>& attrs = {},
                 int64_t opset = 21) {
  static int count = 0;
  ModelBuilder b(opset);
  std::vector<std::string> names;
  TensorMap feeds;
  for (const In& in : inputs) {
    names.push_back(in.name);
    if (in.name.empty()) continue;
    if (in.constant) {
      b.initializer(in.name, in.value);
    } else {
      b.input(in.name, in.value.dtype(), in.value.shape());
      feeds[in.name] = in.value;
    }
  }
  b.output("y", inputs[0].value.dtype());
  b.node(op, names, {"y"}, attrs);
  static const std::string dir = temp_dir("halide_elementwise");
  Graph graph = load_model(b.save(dir + "/m" + std::to_string(count++) + ".onnx"));
  Executor halide(graph, ExecutorOptions{Backend::Halide, 0});
  Executor reference(graph, ExecutorOptions{Backend::Reference, 0});
  Outcome out;
  out.halide = halide.run(feeds).at("y");
  out.reference = reference.run(feeds).at("y");
  out.kernel = halide.kernels()[0];
  return out;
}

// The node ran on Halide and matches the reference within atol + rtol * |reference|.
void check_halide(const Outcome& o, double atol, double rtol) {
  INFO(o.kernel.node << ": " << o.kernel.backend << " (" << o.kernel.detail << ")");
  CHECK(o.kernel.backend == "halide");
  std::string mismatch = compare_tensors(o.halide, o.reference, atol, rtol);
  INFO(mismatch);
  CHECK(mismatch.empty());
}

In input(const std::string& name, const Shape& shape, double lo = -2.0, double hi = 2.0, DType dtype = DType::Float32) {
  return {name, random_tensor(dtype, shape, lo, hi)};
}

// Exact operations (one rounding in both backends) and libm-grade functions.
constexpr double kExact = 1e-6, kTranscendental = 2e-6;

}  // namespace

TEST_CASE("Halide unary ops match the reference", "[halide][elementwise]") {
  struct Unary {
    std::string op;
    double lo, hi, rtol;
    std::vector<Attr> attrs;
  };
  const std::vector<Unary> ops = {
      {"Relu", -2, 2, 0, {}},
      {"LeakyRelu", -2, 2, kExact, {{"alpha", 0.2f}}},
      {"Sigmoid", -20, 20, kTranscendental, {}},
      {"Tanh", -6, 6, kTranscendental, {}},  // both the series (|x| < 0.5) and the exp form
      {"HardSigmoid", -8, 8, kExact, {{"alpha", 0.3f}, {"beta", 0.4f}}},
      {"HardSwish", -5, 5, kExact, {}},
      {"Gelu", -6, 6, kTranscendental, {}},
      {"Gelu", -6, 6, kTranscendental, {{"approximate", "tanh"}}},
      {"Erf", -4, 4, kTranscendental, {}},
      {"Sqrt", 0.01, 9, kExact, {}},
      {"Exp", -20, 20, kTranscendental, {}},
      {"Log", 0.001, 100, kTranscendental, {}},
      {"Neg", -2, 2, 0, {}},
      {"Abs", -2, 2, 0, {}},
      {"Reciprocal", 0.1, 3, kExact, {}},
      {"Identity", -2, 2, 0, {}},
  };
  for (const Unary& u : ops) {
    // An odd 3-D shape and a single element: both run the same compiled 1-D pipeline.
    for (const Shape& shape : {Shape{3, 5, 37}, Shape{1}}) {
      INFO(u.op << " on " << shape_str(shape));
      check_halide(run_node(u.op, {input("x", shape, u.lo, u.hi)}, u.attrs), 1e-7, u.rtol);
    }
  }
  // Tanh near 0, where 1 - 2 / (exp(2x) + 1) would cancel.
  check_halide(run_node("Tanh", {input("x", {3, 5, 37}, -1e-3, 1e-3)}), 0, kTranscendental);
}

TEST_CASE("Halide Clip takes bounds from inputs or attributes", "[halide][elementwise]") {
  Shape s{4, 33};
  auto scalar = [](double v) { return Tensor::scalar(DType::Float32, v); };
  check_halide(run_node("Clip", {input("x", s), {"lo", scalar(-0.5), true}, {"hi", scalar(0.7), true}}), 0, 0);
  // Runtime bounds and only a max bound.
  check_halide(run_node("Clip", {input("x", s), {"lo", scalar(-0.25)}, {"hi", scalar(1.5)}}), 0, 0);
  check_halide(run_node("Clip", {input("x", s), {"", Tensor()}, {"hi", scalar(0.3), true}}), 0, 0);
  check_halide(run_node("Clip", {input("x", s)}), 0, 0);
  // Before opset 11: attributes.
  check_halide(run_node("Clip", {input("x", s)}, {{"min", -0.1f}, {"max", 0.2f}}, 10), 0, 0);
}

TEST_CASE("Halide binary ops broadcast like numpy", "[halide][elementwise]") {
  struct Pattern {
    const char* name;
    Shape a, b;
  };
  const std::vector<Pattern> patterns = {
      {"same shape", {4, 33}, {4, 33}},
      {"scalar", {4, 33}, {}},
      {"scalar first", {}, {4, 33}},
      {"row", {4, 33}, {33}},
      {"column", {4, 33}, {4, 1}},
      {"rank mismatch", {2, 3, 1, 5}, {3, 4, 1}},
      {"both broadcast", {7, 1, 9}, {1, 5, 1}},
  };
  for (const Pattern& p : patterns)
    for (const char* op : {"Add", "Mul"}) {
      INFO(op << " " << p.name);
      check_halide(run_node(op, {input("a", p.a), input("b", p.b)}), 0, kExact);
    }
  for (size_t k : {3, 5})
    for (const char* op : {"Sub", "Div", "Min", "Max", "Pow"}) {
      const Pattern& p = patterns[k];
      INFO(op << " " << p.name);
      bool pow = std::string(op) == "Pow";
      In a = input("a", p.a, pow ? 0.2 : -2, pow ? 3 : 2);
      In b = input("b", p.b, pow ? -3 : 0.5, pow ? 3 : 2);  // Div: denominators away from 0
      check_halide(run_node(op, {a, b}), 1e-30, pow ? kTranscendental : kExact);
    }
  // A constant exponent of 2 squares, for bases of any sign.
  check_halide(run_node("Pow", {input("a", {4, 33}), {"e", Tensor::scalar(DType::Float32, 2), true}}), 0, kExact);
  // Constant operands (a bias) are read like any other.
  check_halide(run_node("Add", {input("a", {2, 3, 4, 5}), {"b", random_tensor(DType::Float32, {3, 1, 1}), true}}), 0,
               kExact);
}

TEST_CASE("Halide elementwise float16 computes in float32", "[halide][elementwise]") {
  In a = input("a", {4, 33}, -2, 2, DType::Float16), b = input("b", {33}, -2, 2, DType::Float16);
  // Rounding the float32 result to half may differ from the reference's one rounding by an ulp.
  check_halide(run_node("Add", {a, b}), 1e-3, 1e-3);
  check_halide(run_node("Sigmoid", {a}), 1e-3, 1e-3);
  check_halide(run_node("Softmax", {a}, {{"axis", -1}}), 1e-3, 1e-3);
}

TEST_CASE("Halide BatchNormalization is a per-channel affine", "[halide][elementwise]") {
  auto params = [](int64_t c, bool constant) {
    return std::vector<In>{{"scale", random_tensor(DType::Float32, {c}, 0.5, 1.5), constant},
                           {"bias", random_tensor(DType::Float32, {c}, -0.5, 0.5), constant},
                           {"mean", random_tensor(DType::Float32, {c}, -0.5, 0.5), constant},
                           {"var", random_tensor(DType::Float32, {c}, 0.5, 2), constant}};
  };
  for (bool constant : {true, false})
    for (const Shape& x : {Shape{2, 5, 7, 9}, Shape{1, 5, 3, 3}, Shape{6, 5}}) {
      INFO(shape_str(x) << (constant ? " constant" : " runtime") << " parameters");
      std::vector<In> in{input("x", x)};
      for (const In& p : params(5, constant)) in.push_back(p);
      check_halide(run_node("BatchNormalization", in, {{"epsilon", 1e-3f}}), 1e-5, 1e-5);
    }
}

TEST_CASE("Halide MaxPool and AveragePool match the reference", "[halide][elementwise]") {
  using V = std::vector<int64_t>;
  struct Pool {
    const char* name;
    Shape x;
    std::vector<Attr> attrs;
  };
  const std::vector<Pool> pools = {
      {"2x2 stride 2", {2, 3, 8, 10}, {{"kernel_shape", V{2, 2}}, {"strides", V{2, 2}}}},
      {"3x3 pads ceil_mode",
       {1, 3, 11, 13},
       {{"kernel_shape", V{3, 3}}, {"strides", V{2, 2}}, {"pads", V{1, 1, 1, 1}}, {"ceil_mode", 1}}},
      {"3x3 count_include_pad",
       {1, 3, 11, 13},
       {{"kernel_shape", V{3, 3}}, {"strides", V{2, 2}}, {"pads", V{1, 0, 2, 1}}, {"count_include_pad", 1}}},
      {"3x3 dilated, same_upper",
       {2, 2, 9, 17},
       {{"kernel_shape", V{3, 3}}, {"dilations", V{2, 1}}, {"auto_pad", "SAME_UPPER"}}},
      {"1-D", {2, 3, 17}, {{"kernel_shape", V{3}}, {"strides", V{2}}, {"pads", V{1, 1}}}},
  };
  for (const Pool& p : pools)
    for (const char* op : {"MaxPool", "AveragePool"}) {
      INFO(op << " " << p.name);
      check_halide(run_node(op, {input("x", p.x)}, p.attrs), 1e-6, 1e-6);
    }
}

TEST_CASE("Halide global pools match the reference", "[halide][elementwise]") {
  for (const Shape& x : {Shape{2, 3, 5, 7}, Shape{1, 4, 33}, Shape{2, 3, 1, 1}})
    for (const char* op : {"GlobalAveragePool", "GlobalMaxPool"}) {
      INFO(op << " " << shape_str(x));
      check_halide(run_node(op, {input("x", x)}), 1e-6, 1e-6);
    }
}

TEST_CASE("Halide Softmax runs along the last axis", "[halide][elementwise]") {
  for (const Shape& x : {Shape{3, 37}, Shape{2, 3, 5}, Shape{4, 1}, Shape{2, 100}}) {
    INFO(shape_str(x));
    check_halide(run_node("Softmax", {input("x", x, -10, 10)}), 1e-7, 1e-5);
  }
  // Before opset 13, axis 1 of a rank-3 input normalises the flattened [1:] dims.
  check_halide(run_node("Softmax", {input("x", {2, 3, 5}, -10, 10)}, {{"axis", 1}}, 11), 1e-7, 1e-5);
  // From opset 13 a middle axis is a strided softmax: the reference kernel runs it.
  Outcome middle = run_node("Softmax", {input("x", {2, 3, 5})}, {{"axis", 1}}, 13);
  CHECK(middle.kernel.backend == "reference");
  CHECK_THAT(middle.kernel.detail, Catch::Contains("non-last axis"));
}

TEST_CASE("Halide LayerNormalization normalises trailing axes", "[halide][elementwise]") {
  Shape x{4, 6, 33};
  auto param = [](const char* name, const Shape& s, double lo, double hi) {
    return In{name, random_tensor(DType::Float32, s, lo, hi), true};
  };
  check_halide(run_node("LayerNormalization", {input("x", x), param("g", {33}, 0.5, 1.5), param("b", {33}, -1, 1)}),
               1e-5, 1e-5);
  // Two trailing axes, no bias; Scale broadcast within the row, and given at runtime.
  check_halide(run_node("LayerNormalization", {input("x", x), param("g", {6, 33}, 0.5, 1.5)}, {{"axis", -2}}), 1e-5,
               1e-5);
  check_halide(run_node("LayerNormalization", {input("x", x), param("g", {1, 33}, 0.5, 1.5)}, {{"axis", 1}}), 1e-5,
               1e-5);
  check_halide(
      run_node("LayerNormalization", {input("x", x), input("g", {33}), input("b", {33})}, {{"epsilon", 1e-2f}}), 1e-5,
      1e-5);
}

TEST_CASE("Halide kernels follow runtime shapes of dynamic dims", "[halide][elementwise]") {
  ModelBuilder b(21);
  b.input("a", DType::Float32, {-1, 33}).input("b", DType::Float32, {33}).output("y", DType::Float32);
  b.node("Add", {"a", "b"}, {"y0"});
  b.node("Softmax", {"y0"}, {"y"});
  Graph graph = load_model(b.save(temp_dir("halide_dynamic") + "/m.onnx"));
  Executor halide(graph, ExecutorOptions{Backend::Halide, 0});
  CHECK(halide.kernels()[0].detail == "not compiled yet");  // the pattern is known once shapes are
  for (int64_t rows : {4, 1, 7}) {
    TensorMap in{{"a", random_tensor(DType::Float32, {rows, 33})}, {"b", random_tensor(DType::Float32, {33})}};
    std::string mismatch = compare_tensors(halide.run(in).at("y"), run_reference(graph, in).at("y"), 1e-7, 1e-5);
    INFO(rows << " rows: " << mismatch);
    CHECK(mismatch.empty());
  }
  for (const KernelInfo& k : halide.kernels()) CHECK(k.backend == "halide");
}

TEST_CASE("Halide backend leaves integer arithmetic to the reference", "[halide][elementwise]") {
  Outcome ints = run_node("Add", {input("a", {4, 6}, -9, 9, DType::Int32), input("b", {6}, -9, 9, DType::Int32)});
  CHECK(ints.kernel.backend == "reference");
  CHECK_THAT(ints.kernel.detail, Catch::Contains("int32"));
  CHECK(compare_tensors(ints.halide, ints.reference, 0, 0) == "");
}

// ---------------------------------------------------------------------------------------------
// Whole models: the example CNN and MLP (examples/example_models.h), float32 and int4.

namespace {

// Runs the model on both backends: the outputs agree within `tetra run --check`'s tolerance and
// every node of an op this file compiles ran on Halide.
void check_model(const std::string& path, const Shape& input_shape) {
  Graph graph = load_model(path);
  TensorMap inputs{{graph.inputs.at(0).name, random_tensor(DType::Float32, input_shape)}};
  Executor halide(graph, ExecutorOptions{Backend::Halide, 0});
  TensorMap got = halide.run(inputs);
  TensorMap expected = Executor(graph, ExecutorOptions{Backend::Reference, 0}).run(inputs);
  for (const auto& [name, ref] : expected) {
    double scale = 0;
    for (int64_t i = 0; i < ref.size(); ++i) scale = std::max(scale, std::fabs(ref.get(i)));
    std::string mismatch = compare_tensors(got.at(name), ref, 1e-4 * (1 + scale), 0);
    INFO(path << " output " << name << ": " << mismatch);
    CHECK(mismatch.empty());
  }
  const std::set<std::string> ours = {"Add",
                                      "Mul",
                                      "Relu",
                                      "Sigmoid",
                                      "HardSwish",
                                      "BatchNormalization",
                                      "LayerNormalization",
                                      "MaxPool",
                                      "GlobalAveragePool",
                                      "Softmax"};
  std::vector<KernelInfo> kernels = halide.kernels();
  for (size_t k = 0; k < graph.nodes.size(); ++k) {
    if (!ours.count(graph.nodes[k].op_type)) continue;
    INFO(kernels[k].node << ": " << kernels[k].detail);
    CHECK(kernels[k].backend == "halide");
  }
}

}  // namespace

TEST_CASE("Halide backend runs the example CNN and MLP like the reference", "[halide][elementwise]") {
  std::string dir = temp_dir("halide_models");
  for (const auto& [name, builder, shape] :
       {std::tuple{"cnn", example_cnn(rng()), Shape{1, 3, 32, 32}}, std::tuple{"mlp", example_mlp(rng()), Shape{4, 64}}}) {
    std::string path = builder.save(dir + "/" + name + ".onnx");
    check_model(path, shape);
    std::string int4 = dir + "/" + name + "_int4.onnx", log;
    INFO(log);
    REQUIRE(run_command(tetra_cli() + " quantize " + path + " -o " + int4 + " --block-size 16", &log) == 0);
    check_model(int4, shape);
  }
}
