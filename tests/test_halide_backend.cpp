// The Halide backend end to end: int4 MatMul/Gemm/Conv nodes run as Halide kernels (not the
// reference fallback) and match the reference evaluator on fresh random data, for row counts that
// pick different schedules (GEMV and GEMM), odd sizes and every weight granularity.
#include <catch2/catch.hpp>

#include "dsl/target.h"
#include "runtime/executor.h"
#include "runtime/jit_kernel_source.h"
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

TEST_CASE("float-weight MatMul, Gemm and Conv run on the Halide kernels", "[halide][backend][float]") {
  // Constant float32/float16 weights become tetra.QMatMul / tetra.QConv with an unquantized weight: the
  // same kernels, with BatchNormalization folded into the weight and the activation fused.
  std::string dir = temp_dir("halide_float");
  for (DType wt : {DType::Float32, DType::Float16}) {
    DType at = wt;  // fp16 models have fp16 activations
    double tol = wt == DType::Float32 ? 1e-5 : 3e-3;
    ModelBuilder b(13);
    b.input("x", at, {1, 6, 13, 11});
    b.output("y", at);
    b.output("z", at);
    b.initializer("w1", random_tensor(wt, {16, 6, 3, 3}));
    b.initializer("b1", random_tensor(wt, {16}));
    b.node("Conv", {"x", "w1", "b1"}, {"c1"}, {{"pads", std::vector<int64_t>{1, 1, 1, 1}}, {"strides", std::vector<int64_t>{2, 1}}});
    b.initializer("gamma", random_tensor(wt, {16}, 0.5, 1.5));
    b.initializer("beta", random_tensor(wt, {16}));
    b.initializer("mean", random_tensor(wt, {16}));
    b.initializer("var", random_tensor(wt, {16}, 0.5, 2.0));
    b.node("BatchNormalization", {"c1", "gamma", "beta", "mean", "var"}, {"bn"});
    b.node("Relu", {"bn"}, {"r1"});
    b.initializer("wd", random_tensor(wt, {16, 1, 3, 3}));
    b.node("Conv", {"r1", "wd"}, {"d1"}, {{"group", 16}, {"pads", std::vector<int64_t>{1, 1, 1, 1}}});
    b.initializer("w2", random_tensor(wt, {8, 16, 1, 1}));
    b.node("Conv", {"d1", "w2"}, {"y"});
    b.node("Flatten", {"y"}, {"flat"});
    b.initializer("g", random_tensor(wt, {8 * 7 * 11, 10}));
    b.initializer("gb", random_tensor(wt, {10}));
    b.node("Gemm", {"flat", "g", "gb"}, {"h"});
    b.initializer("m", random_tensor(wt, {10, 12}));
    b.node("MatMul", {"h", "m"}, {"z"});
    INFO(dtype_name(wt));
    std::string path = b.save(dir + "/f.onnx");
    Graph graph = load_model(path);
    int fused = 0;
    for (const Node& n : graph.nodes)
      if (n.weight) {
        CHECK(n.weight->is_float());
        ++fused;
      }
    CHECK(fused == 5);
    CHECK(graph.quantized_nodes().empty());  // reported as int4 weights: none
    Executor halide(graph, ExecutorOptions{Backend::Halide});
    bool relu_in_kernel = false;
    for (const KernelInfo& k : halide.kernels())
      if (k.node.rfind("tetra.", 0) == 0) {
        INFO(k.node << ": " << k.detail);
        CHECK(k.backend == "halide");
        relu_in_kernel |= k.detail.find("in the kernel: Relu") != std::string::npos;
      }
    CHECK(relu_in_kernel);  // Conv -> BatchNormalization -> Relu is one kernel
    expect_halide_matches_reference(path, {{"x", random_tensor(at, {1, 6, 13, 11})}}, tol);
  }
}

// The JIT source, counting the weights node kernels ask it to prepare.
class WeightCountingSource : public JitKernelSource {
 public:
  WeightCountingSource() : JitKernelSource(nullptr, "") {}
  dsl::Result<std::shared_ptr<const dsl::PackedInt4Buffers>> prepare_qmatmul_weight(const QuantizedWeight& weight, bool trans_b,
                                                                                   const KernelCode& code) override {
    ++qmatmul_weights;
    return JitKernelSource::prepare_qmatmul_weight(weight, trans_b, code);
  }
  dsl::Result<std::shared_ptr<const dsl::ConvInt4Buffers>> prepare_conv_weight(const QuantizedWeight& weight) override {
    ++conv_weights;
    return JitKernelSource::prepare_conv_weight(weight);
  }
  int qmatmul_weights = 0, conv_weights = 0;
};

