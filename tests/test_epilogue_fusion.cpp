// Epilogue fusion: BatchNormalization folded into int4 conv scales, constant Adds into biases,
// residual Adds and activations into epilogue steps; each checked by running fused and unfused
// graphs on both backends.
#include <catch2/catch.hpp>

#include "runtime/executor.h"
#include "runtime/model.h"
#include "tests/test_support.h"
#include "tools/model_builder.h"

using namespace tetra;
using namespace tetra::test;

namespace {

LoadOptions without_epilogues() {
  LoadOptions o;
  o.fuse_epilogues = false;
  return o;
}

const Node& only_fused_node(const Graph& g) {
  REQUIRE(g.quantized_nodes().size() == 1);
  return *g.quantized_nodes()[0];
}

void expect_same_results(const std::string& path, const TensorMap& inputs) {
  Graph fused = load_model(path);
  Graph plain = load_model(path, {}, without_epilogues());
  TensorMap want = run_reference(plain, inputs);
  auto check = [&](ExecutorOptions options) {
    TensorMap got = Executor(fused, options).run(inputs);
    for (const auto& [name, t] : want) {
      INFO(backend_name(options.backend) << " on '" << options.target << "', output " << name);
      CHECK(compare_tensors(got.at(name), t, 1e-5, 1e-5) == "");
    }
  };
  check(ExecutorOptions{Backend::Reference});
  for (const std::string& target : cpu_targets_here()) {
    ExecutorOptions halide{Backend::Halide};
    halide.target = target;
    check(halide);
  }
}

void add_int4_conv_weight(ModelBuilder& b, int64_t M, int64_t C, bool per_tensor) {
  b.initializer("w", random_tensor(DType::Int4, {M, C, 3, 3}, -8, 7));
  b.initializer("s", random_tensor(DType::Float32, per_tensor ? Shape{} : Shape{M}, 0.02, 0.1));
  b.node("DequantizeLinear", {"w", "s"}, {"wf"}, per_tensor ? std::vector<Attr>{} : std::vector<Attr>{{"axis", 0}});
}

}  // namespace

TEST_CASE("Conv -> BatchNormalization -> Add(residual) -> Relu fuses into one int4 conv", "[fusion]") {
  for (bool per_tensor : {true, false}) {
    std::string dir = temp_dir("fuse_conv_bn");
    ModelBuilder b(21);
    b.input("x", DType::Float32, {1, 8, 10, 10});
    b.output("y", DType::Float32);
    add_int4_conv_weight(b, 8, 8, per_tensor);
    b.initializer("g", random_tensor(DType::Float32, {8}, 0.5, 1.5));
    b.initializer("beta", random_tensor(DType::Float32, {8}));
    b.initializer("mean", random_tensor(DType::Float32, {8}));
    b.initializer("var", random_tensor(DType::Float32, {8}, 0.5, 2));
    b.node("Conv", {"x", "wf"}, {"c"}, {{"pads", std::vector<int64_t>{1, 1, 1, 1}}});
    b.node("BatchNormalization", {"c", "g", "beta", "mean", "var"}, {"n"});
    b.node("Add", {"n", "x"}, {"r"});
    b.node("Relu", {"r"}, {"y"});
    std::string path = b.save(dir + "/m.onnx");
    Graph g = load_model(path);
    CHECK(g.nodes.size() == 1);
    const Node& conv = only_fused_node(g);
    CHECK(conv.has_input(1));  // the folded bias
    REQUIRE(conv.epilogue.size() == 2);
    CHECK(conv.epilogue[0].op_type == "Add");
    CHECK(conv.epilogue[1].op_type == "Relu");
    CHECK(conv.weight->data.dtype() == DType::Int4);  // folding touched only the scales
    expect_same_results(path, {{"x", random_tensor(DType::Float32, {1, 8, 10, 10})}});
  }
}

