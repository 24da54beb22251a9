// Pad (every mode and opset form) and ReduceMax / ReduceMin: the reference and the Halide backend
// against ONNX Runtime, and a zero Pad before a Conv folded into the conv's pads.
#include <catch2/catch.hpp>

#include "runtime/executor.h"
#include "runtime/model.h"
#include "tests/ort_oracle.h"
#include "tests/test_support.h"
#include "tools/model_builder.h"

using namespace tetra;
using namespace tetra::test;

namespace {

Tensor i64(std::vector<int64_t> v) { return Tensor::from_ints(DType::Int64, {int64_t(v.size())}, v); }

// Runs one node (add_single_node: input 0 the graph input, the others initializers) on ORT, on
// tetra's reference and on its Halide backend, and compares them; returns the Halide backend's
// kernel description.
std::string check_vs_ort(const std::string& op, int64_t opset, const std::vector<Attr>& attrs,
                         const std::vector<Tensor>& in, const std::string& what) {
  INFO(op << " opset " << opset << ": " << what);
  ModelBuilder b(opset);
  add_single_node(b, op, attrs, in);
  std::string path = b.save(temp_dir("pad_reduce_ort") + "/model.onnx");
  std::vector<Tensor> theirs = run_ort(path, {in[0]});
  REQUIRE(theirs.size() == 1);
  for (Backend backend : {Backend::Reference, Backend::Halide}) {
    INFO(backend_name(backend));
    std::vector<Tensor> ours = run_tetra(path, {in[0]}, nullptr, backend);
    REQUIRE(ours.size() == 1);
    CHECK(compare_tensors(ours[0], theirs[0], 1e-6, 1e-6) == "");
  }
  Graph g = load_model(path);
  Executor halide(g, ExecutorOptions{Backend::Halide});
  REQUIRE(halide.kernels().size() == 1);
  return halide.kernels()[0].backend + ": " + halide.kernels()[0].detail;
}

}  // namespace

TEST_CASE("Pad matches ONNX Runtime in every mode and opset form", "[pad][ort]") {
  if (!require_ort()) return;
  Tensor x = random_tensor(DType::Float32, {2, 3, 5, 4});
  using V = std::vector<int64_t>;
  // Opset 10: pads and value are attributes.
  std::string detail = check_vs_ort("Pad", 10, {{"pads", V{0, 0, 1, 2, 0, 1, 2, 1}}, {"value", 1.5}}, {x}, "constant 1.5");
  CHECK(detail.rfind("halide: Pad as strided copies", 0) == 0);
  for (const char* mode : {"reflect", "edge"}) {
    detail = check_vs_ort("Pad", 10, {{"mode", mode}, {"pads", V{0, 0, 2, 1, 0, 0, 1, 3}}}, {x}, mode);
    CHECK(detail.rfind("reference", 0) == 0);  // other modes stay on the reference kernel, saying so
  }
  // Opset 13: pads and constant_value are inputs; negative pads crop.
  check_vs_ort("Pad", 13, {}, {x, i64({0, 1, 2, 0, 0, 0, 1, 3}), Tensor::scalar(DType::Float32, 0.25)}, "constant 0.25");
  check_vs_ort("Pad", 13, {}, {x, i64({0, 0, -1, 1, 0, 0, 1, -2})}, "crop and pad with zeros");
  check_vs_ort("Pad", 13, {}, {x, i64({0, 0, 0, -2, 0, 0, 0, -2})}, "crop everything along W");
  for (const char* mode : {"reflect", "edge"})
    check_vs_ort("Pad", 13, {{"mode", mode}}, {x, i64({1, 0, 3, 2, 0, 2, 4, 3})}, std::string(mode) + ", pads past the edge");
  // Opset 18: axes; opset 19: wrap.
  check_vs_ort("Pad", 18, {}, {x, i64({1, 2, 3, 0}), Tensor(), i64({2, 3})}, "axes 2, 3");
  check_vs_ort("Pad", 18, {{"mode", "edge"}}, {x, i64({2, 1}), Tensor(), i64({-1})}, "axes -1");
  check_vs_ort("Pad", 19, {{"mode", "wrap"}}, {x, i64({0, 0, 2, 3, 0, 0, 1, 2})}, "wrap");
  // Other element types move by size.
  Tensor ints = Tensor::from_ints(DType::Int64, {3, 4}, {1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, -12});
  check_vs_ort("Pad", 13, {}, {ints, i64({1, 0, 0, 2}), Tensor::scalar(DType::Int64, 7)}, "int64");
}

