// Operators written out op by op (HardSwish, HardSigmoid, Gelu, LayerNormalization) are put back at load
// time, in the forms exporters write, and the model computes the same values as before.
#include <catch2/catch.hpp>

#include <cmath>

#include "runtime/executor.h"
#include "runtime/model.h"
#include "tests/test_support.h"
#include "tools/model_builder.h"

using namespace tetra;
using namespace tetra::test;

namespace {

Tensor scalar_f32(double v) { return Tensor::from_doubles(DType::Float32, {}, {v}); }

int count_op(const Graph& g, const std::string& op) {
  int n = 0;
  for (const Node& node : g.nodes) n += node.op_type == op;
  return n;
}

// Loads `path` with and without the recognition, checks the recognised graph holds `op` `expected`
// times, and that both graphs give the same outputs (reference evaluator, fresh random inputs).
void check_recognised(const std::string& path, const TensorMap& inputs, const std::string& op, int expected) {
  LoadOptions off;
  off.recognise_decomposed = false;
  Graph plain = load_model(path, {}, off);
  Graph recognised = load_model(path);
  CHECK(count_op(recognised, op) == expected);
  CHECK(recognised.nodes.size() < plain.nodes.size());
  TensorMap want = run_reference(plain, inputs);
  TensorMap got = run_reference(recognised, inputs);
  for (const auto& [name, t] : want) {
    INFO("output " << name);
    CHECK(compare_tensors(got.at(name), t, 1e-5, 1e-5) == "");
  }
  // And on the Halide backend, where the operator runs as one kernel.
  TensorMap halide = Executor(recognised, ExecutorOptions{Backend::Halide}).run(inputs);
  for (const auto& [name, t] : want) CHECK(compare_tensors(halide.at(name), t, 1e-5, 1e-5) == "");
}

}  // namespace

TEST_CASE("written-out HardSwish and HardSigmoid become one operator", "[decomposed]") {
  std::string dir = temp_dir("decomposed_hswish");
  for (int opset : {10, 13}) {
    for (int form = 0; form < 3; ++form) {
      INFO("opset " << opset << " form " << form);
      ModelBuilder b(opset);
      b.input("x", DType::Float32, {2, 3, 5, 7});
      b.output("y", DType::Float32);
      b.output("s", DType::Float32);
      b.initializer("three", scalar_f32(3));
      b.initializer("six", scalar_f32(6));
      b.initializer("sixth", scalar_f32(1.0 / 6));
      if (opset >= 11) b.initializer("zero", scalar_f32(0));
      auto relu6 = [&](const std::string& in, const std::string& out) {
        if (opset < 11) {
          b.node("Clip", {in}, {out}, {{"min", 0.0f}, {"max", 6.0f}});
        } else {
          b.node("Clip", {in, "zero", "six"}, {out});
        }
      };
      // HardSwish: Add -> Clip -> Mul(x) -> Div(6) (torch), Div inside the product, or Mul by 1/6.
      b.node("Add", {"x", "three"}, {"a"});
      relu6("a", "c");
      if (form == 0) {
        b.node("Mul", {"x", "c"}, {"m"});
        b.node("Div", {"m", "six"}, {"y"});
      } else if (form == 1) {
        b.node("Div", {"c", "six"}, {"h"});
        b.node("Mul", {"h", "x"}, {"y"});
      } else {
        b.node("Mul", {"c", "x"}, {"m"});
        b.node("Mul", {"sixth", "m"}, {"y"});
      }
      // HardSigmoid (squeeze-excite's gate): Add -> Clip -> Div(6), then a Mul with another tensor.
      b.node("Add", {"y", "three"}, {"a2"});
      relu6("a2", "c2");
      b.node("Div", {"c2", "six"}, {"s"});
      std::string path = b.save(dir + "/m.onnx");
      TensorMap in = {{"x", random_tensor(DType::Float32, {2, 3, 5, 7}, -5, 5)}};
      check_recognised(path, in, "HardSwish", 1);
      CHECK(count_op(load_model(path), "HardSigmoid") == 1);
    }
  }
}

TEST_CASE("a chain whose intermediate has another reader is left alone", "[decomposed]") {
  std::string dir = temp_dir("decomposed_shared");
  ModelBuilder b(13);
  b.input("x", DType::Float32, {4, 8});
  b.output("y", DType::Float32);
  b.output("a", DType::Float32);  // the Add's result is also a graph output
  b.initializer("three", scalar_f32(3));
  b.initializer("zero", scalar_f32(0));
  b.initializer("six", scalar_f32(6));
  b.node("Add", {"x", "three"}, {"a"});
  b.node("Clip", {"a", "zero", "six"}, {"c"});
  b.node("Mul", {"x", "c"}, {"m"});
  b.node("Div", {"m", "six"}, {"y"});
  Graph g = load_model(b.save(dir + "/m.onnx"));
  CHECK(count_op(g, "HardSwish") == 0);
  CHECK(count_op(g, "Add") == 1);
}

