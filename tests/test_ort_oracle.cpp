// tetra's reference evaluator, its Halide backend and its GPU path (the OpenCL dialect on pocl, the
// whole model as one device job) against ONNX Runtime on random models of every int4 weight pattern.
// Each model must also fuse into a packed tetra.QMatMul / tetra.QConv, so the packed path is tested.
#include <catch2/catch.hpp>
#include <cmath>
#include <sstream>

#include "dsl/target.h"
#include "runtime/model.h"
#include "runtime/reference_evaluator.h"
#include "tests/ort_oracle.h"
#include "tests/test_support.h"
#include "tools/model_builder.h"

using namespace tetra;
using namespace tetra::test;

namespace {

int64_t pick(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng()); }
bool coin() { return pick(0, 1) == 1; }

// Tolerances: fp32 results differ only by summation order; fp16 ones by where each side rounds.
struct Tolerance {
  double atol, rtol;
};
Tolerance tolerance(DType dtype, int64_t reduction) {
  double root = std::sqrt(static_cast<double>(reduction));
  if (dtype == DType::Float16) return {4e-3 * root, 4e-3};
  return {1e-4 * root, 1e-4};
}

// Saves the model, runs it through ORT and through tetra's reference and Halide backends and its GPU
// path on pocl, and compares every output. The model must fuse into packed int4 nodes.
void check_against_ort(const ModelBuilder& model, const std::vector<Tensor>& inputs, Tolerance tol,
                       const std::string& what) {
  INFO(what);
  std::string path = model.save(temp_dir("ort_oracle") + "/model.onnx");
  std::vector<Tensor> theirs = run_ort(path, inputs);
  for (Backend backend : {Backend::Reference, Backend::Halide}) {
    INFO("tetra backend: " << backend_name(backend));
    size_t fused = 0;
    std::vector<Tensor> ours = run_tetra(path, inputs, &fused, backend);
    REQUIRE(fused > 0);
    REQUIRE(theirs.size() == ours.size());
    for (size_t i = 0; i < theirs.size(); ++i) {
      CHECK(ours[i].dtype() == theirs[i].dtype());
      CHECK(compare_tensors(ours[i], theirs[i], tol.atol, tol.rtol) == "");
    }
  }
  // Every node of it compiled: none left to the reference kernels.
  TensorMap feeds;
  Graph graph = load_with_inputs(path, inputs, &feeds);
  Executor halide(graph, ExecutorOptions{Backend::Halide});
  halide.run(feeds);
  for (const KernelInfo& k : halide.kernels()) {
    INFO(k.node << ": " << k.detail);
    CHECK(k.backend == "halide");
  }
  if (!opencl_runs_here("the GPU path's checks against ONNX Runtime")) return;
  INFO("tetra's GPU path: OpenCL on pocl");
  TensorMap on_device = run_on_opencl(graph, feeds);
  for (size_t i = 0; i < theirs.size(); ++i) {
    const Tensor& got = on_device.at(graph.outputs[i].name);
    CHECK(got.dtype() == theirs[i].dtype());
    CHECK(compare_tensors(got, theirs[i], tol.atol, tol.rtol) == "");
  }
}

Tensor random_codes(DType type, const Shape& shape) {
  return random_tensor(type, shape, dtype_min(type), dtype_max(type));
}
Tensor random_scales(DType type, const Shape& shape) { return random_tensor(type, shape, 0.01, 0.1); }

enum class Granularity { PerTensorScalar, PerTensorOneElement, PerAxis, Blocked };

struct DqSpec {
  DType qtype = DType::Int4;
  Granularity granularity = Granularity::PerTensorScalar;
  int64_t axis = 0;
  int64_t block = 0;
  bool zero_point = false;
  DType ftype = DType::Float32;

  std::string str() const {
    static const char* names[] = {"per-tensor scalar", "per-tensor [1]", "per-axis", "blocked"};
    std::ostringstream s;
    s << dtype_name(qtype) << " " << names[int(granularity)] << " axis " << axis << " block " << block
      << (zero_point ? " with" : " without") << " zero point, " << dtype_name(ftype);
    return s.str();
  }
};