TEST_CASE("ReduceMax and ReduceMin match ONNX Runtime", "[reduce][ort]") {
  if (!require_ort()) return;
  Tensor x = random_tensor(DType::Float32, {3, 5, 7, 2}, -3, 3);
  using V = std::vector<int64_t>;
  for (const char* op : {"ReduceMax", "ReduceMin"}) {
    for (int64_t keepdims : {0, 1}) {
      std::string k = " keepdims " + std::to_string(keepdims);
      std::string detail = check_vs_ort(op, 13, {{"axes", V{1}}, {"keepdims", keepdims}}, {x}, "axis 1" + k);
      CHECK(detail.rfind("halide: reduce", 0) == 0);
      check_vs_ort(op, 13, {{"axes", V{0, 2}}, {"keepdims", keepdims}}, {x}, "axes 0, 2" + k);
      check_vs_ort(op, 13, {{"keepdims", keepdims}}, {x}, "every axis" + k);
      check_vs_ort(op, 18, {{"keepdims", keepdims}}, {x, i64({-1, 1})}, "axes input -1, 1" + k);
    }
  }
}

TEST_CASE("a zero Pad of the spatial dims folds into the next Conv's pads", "[pad][fusion]") {
  std::string dir = temp_dir("fold_pad_conv");
  struct Case {
    std::vector<int64_t> pads;  // the Pad's, [begin per dim, end per dim]
    double value;
    bool folds;
  };
  std::vector<Case> cases = {{{0, 0, 1, 0, 0, 0, 2, 1}, 0.0, true},    // SAME padding written as a Pad
                             {{0, 0, 1, 1, 0, 0, 1, 1}, 0.5, false},   // not zeros
                             {{0, 1, 1, 1, 0, 0, 1, 1}, 0.0, false},   // pads channels
                             {{0, 0, -1, 0, 0, 0, 0, 0}, 0.0, false}};  // crops
  for (const Case& c : cases) {
    INFO("pads " << c.pads[2] << "," << c.pads[3] << "," << c.pads[6] << "," << c.pads[7] << " value " << c.value);
    ModelBuilder b(13);
    b.input("x", DType::Float32, {1, 4, 9, 8});
    b.output("y", DType::Float32);
    b.initializer("pads", i64(c.pads));
    b.initializer("value", Tensor::scalar(DType::Float32, c.value));
    int64_t channels = 4 + c.pads[1] + c.pads[5];
    b.initializer("w", random_tensor(DType::Float32, {6, channels, 3, 3}));
    b.node("Pad", {"x", "pads", "value"}, {"p"});
    b.node("Conv", {"p", "w"}, {"y"}, {{"strides", std::vector<int64_t>{2, 2}}, {"pads", std::vector<int64_t>{1, 0, 0, 1}}});
    std::string path = b.save(dir + "/m.onnx");
    Graph fused = load_model(path);
    CHECK((fused.nodes.size() == 1) == c.folds);
    LoadOptions plain_options;
    plain_options.fuse_epilogues = false;
    Graph plain = load_model(path, {}, plain_options);
    TensorMap inputs = {{"x", random_tensor(DType::Float32, {1, 4, 9, 8})}};
    TensorMap want = run_reference(plain, inputs);
    for (Backend backend : {Backend::Reference, Backend::Halide}) {
      INFO(backend_name(backend));
      TensorMap got = Executor(fused, ExecutorOptions{backend}).run(inputs);
      CHECK(compare_tensors(got.at("y"), want.at("y"), 1e-5, 1e-5) == "");
    }
  }
}