TEST_CASE("written-out Gelu becomes Gelu", "[decomposed]") {
  std::string dir = temp_dir("decomposed_gelu");
  for (int form = 0; form < 2; ++form) {
    ModelBuilder b(13);
    b.input("x", DType::Float32, {3, 16});
    b.output("y", DType::Float32);
    b.initializer("sqrt2", scalar_f32(std::sqrt(2.0)));
    b.initializer("inv_sqrt2", scalar_f32(1 / std::sqrt(2.0)));
    b.initializer("one", scalar_f32(1));
    b.initializer("half", scalar_f32(0.5));
    if (form == 0) {  // torch: x * 0.5 * (1 + erf(x / sqrt 2)), exported as Div, Erf, Add, Mul, Mul
      b.node("Div", {"x", "sqrt2"}, {"d"});
      b.node("Erf", {"d"}, {"e"});
      b.node("Add", {"e", "one"}, {"p"});
      b.node("Mul", {"x", "p"}, {"m"});
      b.node("Mul", {"m", "half"}, {"y"});
    } else {  // 0.5 first, Mul by 1 / sqrt 2
      b.node("Mul", {"x", "inv_sqrt2"}, {"d"});
      b.node("Erf", {"d"}, {"e"});
      b.node("Add", {"one", "e"}, {"p"});
      b.node("Mul", {"half", "x"}, {"h"});
      b.node("Mul", {"h", "p"}, {"y"});
    }
    INFO("form " << form);
    check_recognised(b.save(dir + "/g.onnx"), {{"x", random_tensor(DType::Float32, {3, 16}, -3, 3)}}, "Gelu", 1);
  }
}

TEST_CASE("written-out LayerNorm becomes LayerNormalization", "[decomposed]") {
  std::string dir = temp_dir("decomposed_layernorm");
  for (int opset : {9, 13, 18}) {
    for (bool affine : {true, false}) {
      for (bool pow : {true, false}) {
        INFO("opset " << opset << " affine " << affine << " pow " << pow);
        ModelBuilder b(opset);
        b.input("x", DType::Float32, {2, 5, 24});
        b.output("y", DType::Float32);
        auto mean = [&](const std::string& in, const std::string& out) {
          if (opset >= 18) {
            b.initializer("axes_" + out, Tensor::from_ints(DType::Int64, {1}, {-1}));
            b.node("ReduceMean", {in, "axes_" + out}, {out});
          } else {
            b.node("ReduceMean", {in}, {out}, {{"axes", std::vector<int64_t>{opset == 9 ? 2 : -1}}});
          }
        };
        mean("x", "mu");
        b.node("Sub", {"x", "mu"}, {"d"});
        if (pow) {
          b.initializer("two", scalar_f32(2));
          b.node("Pow", {"d", "two"}, {"sq"});
        } else {
          b.node("Mul", {"d", "d"}, {"sq"});
        }
        mean("sq", "var");
        b.initializer("eps", scalar_f32(1e-5));
        b.node("Add", {"var", "eps"}, {"ve"});
        b.node("Sqrt", {"ve"}, {"sd"});
        if (affine) {
          b.node("Div", {"d", "sd"}, {"n"});
          b.initializer("gamma", random_tensor(DType::Float32, {24}, 0.5, 1.5));
          b.initializer("beta", random_tensor(DType::Float32, {24}));
          b.node("Mul", {"n", "gamma"}, {"g"});
          b.node("Add", {"g", "beta"}, {"y"});
        } else {
          b.node("Div", {"d", "sd"}, {"y"});
        }
        std::string path = b.save(dir + "/l.onnx");
        check_recognised(path, {{"x", random_tensor(DType::Float32, {2, 5, 24}, -2, 3)}}, "LayerNormalization", 1);
        CHECK(load_model(path).nodes.size() == 1);  // the scale and bias are the operator's, not Mul and Add after it
      }
    }
  }
}

TEST_CASE("a long chain of Muls is no pattern and costs no deep recursion", "[decomposed]") {
  std::string dir = temp_dir("decomposed_chain");
  const int n = 50000;
  ModelBuilder b(13);
  b.input("v0", DType::Float32, {4});
  b.output("v" + std::to_string(n), DType::Float32);
  b.initializer("one", scalar_f32(1));
  for (int i = 0; i < n; ++i) b.node("Mul", {"v" + std::to_string(i), "one"}, {"v" + std::to_string(i + 1)});
  Graph g = load_model(b.save(dir + "/chain.onnx"));
  CHECK(g.nodes.size() == size_t(n));
}