// Adds a random int4 constant of `shape` and the DequantizeLinear of it; returns the DQ output.
std::string add_dq_weight(ModelBuilder& b, const std::string& name, const Shape& shape, const DqSpec& spec) {
  Shape param_shape;
  std::vector<Attr> attrs;
  switch (spec.granularity) {
    case Granularity::PerTensorScalar: break;
    case Granularity::PerTensorOneElement: param_shape = {1}; break;
    case Granularity::PerAxis:
      param_shape = {shape[spec.axis]};
      attrs.emplace_back("axis", spec.axis);
      break;
    case Granularity::Blocked:
      param_shape = shape;
      param_shape[spec.axis] = (shape[spec.axis] + spec.block - 1) / spec.block;
      attrs.emplace_back("axis", spec.axis);
      attrs.emplace_back("block_size", spec.block);
      break;
  }
  b.initializer(name + "_q", random_codes(spec.qtype, shape));
  b.initializer(name + "_scale", random_scales(spec.ftype, param_shape));
  std::vector<std::string> inputs = {name + "_q", name + "_scale"};
  if (spec.zero_point) {
    b.initializer(name + "_zp", random_codes(spec.qtype, param_shape));
    inputs.push_back(name + "_zp");
  }
  b.node("DequantizeLinear", inputs, {name}, attrs);
  return name;
}

// A block size that leaves a ragged last block along a dimension of size `dim`.
int64_t ragged_block(int64_t dim) {
  for (int64_t block : {32, 16, 8, 4})
    if (block < dim && dim % block != 0) return block;
  return 2;
}

}  // namespace

TEST_CASE("DequantizeLinear int4/uint4 -> MatMul matches ONNX Runtime", "[ort]") {
  if (!require_ort()) return;
  for (DType qtype : {DType::Int4, DType::UInt4}) {
    for (int g = 0; g < 6; ++g) {
      for (bool zp : {false, true}) {
        int64_t M = pick(1, 9), K = 2 * pick(8, 40) + 1, N = pick(3, 19);
        DqSpec spec{qtype, Granularity::PerTensorScalar, 0, 0, zp};
        if (g == 1) spec.granularity = Granularity::PerTensorOneElement;
        if (g == 2 || g == 3) spec = {qtype, Granularity::PerAxis, g == 2 ? 1 : 0, 0, zp};
        if (g == 4) spec = {qtype, Granularity::Blocked, 0, ragged_block(K), zp};  // blocks along K
        if (g == 5) spec = {qtype, Granularity::Blocked, 1, ragged_block(N), zp};  // blocks along N
        Shape a_shape = coin() ? Shape{M, K} : Shape{2, M, K};
        ModelBuilder b;
        b.input("a", DType::Float32, a_shape).output("y", DType::Float32);
        b.node("MatMul", {"a", add_dq_weight(b, "w", {K, N}, spec)}, {"y"});
        check_against_ort(b, {random_tensor(DType::Float32, a_shape)}, tolerance(DType::Float32, K),
                          "MatMul " + shape_str(a_shape) + " x [" + std::to_string(K) + "," + std::to_string(N) +
                              "], " + spec.str());
      }
    }
  }
}