TEST_CASE("node kernels get their weights from the kernel source, prepared where its code runs", "[halide][backend]") {
  std::string dir = temp_dir("halide_weight_source");
  ModelBuilder b(13);
  b.input("x", DType::Float32, {1, 6, 9, 9});
  b.output("z", DType::Float32);
  b.initializer("w1", random_tensor(DType::Float32, {8, 6, 3, 3}));
  b.node("Conv", {"x", "w1"}, {"c1"}, {{"pads", std::vector<int64_t>{1, 1, 1, 1}}});
  b.node("Flatten", {"c1"}, {"flat"});
  b.initializer("m", random_tensor(DType::Float32, {8 * 9 * 9, 10}));
  b.node("MatMul", {"flat", "m"}, {"z"});
  Graph graph = load_model(b.save(dir + "/m.onnx"));
  auto source = std::make_shared<WeightCountingSource>();
  Executor halide(graph, source);
  TensorMap in = {{"x", random_tensor(DType::Float32, {1, 6, 9, 9})}};
  TensorMap got = halide.run(in);
  CHECK(source->conv_weights == 1);
  CHECK(source->qmatmul_weights == 1);
  CHECK(compare_tensors(got.at("z"), run_reference(graph, in).at("z"), 1e-4, 1e-4) == "");
  halide.run(in);  // prepared once, not per run
  CHECK(source->conv_weights == 1);
  CHECK(source->qmatmul_weights == 1);
}

TEST_CASE("activation x activation MatMul runs on the batched Halide kernel", "[halide][backend][matmul]") {
  // Both operands are inputs: batched, broadcast both ways, 1-D operands, odd sizes, float16.
  std::string dir = temp_dir("halide_batch_matmul");
  struct Case {
    Shape a, b;
    DType dtype;
  };
  std::vector<Case> cases = {{{1, 4, 33, 24}, {1, 4, 24, 33}, DType::Float32},  // attention, Q·Kᵀ
                             {{2, 3, 5, 7}, {2, 3, 7, 41}, DType::Float32},
                             {{3, 1, 5, 7}, {4, 7, 6}, DType::Float32},  // both sides broadcast
                             {{2, 5, 7}, {7, 3}, DType::Float32},
                             {{7}, {2, 7, 3}, DType::Float32},  // 1-D operands drop their dimension
                             {{2, 5, 7}, {7}, DType::Float32},
                             {{19, 37}, {37, 53}, DType::Float32},
                             {{1, 2, 8, 40}, {1, 2, 40, 70}, DType::Float32},  // the fewest rows of the tall tiles
                             {{2, 9, 16}, {2, 16, 9}, DType::Float16}};
  for (const Case& c : cases) {
    INFO(shape_str(c.a) << " x " << shape_str(c.b) << " " << dtype_name(c.dtype));
    ModelBuilder b(13);
    b.input("a", c.dtype, c.a);
    b.input("b", c.dtype, c.b);
    b.output("y", c.dtype);
    b.node("MatMul", {"a", "b"}, {"y"});
    std::string path = b.save(dir + "/m.onnx");
    Graph graph = load_model(path);
    Executor halide(graph, ExecutorOptions{Backend::Halide});
    REQUIRE(halide.kernels().size() == 1);
    INFO(halide.kernels()[0].detail);
    CHECK(halide.kernels()[0].backend == "halide");
    TensorMap inputs = {{"a", random_tensor(c.dtype, c.a)}, {"b", random_tensor(c.dtype, c.b)}};
    TensorMap got = halide.run(inputs);
    TensorMap want = run_reference(graph, inputs);
    double tol = c.dtype == DType::Float32 ? 1e-5 : 2e-3;
    CHECK(compare_tensors(got.at("y"), want.at("y"), tol * c.a.back(), tol) == "");
  }
}