TEST_CASE("MatMul -> Add(constant) -> Clip fuses bias and activation with a dynamic batch", "[fusion]") {
  std::string dir = temp_dir("fuse_matmul");
  ModelBuilder b(21);
  b.input("a", DType::Float32, {-1, 40});
  b.output("y", DType::Float32);
  b.initializer("w", random_tensor(DType::Int4, {40, 24}, -8, 7));
  b.initializer("s", random_tensor(DType::Float32, {2, 24}, 0.02, 0.1));
  b.initializer("bias", random_tensor(DType::Float32, {1, 24}));
  b.initializer("lo", Tensor::scalar(DType::Float32, -0.2));
  b.initializer("hi", Tensor::scalar(DType::Float32, 0.3));
  b.node("DequantizeLinear", {"w", "s"}, {"wf"}, {{"axis", 0}, {"block_size", 32}});
  b.node("MatMul", {"a", "wf"}, {"m"});
  b.node("Add", {"bias", "m"}, {"mb"});
  b.node("Clip", {"mb", "lo", "hi"}, {"y"});
  std::string path = b.save(dir + "/m.onnx");
  Graph g = load_model(path);
  const Node& mm = only_fused_node(g);
  CHECK(g.nodes.size() == 1);
  CHECK(mm.has_input(1));
  REQUIRE(mm.epilogue.size() == 1);
  CHECK(mm.epilogue[0].op_type == "Clip");
  for (int64_t rows : {1, 5}) expect_same_results(path, {{"a", random_tensor(DType::Float32, {rows, 40})}});
}

TEST_CASE("epilogue fusion leaves alone what it cannot fuse", "[fusion]") {
  std::string dir = temp_dir("fuse_not");
  ModelBuilder b(21);
  b.input("x", DType::Float32, {1, 4, 6, 6});
  b.output("y", DType::Float32);
  b.output("c", DType::Float32);  // the conv result is itself an output: nothing may be fused after it
  add_int4_conv_weight(b, 4, 4, false);
  b.node("Conv", {"x", "wf"}, {"c"}, {{"pads", std::vector<int64_t>{1, 1, 1, 1}}});
  b.node("Relu", {"c"}, {"y"});
  std::string path = b.save(dir + "/m.onnx");
  Graph g = load_model(path);
  CHECK(only_fused_node(g).epilogue.empty());
  CHECK(g.nodes.size() == 2);

  // A residual computed after the conv cannot run in its epilogue.
  ModelBuilder late(21);
  late.input("x", DType::Float32, {1, 4, 6, 6});
  late.output("y", DType::Float32);
  add_int4_conv_weight(late, 4, 4, false);
  late.node("Conv", {"x", "wf"}, {"c"}, {{"pads", std::vector<int64_t>{1, 1, 1, 1}}});
  late.node("Sigmoid", {"x"}, {"later"});
  late.node("Add", {"c", "later"}, {"y"});
  std::string late_path = late.save(dir + "/late.onnx");
  Graph lg = load_model(late_path);
  const Node& conv = only_fused_node(lg);
  bool conv_first = &lg.nodes[0] == &conv;
  CHECK((conv.epilogue.empty() || !conv_first));
  expect_same_results(late_path, {{"x", random_tensor(DType::Float32, {1, 4, 6, 6})}});
}

TEST_CASE("attention's scalar scale moves from the scores onto the smaller MatMul operand", "[fusion]") {
  std::string dir = temp_dir("hoist_scale");
  struct Case {
    std::string op;      // Mul or Div
    bool scale_first;    // Mul(c, scores)
    Shape q, kt;         // the operands
    size_t scaled;       // which operand is scaled after the rewrite
  };
  std::vector<Case> cases = {{"Mul", false, {1, 2, 40, 8}, {1, 2, 8, 40}, 0},
                             {"Mul", true, {1, 2, 40, 8}, {1, 2, 8, 40}, 0},
                             {"Div", false, {2, 40, 16}, {2, 16, 6}, 1}};  // Kᵀ is the smaller one
  for (const Case& c : cases) {
    INFO(c.op << " " << shape_str(c.q) << " x " << shape_str(c.kt));
    ModelBuilder b(13);
    b.input("q", DType::Float32, c.q);
    b.input("kt", DType::Float32, c.kt);
    b.output("y", DType::Float32);
    b.initializer("c", Tensor::scalar(DType::Float32, 0.37));
    b.node("MatMul", {"q", "kt"}, {"scores"});
    b.node(c.op, c.scale_first ? std::vector<std::string>{"c", "scores"} : std::vector<std::string>{"scores", "c"}, {"scaled"});
    b.node("Softmax", {"scaled"}, {"y"}, {{"axis", -1}});
    std::string path = b.save(dir + "/m.onnx");
    Graph g = load_model(path);
    REQUIRE(g.nodes.size() == 3);
    CHECK(g.nodes[0].op_type == c.op);
    const Node& mm = g.nodes[1];
    REQUIRE(mm.op_type == "MatMul");
    CHECK(mm.inputs[c.scaled] == g.nodes[0].outputs[0]);
    CHECK(mm.outputs[0] == "scaled");
    expect_same_results(path, {{"q", random_tensor(DType::Float32, c.q)}, {"kt", random_tensor(DType::Float32, c.kt)}});
  }

  // Left alone: a scale that is not a scalar constant, and scores read by another node too.
  ModelBuilder b(13);
  b.input("q", DType::Float32, {3, 5});
  b.input("k", DType::Float32, {5, 3});
  b.output("y", DType::Float32);
  b.output("z", DType::Float32);
  b.output("r", DType::Float32);
  b.initializer("c", random_tensor(DType::Float32, {3}));
  b.node("MatMul", {"q", "k"}, {"s1"});
  b.node("Mul", {"s1", "c"}, {"y"});
  b.node("MatMul", {"q", "k"}, {"s2"});
  b.node("Div", {"s2", "c"}, {"z"});
  b.node("Relu", {"s2"}, {"r"});
  Graph g = load_model(b.save(dir + "/not.onnx"));
  CHECK(g.nodes.size() == 5);
  CHECK(g.nodes[0].op_type == "MatMul");
  CHECK(g.nodes[2].op_type == "MatMul");
}