TEST_CASE("DequantizeLinear -> Gemm (transA/transB, Transpose, bias) matches ONNX Runtime", "[ort]") {
  if (!require_ort()) return;
  struct Variant {
    const char* what;
    bool stored_nk;   // weight constant stored as [N, K] (else [K, N])
    bool transpose;   // DQ -> Transpose -> Gemm
    int64_t trans_b;  // Gemm's transB attribute
    int64_t trans_a;
  };
  const Variant variants[] = {
      {"[K,N] weight", false, false, 0, 0},
      {"[N,K] weight, transB=1", true, false, 1, 0},
      {"[N,K] weight, DQ->Transpose, transB=0", true, true, 0, 0},
      {"[K,N] weight, DQ->Transpose, transB=1", false, true, 1, 0},
      {"[N,K] weight, transA=1, transB=1", true, false, 1, 1},
  };
  for (const Variant& v : variants) {
    for (DType qtype : {DType::Int4, DType::UInt4}) {
      int64_t M = pick(1, 9), K = 2 * pick(8, 40) + 1, N = pick(3, 19);
      Shape w_shape = v.stored_nk ? Shape{N, K} : Shape{K, N};
      int64_t k_axis = v.stored_nk ? 1 : 0;
      DqSpec spec = coin() ? DqSpec{qtype, Granularity::Blocked, k_axis, ragged_block(K), coin()}
                           : DqSpec{qtype, Granularity::PerAxis, 1 - k_axis, 0, coin()};
      Shape a_shape = v.trans_a ? Shape{K, M} : Shape{M, K};
      ModelBuilder b;
      b.input("a", DType::Float32, a_shape).output("y", DType::Float32);
      std::string w = add_dq_weight(b, "w", w_shape, spec);
      if (v.transpose) {
        b.node("Transpose", {w}, {"w_t"}, {{"perm", std::vector<int64_t>{1, 0}}});
        w = "w_t";
      }
      b.initializer("c", random_tensor(DType::Float32, {N}));
      b.node("Gemm", {"a", w, "c"}, {"y"},
             {{"transA", v.trans_a}, {"transB", v.trans_b}, {"alpha", 0.75f}, {"beta", 1.25f}});
      check_against_ort(b, {random_tensor(DType::Float32, a_shape)}, tolerance(DType::Float32, K),
                        std::string("Gemm ") + v.what + ", M=" + std::to_string(M) + " K=" + std::to_string(K) +
                            " N=" + std::to_string(N) + ", " + spec.str());
    }
  }
  // DQ -> Transpose -> MatMul, the layout exporters produce for [N, K] weights.
  for (DType qtype : {DType::Int4, DType::UInt4}) {
    int64_t M = pick(1, 9), K = 2 * pick(8, 40) + 1, N = pick(3, 19);
    DqSpec spec{qtype, Granularity::Blocked, 1, ragged_block(K), true};
    ModelBuilder b;
    b.input("a", DType::Float32, {M, K}).output("y", DType::Float32);
    b.node("Transpose", {add_dq_weight(b, "w", {N, K}, spec)}, {"w_t"}, {{"perm", std::vector<int64_t>{1, 0}}});
    b.node("MatMul", {"a", "w_t"}, {"y"});
    check_against_ort(b, {random_tensor(DType::Float32, {M, K})}, tolerance(DType::Float32, K),
                      "DQ -> Transpose -> MatMul, " + spec.str());
  }
}

TEST_CASE("DequantizeLinear per output channel -> Conv matches ONNX Runtime", "[ort]") {
  if (!require_ort()) return;
  struct Variant {
    const char* what;
    int64_t c, m, group, kernel, stride, dilation, pad;
  };
  const Variant variants[] = {
      {"3x3", 5, 7, 1, 3, 1, 1, 1},        {"3x3 stride 2 dilation 2", 3, 6, 1, 3, 2, 2, 2},
      {"grouped", 6, 4, 2, 3, 1, 1, 0},    {"depthwise", 7, 7, 7, 3, 1, 1, 1},
      {"1x1", 9, 5, 1, 1, 1, 1, 0},        {"5x5 stride 3", 2, 3, 1, 5, 3, 1, 2},
  };
  for (const Variant& v : variants) {
    for (DType qtype : {DType::Int4, DType::UInt4}) {
      bool zp = coin();
      DqSpec spec{qtype, Granularity::PerAxis, 0, 0, zp};
      Shape x_shape{pick(1, 2), v.c, pick(5, 11), pick(5, 11)};
      Shape w_shape{v.m, v.c / v.group, v.kernel, v.kernel};
      ModelBuilder b;
      b.input("x", DType::Float32, x_shape).output("y", DType::Float32);
      std::string w = add_dq_weight(b, "w", w_shape, spec);
      b.initializer("bias", random_tensor(DType::Float32, {v.m}));
      int64_t p = v.pad;
      b.node("Conv", {"x", w, "bias"}, {"y"},
             {{"group", v.group},
              {"strides", std::vector<int64_t>{v.stride, v.stride}},
              {"dilations", std::vector<int64_t>{v.dilation, v.dilation}},
              {"pads", std::vector<int64_t>{p, p, p, p}}});
      check_against_ort(b, {random_tensor(DType::Float32, x_shape)},
                        tolerance(DType::Float32, v.c / v.group * v.kernel * v.kernel),
                        std::string("Conv ") + v.what + " x " + shape_str(x_shape) + ", " + spec.str());
    }
  }
}