TEST_CASE("ConvTranspose with a constant weight runs directly (kernel = stride) or as GEMM + col2im", "[halide][backend][conv_transpose]") {
  std::string dir = temp_dir("halide_conv_transpose");
  struct Case {
    Shape x, w;
    std::vector<Attr> attrs;
    bool bias;
    DType dtype;
    bool direct;  // one tap per output: the direct kernel
  };
  using V = std::vector<int64_t>;
  std::vector<Case> cases = {
      {{1, 8, 7, 9}, {8, 5, 2, 2}, {{"strides", V{2, 2}}}, true, DType::Float32, true},  // the usual x2 upsampling
      {{2, 5, 33, 20}, {5, 7, 2, 2}, {{"strides", V{2, 2}}}, false, DType::Float32, true},
      {{1, 16, 9, 37}, {16, 3, 3, 2}, {{"strides", V{3, 2}}, {"pads", V{0, 0, 0, 0}}}, true, DType::Float32, true},
      {{2, 3, 40}, {3, 6, 4}, {{"strides", V{4}}}, true, DType::Float32, true},  // 1-D
      {{2, 6, 5, 4}, {6, 3, 3, 3}, {{"strides", V{2, 2}}, {"pads", V{1, 1, 1, 1}}, {"output_padding", V{1, 1}}}, false,
       DType::Float32, false},
      {{1, 4, 6, 5}, {4, 7, 3, 2}, {{"strides", V{1, 3}}, {"dilations", V{2, 1}}, {"pads", V{0, 2, 1, 0}}}, true,
       DType::Float32, false},
      {{1, 5, 11}, {5, 3, 4}, {{"strides", V{3}}, {"auto_pad", "SAME_UPPER"}}, true, DType::Float32, false},  // 1-D
      {{1, 8, 6, 6}, {8, 4, 2, 2}, {{"strides", V{2, 2}}}, true, DType::Float16, true},
      {{1, 8, 6, 6}, {8, 4, 2, 2}, {{"strides", V{2, 1}}}, true, DType::Float32, false},  // overlapping taps
  };
  for (const Case& c : cases) {
    INFO(shape_str(c.x) << " weight " << shape_str(c.w) << " " << dtype_name(c.dtype));
    ModelBuilder b(13);
    b.input("x", c.dtype, c.x);
    b.output("y", c.dtype);
    b.initializer("w", random_tensor(c.dtype, c.w));
    std::vector<std::string> in = {"x", "w"};
    if (c.bias) {
      b.initializer("b", random_tensor(c.dtype, {c.w[1]}));
      in.push_back("b");
    }
    b.node("ConvTranspose", in, {"y"}, c.attrs);
    std::string path = b.save(dir + "/t.onnx");
    Graph graph = load_model(path);
    TensorMap inputs = {{"x", random_tensor(c.dtype, c.x)}};
    TensorMap want = run_reference(graph, inputs);
    for (const std::string& target : cpu_targets_here()) {
      ExecutorOptions options{Backend::Halide};
      options.target = target;
      Executor halide(graph, options);
      REQUIRE(halide.kernels().size() == 1);
      INFO("target '" << target << "': " << halide.kernels()[0].detail);
      CHECK(halide.kernels()[0].backend == "halide");
      CHECK((halide.kernels()[0].detail.rfind("direct", 0) == 0) == c.direct);
      TensorMap got = halide.run(inputs);
      double tol = c.dtype == DType::Float32 ? 1e-5 : 3e-3;
      CHECK(compare_tensors(got.at("y"), want.at("y"), tol * c.x[1], tol) == "");
      // The GEMM path permutes its input to [position, channel] rows: one layout conversion a run.
      CHECK(halide.kernels()[0].layout_conversions == (c.direct ? 0 : 1));
    }
  }
}

