// Grouped and depthwise int4 convs through Executor{Backend::Halide}: the fused tetra.QConv must run
// on its direct Halide kernel (runtime/halide_conv.cpp), not the reference fallback, and match the
// reference evaluator on fresh random data. Cases share kernel sizes and formats where they can:
// one JIT compile per (kernel, stride, format, bias, schedule).
#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "runtime/executor.h"
#include "runtime/halide_backend.h"
#include "runtime/model.h"
#include "tests/test_support.h"
#include "tools/model_builder.h"

using namespace tetra;
using namespace tetra::test;

namespace {

struct ConvModel {
  DType x_type = DType::Float32, w_type = DType::Int4;
  Shape x;  // [N, C, H, W]
  int64_t M = 0, group = 1, KH = 3, KW = 3;
  std::vector<int64_t> pads = {1, 1, 1, 1}, strides = {1, 1}, dilations = {1, 1};
  bool per_channel = true, zero_point = false, bias = true, relu = false;
};

// DequantizeLinear(int4 weight) -> Conv (-> Relu): the importer fuses the pair into tetra.QConv.
std::string save_model(const ConvModel& c, const std::string& path) {
  ModelBuilder b(21);
  b.input("x", c.x_type, c.x);
  b.output("y", c.x_type);
  int64_t lo = c.w_type == DType::Int4 ? -8 : 0, hi = c.w_type == DType::Int4 ? 7 : 15;
  b.initializer("w", random_tensor(c.w_type, {c.M, c.x[1] / c.group, c.KH, c.KW}, lo, hi));
  Shape scale_shape = c.per_channel ? Shape{c.M} : Shape{};
  b.initializer("s", random_tensor(c.x_type, scale_shape, 0.01, 0.1));
  std::vector<std::string> dq = {"w", "s"};
  if (c.zero_point) {
    b.initializer("zp", random_tensor(c.w_type, scale_shape, lo, hi));
    dq.push_back("zp");
  }
  b.node("DequantizeLinear", dq, {"wf"}, c.per_channel ? std::vector<Attr>{{"axis", 0}} : std::vector<Attr>{});
  std::vector<std::string> conv_in = {"x", "wf"};
  if (c.bias) {
    b.initializer("bias", random_tensor(c.x_type, {c.M}));
    conv_in.push_back("bias");
  }
  b.node("Conv", conv_in, {c.relu ? "conv" : "y"},
         {{"group", c.group}, {"pads", c.pads}, {"strides", c.strides}, {"dilations", c.dilations}});
  if (c.relu) b.node("Relu", {"conv"}, {"y"});
  return b.save(path);
}

// The QConv node's kernel info on the Halide backend, after checking the outputs against the reference.
KernelInfo run_and_compare(const std::string& path, const Tensor& x, double tol) {
  Graph graph = load_model(path);
  Executor halide(graph, ExecutorOptions{Backend::Halide});
  TensorMap inputs = {{"x", x}};
  Tensor got = halide.run(inputs).at("y");
  Tensor want = run_reference(graph, inputs).at("y");
  double scale = 0;
  for (int64_t i = 0; i < want.size(); ++i) scale = std::max(scale, std::fabs(want.get(i)));
  CHECK(compare_tensors(got, want, tol * (1 + scale), 0) == "");
  for (size_t k = 0; k < graph.nodes.size(); ++k)
    if (graph.nodes[k].op_type == "QConv") return halide.kernels()[k];
  FAIL("the importer did not fuse the conv into tetra.QConv");
  return {};
}

}  // namespace