namespace {

// A random com.microsoft.MatMulNBits model: y = a x dequant(B)^T (+ bias), in `ftype`.
void check_matmul_nbits(DType ftype, int64_t K, int64_t block, bool zero_points, bool scales_2d, bool bias) {
  int64_t M = pick(1, 9), N = pick(3, 19);
  int64_t blocks = (K + block - 1) / block, zp_row = (blocks + 1) / 2;
  // Codes and the padding past K are random nibbles: the padding must be ignored.
  Tensor codes(DType::UInt8, {N, blocks, block / 2});
  for (int64_t i = 0; i < codes.size(); ++i) codes.set_int(i, pick(0, 255));
  ModelBuilder b;
  b.opset("com.microsoft", 1);
  b.input("a", ftype, {M, K}).output("y", ftype);
  b.initializer("b", codes);
  b.initializer("scales", random_scales(ftype, scales_2d ? Shape{N, blocks} : Shape{N * blocks}));
  std::vector<std::string> inputs = {"a", "b", "scales"};
  if (zero_points) {
    Tensor zp(DType::UInt8, {N * zp_row});
    for (int64_t i = 0; i < zp.size(); ++i) zp.set_int(i, pick(0, 255));
    b.initializer("zp", zp);
    inputs.push_back("zp");
  }
  if (bias) {
    if (!zero_points) inputs.push_back("");
    inputs.push_back("");  // g_idx
    b.initializer("bias", random_tensor(ftype, {N}));
    inputs.push_back("bias");
  }
  b.node("MatMulNBits", inputs, {"y"}, {{"K", K}, {"N", N}, {"bits", 4}, {"block_size", block}}, "com.microsoft");
  std::ostringstream what;
  what << "MatMulNBits " << dtype_name(ftype) << " M=" << M << " K=" << K << " N=" << N << " block " << block
       << (zero_points ? ", zero points" : "") << (scales_2d ? ", 2-D scales" : ", 1-D scales")
       << (bias ? ", bias" : "");
  check_against_ort(b, {random_tensor(ftype, {M, K})}, tolerance(ftype, K), what.str());
}

}  // namespace

TEST_CASE("com.microsoft.MatMulNBits matches ONNX Runtime", "[ort]") {
  if (!require_ort()) return;
  for (bool zero_points : {false, true})
    for (bool scales_2d : {false, true})
      for (bool bias : {false, true}) {
        int64_t block = coin() ? 16 : 32;
        int64_t K = block * pick(1, 4) + pick(1, block - 1);  // K % block != 0
        check_matmul_nbits(DType::Float32, K, block, zero_points, scales_2d, bias);
      }
  check_matmul_nbits(DType::Float32, 64, 32, true, false, false);  // K a multiple of the block
  check_matmul_nbits(DType::Float32, 50, 64, true, false, true);   // one block, larger than K
}

TEST_CASE("int8 activations agree with ONNX Runtime's MatMulNBits accuracy_level 4", "[ort][int8]") {
  if (!require_ort()) return;
  if (!dsl::host_target().has_int8_dot()) {
    WARN("this CPU has no AVX512-VNNI: tetra keeps float32 activations here");
    return;
  }
  for (int64_t M : {1, 5}) {
    for (bool zero_points : {false, true}) {
      const int64_t K = 256, N = 48, block = zero_points ? 16 : 32, blocks = K / block;
      ModelBuilder b;
      b.opset("com.microsoft", 1);
      b.input("a", DType::Float32, {M, K}).output("y", DType::Float32);
      Tensor codes(DType::UInt8, {N, blocks, block / 2});
      for (int64_t i = 0; i < codes.size(); ++i) codes.set_int(i, pick(0, 255));
      b.initializer("b", codes);
      b.initializer("scales", random_scales(DType::Float32, {N * blocks}));
      std::vector<std::string> inputs = {"a", "b", "scales"};
      if (zero_points) {
        Tensor zp(DType::UInt8, {N * ((blocks + 1) / 2)});
        for (int64_t i = 0; i < zp.size(); ++i) zp.set_int(i, pick(0, 255));
        b.initializer("zp", zp);
        inputs.push_back("zp");
      }
      b.node("MatMulNBits", inputs, {"y"},
             {{"K", K}, {"N", N}, {"bits", 4}, {"block_size", block}, {"accuracy_level", 4}}, "com.microsoft");
      INFO("M=" << M << (zero_points ? ", zero points" : ""));
      std::string path = b.save(temp_dir("ort_int8") + "/model.onnx");
      Tensor a = random_tensor(DType::Float32, {M, K});
      Tensor theirs = run_ort(path, {a}, /*optimize=*/true)[0];

      Graph graph = load_model(path);
      Tensor exact = run_reference(graph, {{"a", a}}).at("y");
      REQUIRE(mark_int8_activations(graph) == 1);
      Tensor ours = Executor(graph, ExecutorOptions{Backend::Halide}).run({{"a", a}}).at("y");
      double scale = 0, ours_vs_exact = 0, ours_vs_theirs = 0;
      for (int64_t k = 0; k < exact.size(); ++k) {
        scale = std::max(scale, std::fabs(exact.get(k)));
        ours_vs_exact = std::max(ours_vs_exact, std::fabs(ours.get(k) - exact.get(k)));
        ours_vs_theirs = std::max(ours_vs_theirs, std::fabs(ours.get(k) - theirs.get(k)));
      }
      INFO("max |y| " << scale << ", tetra int8 vs exact " << ours_vs_exact << ", vs ORT " << ours_vs_theirs);
      // The same quantization of A: the two agree far more closely than either agrees with fp32.
      CHECK(ours_vs_exact > 1e-5 * scale);
      CHECK(ours_vs_theirs <= 1e-5 * (1 + scale));
    }
  }
}

