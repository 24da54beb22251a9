// The Halide backend end to end: int4 MatMul/Gemm/Conv nodes run as Halide kernels (not the
// reference fallback) and match the reference evaluator on fresh random data, for row counts that
// pick different schedules (GEMV and GEMM), odd sizes and every weight granularity.
#include <catch2/catch.hpp>

#include "runtime/executor.h"
#include "runtime/model.h"
#include "tests/test_support.h"
#include "tools/model_builder.h"

using namespace tetra;
using namespace tetra::test;

namespace {

// Runs `path` on both backends; every fused int4 node of group 1 must have run on Halide.
void expect_halide_matches_reference(const std::string& path, const TensorMap& inputs, double tol) {
  Graph graph = load_model(path);
  Executor halide(graph, ExecutorOptions{Backend::Halide});
  TensorMap got = halide.run(inputs);
  TensorMap want = run_reference(graph, inputs);
  std::vector<KernelInfo> kernels = halide.kernels();
  for (size_t k = 0; k < graph.nodes.size(); ++k) {
    const Node& n = graph.nodes[k];
    if (n.weight && n.attr_int("group", 1) == 1) {
      INFO(kernels[k].node << ": " << kernels[k].detail);
      CHECK(kernels[k].backend == "halide");
    }
  }
  for (const auto& [name, t] : want) {
    double scale = 0;
    for (int64_t i = 0; i < t.size(); ++i) scale = std::max(scale, std::fabs(t.get(i)));
    INFO("output " << name);
    CHECK(compare_tensors(got.at(name), t, tol * (1 + scale), 0) == "");
  }
}

}  // namespace

TEST_CASE("Halide QMatMul matches the reference for GEMV and GEMM row counts", "[halide][backend]") {
  std::string dir = temp_dir("halide_qmatmul");
  struct Case {
    DType dtype;
    int granularity;  // 0 per-tensor, 1 per-column, 2 blocked along K
    bool zero_point, bias;
    int64_t K, N, block;
  };
  std::vector<Case> cases = {{DType::Int4, 2, false, true, 100, 37, 32},  {DType::UInt4, 2, true, false, 67, 16, 16},
                             {DType::Int4, 1, true, true, 33, 50, 0},     {DType::UInt4, 0, false, false, 64, 9, 0}};
  for (const Case& c : cases) {
    ModelBuilder b(21);
    b.input("a", DType::Float32, {-1, c.K});
    b.output("y", DType::Float32);
    int64_t lo = c.dtype == DType::Int4 ? -8 : 0, hi = c.dtype == DType::Int4 ? 7 : 15;
    b.initializer("w", random_tensor(c.dtype, {c.K, c.N}, lo, hi));
    Shape scale_shape = c.granularity == 0 ? Shape{} : c.granularity == 1 ? Shape{c.N} : Shape{(c.K + c.block - 1) / c.block, c.N};
    b.initializer("s", random_tensor(DType::Float32, scale_shape, 0.01, 0.1));
    std::vector<std::string> dq = {"w", "s"};
    if (c.zero_point) {
      b.initializer("zp", random_tensor(c.dtype, scale_shape, lo, hi));
      dq.push_back("zp");
    }
    std::vector<Attr> attrs;
    if (c.granularity == 1) attrs = {{"axis", 1}};
    if (c.granularity == 2) attrs = {{"axis", 0}, {"block_size", c.block}};
    b.node("DequantizeLinear", dq, {"wf"}, attrs);
    if (c.bias) {
      b.initializer("bias", random_tensor(DType::Float32, {c.N}));
      b.node("Gemm", {"a", "wf", "bias"}, {"y"}, {{"alpha", 0.75f}, {"beta", 1.5f}});
    } else {
      b.node("MatMul", {"a", "wf"}, {"y"});
    }
    std::string path = b.save(dir + "/m.onnx");
    for (int64_t M : {1, 3, 17, 65}) {
      INFO("K=" << c.K << " N=" << c.N << " M=" << M);
      expect_halide_matches_reference(path, {{"a", random_tensor(DType::Float32, {M, c.K})}}, 1e-5);
    }
  }
}

TEST_CASE("Halide QConv (im2col + GEMM) matches the reference", "[halide][backend]") {
  std::string dir = temp_dir("halide_qconv");
  for (int blocked = 0; blocked < 2; ++blocked) {
    int64_t C = blocked ? 32 : 5, M = 12;
    ModelBuilder b(21);
    b.input("x", DType::Float32, {2, C, 9, 11});
    b.output("y", DType::Float32);
    b.initializer("w", random_tensor(DType::Int4, {M, C, 3, 3}, -8, 7));
    b.initializer("s", random_tensor(DType::Float32, blocked ? Shape{M, 2, 3, 3} : Shape{M}, 0.01, 0.1));
    b.initializer("bias", random_tensor(DType::Float32, {M}));
    b.node("DequantizeLinear", {"w", "s"}, {"wf"},
           blocked ? std::vector<Attr>{{"axis", 1}, {"block_size", 16}} : std::vector<Attr>{{"axis", 0}});
    b.node("Conv", {"x", "wf", "bias"}, {"y"},
           {{"pads", std::vector<int64_t>{1, 0, 2, 1}}, {"strides", std::vector<int64_t>{2, 1}},
            {"dilations", std::vector<int64_t>{1, 2}}});
    expect_halide_matches_reference(b.save(dir + "/c.onnx"), {{"x", random_tensor(DType::Float32, {2, C, 9, 11})}}, 1e-5);
  }
}

TEST_CASE("fp16 activations run through the fp32 Halide kernels", "[halide][backend]") {
  std::string dir = temp_dir("halide_fp16");
  ModelBuilder b(21);
  b.input("a", DType::Float16, {3, 40});
  b.output("y", DType::Float16);
  b.initializer("w", random_tensor(DType::Int4, {40, 24}, -8, 7));
  b.initializer("s", random_tensor(DType::Float16, {2, 24}, 0.01, 0.1));
  b.node("DequantizeLinear", {"w", "s"}, {"wf"}, {{"axis", 0}, {"block_size", 32}});
  b.node("MatMul", {"a", "wf"}, {"y"});
  expect_halide_matches_reference(b.save(dir + "/h.onnx"), {{"a", random_tensor(DType::Float16, {3, 40})}}, 2e-3);
}