TEST_CASE("a conv with one output position per image runs as a GEMV, not on the direct conv tiles",
          "[halide][backend][conv]") {
  // Squeeze-excite's 1x1 convs after a global pool, and a conv whose kernel covers its input.
  std::string dir = temp_dir("halide_conv_gemv");
  struct Case {
    Shape x, w;
    bool gemv;
  };
  std::vector<std::pair<Case, int64_t>> cases = {{{{1, 72, 1, 1}, {24, 72, 1, 1}, true}, 0},
                                                 {{{2, 16, 3, 3}, {40, 16, 3, 3}, true}, 0},
                                                 {{{1, 16, 2, 2}, {8, 16, 1, 1}, false}, 0},
                                                 {{{1, 64, 1, 1}, {16, 64, 1, 1}, true}, 32},
                                                 // blocks of 32 across C = 72 cannot be GEMM rows: direct
                                                 {{{1, 72, 1, 1}, {24, 72, 1, 1}, false}, 32}};
  for (const auto& [c, block] : cases) {
    INFO(shape_str(c.x) << " weight " << shape_str(c.w) << " int4 block " << block);
    ModelBuilder b(21);
    b.input("x", DType::Float32, c.x);
    b.output("y", DType::Float32);
    if (block == 0) {
      b.initializer("w", random_tensor(DType::Float32, c.w));
    } else {
      b.initializer("q", random_tensor(DType::Int4, c.w, -8, 7));
      Shape scale_shape = c.w;
      scale_shape[1] = (c.w[1] + block - 1) / block;
      b.initializer("s", random_tensor(DType::Float32, scale_shape, 0.02, 0.1));
      b.node("DequantizeLinear", {"q", "s"}, {"w"}, {{"axis", 1}, {"block_size", block}});
    }
    b.initializer("b", random_tensor(DType::Float32, {c.w[0]}));
    b.node("Conv", {"x", "w", "b"}, {"c"});
    b.node("Relu", {"c"}, {"y"});
    std::string path = b.save(dir + "/m.onnx");
    Graph graph = load_model(path);
    Executor halide(graph, ExecutorOptions{Backend::Halide});
    REQUIRE(halide.kernels().size() == 1);
    INFO(halide.kernels()[0].detail);
    CHECK(halide.kernels()[0].backend == "halide");
    CHECK((halide.kernels()[0].detail.find("im2col") != std::string::npos) == c.gemv);
    if (block) CHECK(graph.quantized_nodes().size() == 1);  // the int4 Conv is fused
    TensorMap inputs = {{"x", random_tensor(DType::Float32, c.x)}};
    TensorMap got = halide.run(inputs);
    TensorMap want = run_reference(graph, inputs);
    CHECK(compare_tensors(got.at("y"), want.at("y"), 1e-5 * c.w[1], 1e-5) == "");
    // im2col's channels-last copy permutes a 3x3 input; a 1x1 one is the same bytes in either layout,
    // and one output position needs no way back.
    if (c.gemv) CHECK(halide.kernels()[0].layout_conversions == (c.x[2] * c.x[3] > 1 ? 1 : 0));
  }
}

TEST_CASE("int8 activations fall back to float32 where the weight cannot take them, float16 scales kept",
          "[halide][backend][int8]") {
  // k-blocks of 4 are too short for the int8 kernels (they read 8 k at a time), so the MatMul stays
  // float32 with its float16 scales; k-blocks of 32 take int8 activations on a VNNI CPU (float16 scales
  // widened) and stay float32 elsewhere.
  std::string dir = temp_dir("halide_int8_fallback");
  for (int64_t block : {4, 32}) {
    const int64_t K = 64, N = 24, M = 3;
    ModelBuilder b(21);
    b.input("a", DType::Float32, {M, K});
    b.output("y", DType::Float32);
    b.initializer("w", random_tensor(DType::Int4, {K, N}, -8, 7));
    b.initializer("s", random_tensor(DType::Float16, {K / block, N}, 0.01, 0.1));
    b.node("DequantizeLinear", {"w", "s"}, {"wf"}, {{"axis", 0}, {"block_size", block}});
    b.node("MatMul", {"a", "wf"}, {"y"});
    Graph graph = load_model(b.save(dir + "/m" + std::to_string(block) + ".onnx"));
    REQUIRE(mark_int8_activations(graph) == 1);
    TensorMap inputs = {{"a", random_tensor(DType::Float32, {M, K})}};
    Executor halide(graph, ExecutorOptions{Backend::Halide});
    Tensor got = halide.run(inputs).at("y");
    Tensor want = run_reference(graph, inputs).at("y");
    const KernelInfo& kernel = halide.kernels().at(0);
    INFO("k-block " << block << ": " << kernel.detail);
    CHECK(kernel.backend == "halide");
    double scale = 0;
    for (int64_t i = 0; i < want.size(); ++i) scale = std::max(scale, std::fabs(want.get(i)));
    bool int8 = block == 32 && dsl::host_target().has_int8_dot();
    CHECK((kernel.detail.find("float32 activations") == std::string::npos) == int8);
    // Float32 activations reproduce the reference's float16-rounded weights; int8 ones differ by what
    // 8-bit activations allow.
    CHECK(compare_tensors(got, want, (int8 ? 2e-2 : 1e-5) * (1 + scale), 0) == "");
  }
}