TEST_CASE("Fake-quant QuantizeLinear -> Clip(-8, 7) -> DequantizeLinear -> MatMul matches ONNX Runtime", "[ort]") {
  if (!require_ort()) return;
  for (bool per_axis : {false, true}) {
    for (bool zero_point : {false, true}) {
      int64_t M = pick(1, 9), K = 2 * pick(8, 40) + 1, N = pick(3, 19);
      // Scales small enough that some values saturate at the clip bounds.
      Shape param_shape = per_axis ? Shape{N} : Shape{};
      Tensor zp = Tensor::from_ints(DType::Int8, param_shape, std::vector<int64_t>(num_elements(param_shape), 0));
      if (zero_point)
        for (int64_t i = 0; i < zp.size(); ++i) zp.set_int(i, pick(-2, 2));
      std::vector<Attr> axis;
      if (per_axis) axis.emplace_back("axis", int64_t(1));
      ModelBuilder b;
      b.input("a", DType::Float32, {M, K}).output("y", DType::Float32);
      b.initializer("w", random_tensor(DType::Float32, {K, N}));
      b.initializer("scale", random_tensor(DType::Float32, param_shape, 0.1, 0.15));
      b.initializer("zp", zp);
      b.initializer("lo", Tensor::scalar(DType::Int8, -8));
      b.initializer("hi", Tensor::scalar(DType::Int8, 7));
      b.node("QuantizeLinear", {"w", "scale", "zp"}, {"w_q"}, axis);
      b.node("Clip", {"w_q", "lo", "hi"}, {"w_c"});
      b.node("DequantizeLinear", {"w_c", "scale", "zp"}, {"w_dq"}, axis);
      b.node("MatMul", {"a", "w_dq"}, {"y"});
      check_against_ort(b, {random_tensor(DType::Float32, {M, K})}, tolerance(DType::Float32, K),
                        std::string("fake quant ") + (per_axis ? "per-axis" : "per-tensor") +
                            (zero_point ? " with zero point" : "") + ", K=" + std::to_string(K));
    }
  }
}

TEST_CASE("float16 activations with float16 scales match ONNX Runtime", "[ort]") {
  if (!require_ort()) return;
  for (DType qtype : {DType::Int4, DType::UInt4}) {
    int64_t M = pick(1, 9), K = 2 * pick(8, 40) + 1, N = pick(3, 19);
    DqSpec spec{qtype, Granularity::Blocked, 0, ragged_block(K), true, DType::Float16};
    ModelBuilder b;
    b.input("a", DType::Float16, {M, K}).output("y", DType::Float16);
    b.node("MatMul", {"a", add_dq_weight(b, "w", {K, N}, spec)}, {"y"});
    check_against_ort(b, {random_tensor(DType::Float16, {M, K})}, tolerance(DType::Float16, K),
                      "fp16 MatMul, M=" + std::to_string(M) + " K=" + std::to_string(K) + ", " + spec.str());
  }
  check_matmul_nbits(DType::Float16, 16 * pick(1, 4) + pick(1, 15), 16, true, false, true);
  check_matmul_nbits(DType::Float16, 32 * pick(1, 3) + pick(1, 31), 32, false, true, false);
}