TEST_CASE("Halide depthwise and grouped QConv match the reference", "[halide][conv]") {
  std::string dir = temp_dir("halide_conv");
  std::vector<ConvModel> cases;
  ConvModel dw;  // MobileNet's depthwise 3x3, with the Relu after it
  dw.x = {1, 16, 15, 13};
  dw.M = dw.group = 16;
  dw.relu = true;
  cases.push_back(dw);
  ConvModel dw2 = dw;  // the same kernel on other sizes: stride 2, asymmetric pads, dilation, batch 2
  dw2.x = {2, 16, 17, 21};
  dw2.M = 32;  // depth multiplier 2
  dw2.strides = {2, 2};
  dw2.pads = {0, 1, 2, 1};
  dw2.dilations = {2, 1};
  dw2.relu = false;
  cases.push_back(dw2);
  ConvModel grouped;  // group 2, uint4 with zero points, per-tensor scale, no bias
  grouped.x = {1, 6, 11, 9};
  grouped.M = 4;
  grouped.group = 2;
  grouped.w_type = DType::UInt4;
  grouped.zero_point = true;
  grouped.per_channel = false;
  grouped.bias = false;
  grouped.KH = grouped.KW = 5;
  grouped.pads = {2, 2, 2, 2};
  cases.push_back(grouped);
  for (size_t i = 0; i < cases.size(); ++i) {
    const ConvModel& c = cases[i];
    INFO("case " << i);
    std::string path = save_model(c, dir + "/c" + std::to_string(i) + ".onnx");
    KernelInfo k = run_and_compare(path, random_tensor(DType::Float32, c.x), 1e-5);
    INFO(k.node << ": " << k.backend << " (" << k.detail << ")");
    CHECK(k.backend == "halide");
    CHECK(k.detail.find(c.group == c.x[1] ? "cpu_int4_depthwise_conv" : "cpu_int4_grouped_conv") != std::string::npos);
  }
}

TEST_CASE("a pointwise QConv runs each plane as one row and matches the reference", "[halide][conv]") {
  std::string dir = temp_dir("halide_conv_pointwise");
  ConvModel pw;  // MobileNet's 1x1 expansion at an odd map size, batch 2, with the Relu after it
  pw.x = {2, 24, 7, 9};
  pw.M = 40;
  pw.KH = pw.KW = 1;
  pw.pads = {0, 0, 0, 0};
  pw.relu = true;
  std::string path = save_model(pw, dir + "/pointwise.onnx");
  Graph graph = load_model(path);
  for (const Node& node : graph.nodes)
    if (node.op_type == "QConv") {
      std::optional<HalideConv> conv = halide_conv_of(node, graph);
      REQUIRE(conv);
      CHECK(conv->workload.H == 1);
      CHECK(conv->workload.W == 63);
      CHECK(conv->workload.OH == 1);
      CHECK(conv->workload.OW == 63);
    }
  KernelInfo k = run_and_compare(path, random_tensor(DType::Float32, pw.x), 1e-5);
  CHECK(k.backend == "halide");
  CHECK(k.detail.find("cpu_int4_dense_conv") != std::string::npos);

  ConvModel padded = pw;  // with padding the planes are not contiguous rows: the workload keeps its shape
  padded.pads = {1, 0, 0, 1};
  Graph padded_graph = load_model(save_model(padded, dir + "/padded.onnx"));
  for (const Node& node : padded_graph.nodes)
    if (node.op_type == "QConv") CHECK(halide_conv_of(node, padded_graph)->workload.OH == 8);
}

TEST_CASE("Halide depthwise QConv runs float16 activations in fp32", "[halide][conv]") {
  std::string dir = temp_dir("halide_conv_fp16");
  ConvModel c;
  c.x_type = DType::Float16;  // float16 input, scales and bias
  c.x = {1, 8, 9, 11};
  c.M = c.group = 8;
  KernelInfo k = run_and_compare(save_model(c, dir + "/h.onnx"), random_tensor(DType::Float16, c.x), 2e-3);
  INFO(k.detail);
  CHECK(k.backend == "halide");
}

TEST_CASE("Halide grouped QConv falls back with a reason where it has no kernel", "[halide][conv]") {
  std::string dir = temp_dir("halide_conv_fallback");
  ModelBuilder b(21);  // a 1-D depthwise conv: the direct kernels are 2-D
  b.input("x", DType::Float32, {1, 4, 9});
  b.output("y", DType::Float32);
  b.initializer("w", random_tensor(DType::Int4, {4, 1, 3}, -8, 7));
  b.initializer("s", random_tensor(DType::Float32, {4}, 0.01, 0.1));
  b.node("DequantizeLinear", {"w", "s"}, {"wf"}, {{"axis", 0}});
  b.node("Conv", {"x", "wf"}, {"y"}, {{"group", 4}});
  KernelInfo k = run_and_compare(b.save(dir + "/c1d.onnx"), random_tensor(DType::Float32, {1, 4, 9}), 1e-6);
  CHECK(k.backend == "reference");
  CHECK(k.detail.find("2-D") != std::string::npos);
}