TEST_CASE("BatchNormalization after a ConvTranspose folds into its weight and bias, the activation into its epilogue",
          "[fusion]") {
  std::string dir = temp_dir("fold_conv_transpose_bn");
  for (bool bias : {true, false}) {
    for (int64_t stride : {2, 1}) {  // the direct kernel (kernel = stride) and GEMM + col2im
      INFO("bias " << bias << " stride " << stride);
      ModelBuilder b(11);
      b.input("x", DType::Float32, {1, 6, 9, 11});
      b.output("y", DType::Float32);
      b.initializer("w", random_tensor(DType::Float32, {6, 5, 2, 2}));
      b.initializer("g", random_tensor(DType::Float32, {5}, 0.5, 1.5));
      b.initializer("beta", random_tensor(DType::Float32, {5}));
      b.initializer("mean", random_tensor(DType::Float32, {5}));
      b.initializer("var", random_tensor(DType::Float32, {5}, 0.5, 2));
      std::vector<std::string> in = {"x", "w"};
      if (bias) {
        b.initializer("b", random_tensor(DType::Float32, {5}));
        in.push_back("b");
      }
      b.node("ConvTranspose", in, {"t"}, {{"strides", std::vector<int64_t>{stride, stride}}});
      b.node("BatchNormalization", {"t", "g", "beta", "mean", "var"}, {"n"});
      b.node("Relu", {"n"}, {"y"});
      std::string path = b.save(dir + "/m.onnx");
      Graph g = load_model(path);
      REQUIRE(g.nodes.size() == 1);
      CHECK(g.nodes[0].op_type == "ConvTranspose");
      REQUIRE(g.nodes[0].epilogue.size() == 1);
      CHECK(g.nodes[0].epilogue[0].op_type == "Relu");
      expect_same_results(path, {{"x", random_tensor(DType::Float32, {1, 6, 9, 11})}});
    }
  }
}

TEST_CASE("an activation after a ConvTranspose runs in the direct kernel's output stage", "[fusion]") {
  std::string dir = temp_dir("conv_transpose_activation");
  struct Case {
    std::string op;
    std::vector<Attr> attrs;
    int64_t stride;  // 2: the direct kernel (kernel = stride); 1: GEMM + col2im, the activation after it
  };
  for (const Case& c : {Case{"LeakyRelu", {{"alpha", 0.2}}, 2}, Case{"HardSwish", {}, 2}, Case{"Sigmoid", {}, 1}}) {
    INFO(c.op << " stride " << c.stride);
    ModelBuilder b(14);
    b.input("x", DType::Float32, {1, 6, 9, 11});
    b.output("y", DType::Float32);
    b.initializer("w", random_tensor(DType::Float32, {6, 5, 2, 2}));
    b.initializer("b", random_tensor(DType::Float32, {5}));
    b.node("ConvTranspose", {"x", "w", "b"}, {"t"}, {{"strides", std::vector<int64_t>{c.stride, c.stride}}});
    b.node(c.op, {"t"}, {"y"}, c.attrs);
    std::string path = b.save(dir + "/" + c.op + ".onnx");
    Graph g = load_model(path);
    REQUIRE(g.nodes.size() == 1);
    expect_same_results(path, {{"x", random_tensor(DType::Float32, {1, 6, 9, 11})}});
    Executor halide(g, ExecutorOptions{Backend::Halide});
    const std::string detail = halide.kernels().at(0).detail;
    CHECK_THAT(detail, Catch::Contains(c.stride == 2 ? "in the kernel: " + c.op : "after it: " + c.op));
  }
}

TEST_CASE("MatMul -> Softmax -> MatMul becomes one attention kernel with no scores in memory", "[fusion][attention]") {
  std::string dir = temp_dir("fuse_attention");
  struct Case {
    Shape q, kt, v;
    int opset;
    int64_t axis;  // the Softmax's
    bool fuses;
  };
  std::vector<Case> cases = {
      {{1, 2, 40, 8}, {1, 2, 8, 37}, {1, 2, 37, 12}, 13, -1, true},  // odd tokens and head sizes
      {{3, 17, 16}, {3, 16, 70}, {3, 70, 33}, 11, 2, true},          // opset 11: rows of the last axis
      {{1, 9, 32}, {1, 32, 9}, {1, 9, 32}, 13, 2, true},             // fewer rows than a task
      {{2, 40, 8}, {2, 8, 37}, {2, 37, 12}, 13, 1, false},           // softmax over the queries
      {{2, 40, 8}, {1, 8, 37}, {2, 37, 12}, 13, -1, false},          // broadcast batch: MatMul kernels
  };
  for (const Case& c : cases) {
    INFO(shape_str(c.q) << " x " << shape_str(c.kt) << " x " << shape_str(c.v) << " opset " << c.opset << " axis " << c.axis);
    ModelBuilder b(c.opset);
    b.input("q", DType::Float32, c.q);
    b.input("kt", DType::Float32, c.kt);
    b.input("v", DType::Float32, c.v);
    b.output("y", DType::Float32);
    b.initializer("scale", Tensor::scalar(DType::Float32, 0.35));
    b.node("MatMul", {"q", "kt"}, {"s"});
    b.node("Mul", {"s", "scale"}, {"scaled"});
    b.node("Softmax", {"scaled"}, {"p"}, {{"axis", c.axis}});
    b.node("MatMul", {"p", "v"}, {"y"});
    std::string path = b.save(dir + "/m.onnx");
    Graph g = load_model(path);
    int attention = 0;
    for (const Node& n : g.nodes) attention += n.domain == "tetra" && n.op_type == "Attention";
    CHECK(attention == (c.fuses ? 1 : 0));
    if (c.fuses) {
      Executor halide(g, ExecutorOptions{Backend::Halide});
      bool compiled = false;
      for (const KernelInfo& k : halide.kernels()) compiled |= k.detail.rfind("attention", 0) == 0;
      CHECK(compiled);
    }
    // Scores of a few units, so that the softmax is neither flat nor one-hot.
    expect_same_results(path, {{"q", random_tensor(DType::Float32, c.q, -2, 2)},
                               {"kt", random_tensor(DType::Float32, c.kt, -2, 2)},
                               {"v", random_tensor(DType::Float32, c.v)}});
  }

  // The probabilities are also an output: the pattern stays as it is.
  ModelBuilder b(13);
  b.input("q", DType::Float32, {2, 5, 4});
  b.input("kt", DType::Float32, {2, 4, 6});
  b.input("v", DType::Float32, {2, 6, 3});
  b.output("y", DType::Float32);
  b.output("p", DType::Float32);
  b.node("MatMul", {"q", "kt"}, {"s"});
  b.node("Softmax", {"s"}, {"p"}, {{"axis", -1}});
  b.node("MatMul", {"p", "v"}, {"y"});
  Graph g = load_model(b.save(dir + "/kept.onnx"));
  CHECK(g.nodes.size() == 3);
}