// Not run by default: `tetra_tests "[.bench]"` prints the best of 300 runs through the Executor of
// the depthwise 3x3 and the group-1 3x3 64->64 (im2col + GEMM) convs on 1x64x56x56, int4 per channel.
TEST_CASE("Halide QConv 1x64x56x56 timings through the Executor", "[.bench]") {
  std::string dir = temp_dir("halide_conv_bench");
  for (int64_t group : {int64_t(64), int64_t(1)}) {
    ConvModel c;
    c.x = {1, 64, 56, 56};
    c.M = 64;
    c.group = group;
    Graph graph = load_model(save_model(c, dir + "/g" + std::to_string(group) + ".onnx"));
    Executor halide(graph, ExecutorOptions{Backend::Halide});
    TensorMap inputs = {{"x", random_tensor(DType::Float32, c.x)}};
    std::vector<double> node_ms;
    double best = 1e9;
    for (int rep = 0; rep < 300; ++rep) {
      halide.run(inputs, &node_ms);
      best = std::min(best, node_ms[0]);
    }
    KernelInfo k = halide.kernels()[0];
    std::printf("group %lld: %.3f ms  %s (%s)\n", static_cast<long long>(group), best, k.backend.c_str(),
                k.detail.c_str());
  }
}

TEST_CASE("conv kernels follow the input shape from call to call", "[halide][conv]") {
  // Dense 3x3, depthwise stride 2 and pointwise convs over a dynamic input: each kernel keeps the last
  // shape's parameters and code, so a shape that changes, and changes back, must be seen.
  ModelBuilder b(13);
  b.input("x", DType::Float32, {-1, 8, -1, -1}).output("y", DType::Float32);
  b.initializer("w1", random_tensor(DType::Float32, {8, 8, 3, 3})).initializer("b1", random_tensor(DType::Float32, {8}));
  b.initializer("w2", random_tensor(DType::Float32, {8, 1, 3, 3}));
  b.initializer("w3", random_tensor(DType::Float32, {16, 8, 1, 1}));
  b.node("Conv", {"x", "w1", "b1"}, {"y1"}, {{"pads", std::vector<int64_t>{1, 1, 1, 1}}});
  b.node("Conv", {"y1", "w2"}, {"y2"},
         {{"group", 8}, {"strides", std::vector<int64_t>{2, 2}}, {"pads", std::vector<int64_t>{1, 1, 1, 1}}});
  b.node("Conv", {"y2", "w3"}, {"y"});
  Graph graph = load_model(b.save(temp_dir("halide_conv_dynamic") + "/m.onnx"));
  Executor halide(graph, ExecutorOptions{Backend::Halide});
  for (const Shape& shape : {Shape{1, 8, 9, 7}, Shape{2, 8, 5, 12}, Shape{1, 8, 9, 7}}) {
    TensorMap in{{"x", random_tensor(DType::Float32, shape)}};
    std::string mismatch = compare_tensors(halide.run(in).at("y"), run_reference(graph, in).at("y"), 1e-4, 1e-4);
    INFO(shape_str(shape) << ": " << mismatch);
    CHECK(mismatch.empty());
  }
  for (const KernelInfo& k : halide.kernels()) CHECK(k.backend == "halide");

  ModelBuilder mm(13);  // the same for a MatMul's rows
  mm.input("a", DType::Float32, {-1, 16}).output("y", DType::Float32);
  mm.initializer("w", random_tensor(DType::Float32, {16, 24}));
  mm.node("MatMul", {"a", "w"}, {"y"});
  Graph matmul = load_model(mm.save(temp_dir("halide_matmul_dynamic") + "/m.onnx"));
  Executor rows(matmul, ExecutorOptions{Backend::Halide});
  for (int64_t m : {5, 1, 5, 9}) {
    TensorMap in{{"a", random_tensor(DType::Float32, {m, 16})}};
    std::string mismatch = compare_tensors(rows.run(in).at("y"), run_reference(matmul, in).at("y"), 1e-4, 1e-4);
    INFO(m << " rows: " << mismatch);
    CHECK(mismatch.empty());
  }
  CHECK(rows.kernels()[0].backend == "halide");
}