TEST_CASE("Attention reads Q, K and V in place from a packed QKV projection and writes its result transposed",
          "[fusion][attention]") {
  // The exporters' form: x [B, T, 3*H*D] -> Reshape [B, T, 3, H, D] -> Transpose -> Gather(0|1|2) per
  // operand, the scores scaled, and the result Transpose(0, 2, 1, 3) -> Reshape [B, T, H*D].
  std::string dir = temp_dir("attention_layouts");
  struct Case {
    int64_t batch, tokens, heads, head_size;
    bool k_by_second_transpose;  // Kᵀ from its own 5-D Transpose instead of a Transpose after the Gather
    bool divide;                 // the scores divided by sqrt(D) instead of multiplied by a constant
    bool q_also_output;          // Q is a graph output too: its copies stay
  };
  std::vector<Case> cases = {
      {1, 40, 4, 16, false, false, false},  // the recognizer's form (one batch: the batch dims merge)
      {2, 37, 3, 12, true, true, false},    // two batches: the kernel runs once per batch
      {1, 9, 2, 8, false, true, true},      // fewer rows than a task; Q's Gather kept for its reader
  };
  for (const Case& c : cases) {
    const int64_t B = c.batch, T = c.tokens, H = c.heads, D = c.head_size;
    INFO("batch " << B << ", tokens " << T << ", heads " << H << ", head size " << D);
    ModelBuilder b(13);
    b.input("x", DType::Float32, {B, T, 3 * H * D});
    b.output("y", DType::Float32);
    if (c.q_also_output) b.output("q", DType::Float32);
    b.initializer("packed", Tensor::from_ints(DType::Int64, {5}, {B, T, 3, H, D}));
    b.initializer("merged", Tensor::from_ints(DType::Int64, {3}, {B, T, H * D}));
    for (int64_t i = 0; i < 3; ++i) b.initializer("i" + std::to_string(i), Tensor::from_ints(DType::Int64, {}, {i}));
    b.initializer("c", Tensor::scalar(DType::Float32, c.divide ? std::sqrt(double(D)) : 0.35));
    b.node("Reshape", {"x", "packed"}, {"x5"});
    b.node("Transpose", {"x5"}, {"qkv"}, {{"perm", std::vector<int64_t>{2, 0, 3, 1, 4}}});  // [3, B, H, T, D]
    b.node("Gather", {"qkv", "i0"}, {"q"}, {{"axis", int64_t(0)}});
    b.node("Gather", {"qkv", "i2"}, {"v"}, {{"axis", int64_t(0)}});
    if (c.k_by_second_transpose) {
      b.node("Transpose", {"x5"}, {"qkv_t"}, {{"perm", std::vector<int64_t>{2, 0, 3, 4, 1}}});  // [3, B, H, D, T]
      b.node("Gather", {"qkv_t", "i1"}, {"kt"}, {{"axis", int64_t(0)}});
    } else {
      b.node("Gather", {"qkv", "i1"}, {"k"}, {{"axis", int64_t(0)}});
      b.node("Transpose", {"k"}, {"kt"}, {{"perm", std::vector<int64_t>{0, 1, 3, 2}}});
    }
    b.node("MatMul", {"q", "kt"}, {"s"});
    b.node(c.divide ? "Div" : "Mul", {"s", "c"}, {"scaled"});
    b.node("Softmax", {"scaled"}, {"p"}, {{"axis", int64_t(-1)}});
    b.node("MatMul", {"p", "v"}, {"o"});
    b.node("Transpose", {"o"}, {"ot"}, {{"perm", std::vector<int64_t>{0, 2, 1, 3}}});
    b.node("Reshape", {"ot", "merged"}, {"y"});
    std::string path = b.save(dir + "/m.onnx");

    Graph g = load_model(path);
    std::map<std::string, int> ops;
    for (const Node& n : g.nodes) ++ops[n.op_type];
    CHECK(ops["Attention"] == 1);
    CHECK(ops["Mul"] + ops["Div"] == 0);  // the scale is the kernel's
    // Every copy goes but Q's own Transpose and Gather when Q is read elsewhere.
    CHECK(ops["Transpose"] == (c.q_also_output ? 1 : 0));
    CHECK(ops["Gather"] == (c.q_also_output ? 1 : 0));
    for (const Node& n : g.nodes)
      if (n.op_type == "Attention") {
        CHECK(n.has_attr("a_dims"));
        CHECK(n.has_attr("b_dims"));
        CHECK(n.has_attr("v_dims"));
        CHECK(n.attr_ints("y_perm") == std::vector<int64_t>{0, 2, 1, 3});
        CHECK(n.attr_float("scale", 1) == Approx(c.divide ? 1 / std::sqrt(double(D)) : 0.35));
      }
    Executor halide(g, ExecutorOptions{Backend::Halide});
    int in_place = 0;
    for (const KernelInfo& k : halide.kernels())
      in_place += k.detail.find("read in place") != std::string::npos &&
                  k.detail.find("the result written transposed") != std::string::npos;
    CHECK(in_place == 1);
    expect_same_results(path, {{"x", random_tensor(DType::Float32, {B, T, 3 * H * D}, -2, 2)}});
  }
}

TEST_CASE("MatMul -> Add(bias) -> Gelu and MatMul -> Add(residual) run their epilogues in the int4 kernel",
          "[fusion]") {
  // A transformer feed-forward block: up-projection with Gelu, down-projection with the skip connection.
  std::string dir = temp_dir("fuse_matmul_gelu");
  ModelBuilder b(21);
  b.input("x", DType::Float32, {2, 5, 40});
  b.output("y", DType::Float32);
  b.initializer("w1", random_tensor(DType::Int4, {40, 64}, -8, 7));
  b.initializer("s1", random_tensor(DType::Float32, {2, 64}, 0.02, 0.1));
  b.initializer("b1", random_tensor(DType::Float32, {64}));
  b.initializer("w2", random_tensor(DType::Int4, {64, 40}, -8, 7));
  b.initializer("s2", random_tensor(DType::Float32, {2, 40}, 0.02, 0.1));
  b.node("DequantizeLinear", {"w1", "s1"}, {"w1f"}, {{"axis", 0}, {"block_size", 32}});
  b.node("DequantizeLinear", {"w2", "s2"}, {"w2f"}, {{"axis", 0}, {"block_size", 32}});
  b.node("MatMul", {"x", "w1f"}, {"h"});
  b.node("Add", {"h", "b1"}, {"hb"});
  b.node("Gelu", {"hb"}, {"g"});
  b.node("MatMul", {"g", "w2f"}, {"d"});
  b.node("Add", {"d", "x"}, {"y"});
  std::string path = b.save(dir + "/m.onnx");
  Graph g = load_model(path);
  REQUIRE(g.quantized_nodes().size() == 2);
  CHECK(g.nodes.size() == 2);
  expect_same_results(path, {{"x", random_tensor(DType::Float32, {2, 5, 40})}});

  Executor halide(g, ExecutorOptions{Backend::Halide});
  halide.run({{"x", random_tensor(DType::Float32, {2, 5, 40})}});
  std::vector<std::string> details;
  for (const KernelInfo& k : halide.kernels()) details.push_back(k.detail);
  REQUIRE(details.size() == 2);
  CHECK_THAT(details[0], Catch::EndsWith("in the kernel: Gelu:none"));
  CHECK_THAT(details[1], Catch::EndsWith("in the kernel: +residual"));
}

TEST_CASE("Conv -> Relu -> Add(residual) runs the activation, then the residual, in the int4 kernel", "[fusion]") {
  std::string dir = temp_dir("fuse_conv_relu_add");
  ModelBuilder b(21);
  b.input("x", DType::Float32, {1, 8, 10, 12});
  b.output("y", DType::Float32);
  add_int4_conv_weight(b, 8, 8, false);
  b.node("Conv", {"x", "wf"}, {"c"}, {{"pads", std::vector<int64_t>{1, 1, 1, 1}}});
  b.node("Relu", {"c"}, {"r"});
  b.node("Add", {"r", "x"}, {"y"});
  std::string path = b.save(dir + "/m.onnx");
  Graph g = load_model(path);
  const Node& conv = only_fused_node(g);
  REQUIRE(conv.epilogue.size() == 2);
  CHECK(conv.epilogue[0].op_type == "Relu");
  CHECK(conv.epilogue[1].op_type == "Add");
  expect_same_results(path, {{"x", random_tensor(DType::Float32, {1, 8, 10, 12})}});
  Executor halide(g, ExecutorOptions{Backend::Halide});
  halide.run({{"x", random_tensor(DType::Float32, {1, 8, 10, 12})}});
  CHECK_THAT(halide.kernels().at(0).detail, Catch::EndsWith("in the kernel: Relu +residual"));
}
