// The quantization operators (runtime/ops/quant.cpp) against hand examples and plain loops:
// Q/DQ granularities and rounding, MatMulNBits layouts, the fused tetra.QMatMul / tetra.QConv,
// the integer and QLinear ops, and errors that name the node.
#include <catch2/catch.hpp>

#include <cmath>
#include <memory>

#include "importer/error.h"
#include "importer/onnx_loader.h"
#include "runtime/op_registry.h"
#include "runtime/ops/op_util.h"
#include "runtime/reference_evaluator.h"
#include "tools/model_builder.h"
#include "tests/ort_oracle.h"
#include "tests/test_support.h"

using namespace tetra;
using namespace tetra::test;

namespace {


Node make_node(const std::string& domain, const std::string& op_type, std::map<std::string, Attribute> attrs = {}) {
  Node n;
  n.name = "n1";
  n.domain = domain;
  n.op_type = op_type;
  n.attrs = std::move(attrs);
  return n;
}

const OpDef& op_of(const Node& n) {
  const OpDef* def = OpRegistry::get().find(n.domain, n.op_type);
  REQUIRE(def != nullptr);
  return *def;
}

Tensor run1(const Node& n, const std::vector<Tensor>& inputs) {
  std::vector<Tensor> out = op_of(n).compute(n, inputs);
  REQUIRE(out.size() == 1);
  return out[0];
}

std::vector<ValueInfo> infer(const Node& n, const std::vector<const ValueInfo*>& inputs) {
  InferContext ctx{n, inputs, std::vector<const Tensor*>(inputs.size(), nullptr)};
  return op_of(n).infer(ctx);
}

// Runs `f`, expecting an Error of `kind` whose message names node n1 and contains `text`.
template <class F>
void expect_error(F f, ErrorKind kind, const std::string& text) {
  try {
    f();
    FAIL("no error; expected one containing: " << text);
  } catch (const Error& e) {
    INFO(e.what());
    CHECK(e.kind() == kind);
    CHECK(std::string(e.what()).find("'n1'") != std::string::npos);
    CHECK(std::string(e.what()).find(text) != std::string::npos);
  }
}

Tensor ints(DType t, const Shape& s, const std::vector<int64_t>& v) { return Tensor::from_ints(t, s, v); }
Tensor floats(DType t, const Shape& s, const std::vector<double>& v) { return Tensor::from_doubles(t, s, v); }

void check_equal(const Tensor& got, const Tensor& expected) {
  REQUIRE(got.dtype() == expected.dtype());
  REQUIRE(got.shape() == expected.shape());
  CHECK(compare_tensors(got, expected, 0, 0) == "");
}

void check_close(const Tensor& got, const Tensor& expected, double tol = 1e-5) {
  REQUIRE(got.dtype() == expected.dtype());
  CHECK(compare_tensors(got, expected, tol, tol) == "");
}

// Positive scales, not all equal.
Tensor random_scales(DType t, const Shape& s) { return random_tensor(t, s, 0.01, 0.2); }

// The Q/DQ formulas, written out plainly for the tests.
int64_t quantize_ref(double x, double scale, int64_t zp, DType out) {
  double q = std::nearbyint(static_cast<float>(x) / static_cast<float>(scale)) + zp;
  return static_cast<int64_t>(std::fmin(std::fmax(q, dtype_min(out)), dtype_max(out)));
}
double dequantize_ref(int64_t q, int64_t zp, double scale) {
  return static_cast<float>((static_cast<float>(q) - static_cast<float>(zp)) * static_cast<float>(scale));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// QuantizeLinear

TEST_CASE("QuantizeLinear rounds ties to even for every output type", "[quant]") {
  Tensor x = floats(DType::Float32, {6}, {0.5, -0.5, 1.5, -1.5, 2.5, -2.5});
  Tensor one = floats(DType::Float32, {}, {1.0});
  for (DType t : {DType::Int8, DType::Int4}) {
    Tensor y = run1(make_node("", "QuantizeLinear"), {x, one, ints(t, {}, {0})});
    check_equal(y, ints(t, {6}, {0, 0, 2, -2, 2, -2}));
  }
  // Unsigned: with a zero point in the middle the ties land on the same even offsets.
  Tensor y8 = run1(make_node("", "QuantizeLinear"), {x, one, ints(DType::UInt8, {}, {10})});
  check_equal(y8, ints(DType::UInt8, {6}, {10, 10, 12, 8, 12, 8}));
  Tensor y4 = run1(make_node("", "QuantizeLinear"), {x, one, ints(DType::UInt4, {}, {6})});
  check_equal(y4, ints(DType::UInt4, {6}, {6, 6, 8, 4, 8, 4}));
}

TEST_CASE("QuantizeLinear saturates and picks the output type", "[quant]") {
  Tensor x = floats(DType::Float32, {4}, {300.0, -300.0, 7.4, -8.6});
  Tensor one = floats(DType::Float32, {}, {1.0});
  auto quantize_to = [&](int64_t onnx_type) {
    return run1(make_node("", "QuantizeLinear", {{"output_dtype", int_attr(onnx_type)}}), {x, one});
  };
  check_equal(quantize_to(3), ints(DType::Int8, {4}, {127, -128, 7, -9}));
  check_equal(quantize_to(2), ints(DType::UInt8, {4}, {255, 0, 7, 0}));
  check_equal(quantize_to(22), ints(DType::Int4, {4}, {7, -8, 7, -8}));
  check_equal(quantize_to(21), ints(DType::UInt4, {4}, {15, 0, 7, 0}));
  // Neither zero point nor output_dtype: uint8.
  check_equal(run1(make_node("", "QuantizeLinear"), {x, one}), ints(DType::UInt8, {4}, {255, 0, 7, 0}));
  // A zero point of another type than output_dtype is an error.
  expect_error([&] {
    run1(make_node("", "QuantizeLinear", {{"output_dtype", int_attr(3)}}), {x, one, ints(DType::UInt8, {}, {0})});
  }, ErrorKind::Invalid, "output_dtype");
}

TEST_CASE("QuantizeLinear per axis and blocked with a ragged last block", "[quant]") {
  SECTION("per axis, positive and negative axis") {
    Tensor x = random_tensor(DType::Float32, {2, 3, 2}, -3, 3);
    Tensor scale = random_scales(DType::Float32, {3});
    Tensor zp = random_tensor(DType::Int8, {3}, -5, 5);
    for (int64_t axis : {1, -2}) {
      Tensor y = run1(make_node("", "QuantizeLinear", {{"axis", int_attr(axis)}}), {x, scale, zp});
      Tensor expected(DType::Int8, x.shape());
      for (int64_t i = 0; i < x.size(); ++i) {
        int64_t c = (i / 2) % 3;
        expected.set_int(i, quantize_ref(x.get(i), scale.get(c), zp.get_int(c), DType::Int8));
      }
      check_equal(y, expected);
    }
  }
  SECTION("blocked along axis 1 of [2, 5] with block 2: blocks {0,1} {2,3} {4}") {
    Tensor x = random_tensor(DType::Float32, {2, 5}, -2, 2);
    Tensor scale = random_scales(DType::Float32, {2, 3});
    Tensor zp = random_tensor(DType::UInt4, {2, 3}, 0, 15);
    Node n = make_node("", "QuantizeLinear", {{"axis", int_attr(1)}, {"block_size", int_attr(2)}});
    Tensor y = run1(n, {x, scale, zp});
    Tensor expected(DType::UInt4, x.shape());
    for (int64_t r = 0; r < 2; ++r)
      for (int64_t c = 0; c < 5; ++c) {
        int64_t p = r * 3 + c / 2;
        expected.set_int(r * 5 + c, quantize_ref(x.get(r * 5 + c), scale.get(p), zp.get_int(p), DType::UInt4));
      }
    check_equal(y, expected);
    // A scale with the wrong number of blocks names the node.
    expect_error([&] { run1(n, {x, random_scales(DType::Float32, {2, 2}), Tensor()}); }, ErrorKind::Invalid,
                 "blocked scale");
  }
}

TEST_CASE("QuantizeLinear and DequantizeLinear infer types and keep symbolic dims", "[quant]") {
  ValueInfo x = make_info(DType::Float32, SymbolicShape{Dim{-1, "batch"}, Dim{8, ""}});
  ValueInfo s = make_info(DType::Float32, SymbolicShape{});
  ValueInfo s16 = make_info(DType::Float16, SymbolicShape{});
  auto q = infer(make_node("", "QuantizeLinear", {{"output_dtype", int_attr(22)}}), {&x, &s});
  REQUIRE(q.size() == 1);
  CHECK(q[0].dtype == DType::Int4);
  CHECK(shape_str(q[0].shape) == "[batch,8]");
  ValueInfo xq = make_info(DType::Int4, SymbolicShape{Dim{-1, "batch"}, Dim{8, ""}});
  auto dq = infer(make_node("", "DequantizeLinear"), {&xq, &s16});
  CHECK(dq[0].dtype == DType::Float16);
  CHECK(shape_str(dq[0].shape) == "[batch,8]");
  auto dq32 = infer(make_node("", "DequantizeLinear", {{"output_dtype", int_attr(1)}}), {&xq, &s16});
  CHECK(dq32[0].dtype == DType::Float32);
}

// ---------------------------------------------------------------------------------------------
// DequantizeLinear

TEST_CASE("DequantizeLinear per tensor, with and without zero point", "[quant]") {
  Tensor x = random_tensor(DType::Int8, {7}, -128, 127);
  Tensor scale = floats(DType::Float32, {}, {0.037});
  SECTION("no zero point") {
    Tensor y = run1(make_node("", "DequantizeLinear"), {x, scale});
    Tensor expected(DType::Float32, {7});
    for (int64_t i = 0; i < 7; ++i) expected.set(i, dequantize_ref(x.get_int(i), 0, 0.037));
    check_equal(y, expected);
  }
  SECTION("a one-element zero point [1] with a scalar scale is per tensor (axis ignored)") {
    Tensor xu = random_tensor(DType::UInt4, {5}, 0, 15);
    Node n = make_node("", "DequantizeLinear", {{"axis", int_attr(0)}});
    Tensor y = run1(n, {xu, scale, ints(DType::UInt4, {1}, {3})});
    Tensor expected(DType::Float32, {5});
    for (int64_t i = 0; i < 5; ++i) expected.set(i, dequantize_ref(xu.get_int(i), 3, 0.037));
    check_equal(y, expected);
  }
  SECTION("int32 input, float16 scale gives float16") {
    Tensor x32 = ints(DType::Int32, {3}, {1000, -2000, 12345});
    Tensor y = run1(make_node("", "DequantizeLinear"), {x32, floats(DType::Float16, {}, {0.01})});
    REQUIRE(y.dtype() == DType::Float16);
    float s = half_to_float(float_to_half(0.01f));
    for (int64_t i = 0; i < 3; ++i) CHECK(y.get(i) == half_to_float(float_to_half(float(x32.get_int(i)) * s)));
  }
}

TEST_CASE("DequantizeLinear per axis and blocked", "[quant]") {
  SECTION("per axis 0 of an int4 [3, 4]") {
    Tensor x = random_tensor(DType::Int4, {3, 4}, -8, 7);
    Tensor scale = random_scales(DType::Float32, {3});
    Tensor zp = random_tensor(DType::Int4, {3}, -3, 3);
    Tensor y = run1(make_node("", "DequantizeLinear", {{"axis", int_attr(0)}}), {x, scale, zp});
    Tensor expected(DType::Float32, x.shape());
    for (int64_t i = 0; i < x.size(); ++i)
      expected.set(i, dequantize_ref(x.get_int(i), zp.get_int(i / 4), scale.get(i / 4)));
    check_equal(y, expected);
  }
  SECTION("blocked along axis 0 of a uint8 [5, 2], block 3: rows {0,1,2} {3,4}") {
    Tensor x = random_tensor(DType::UInt8, {5, 2}, 0, 255);
    Tensor scale = random_scales(DType::Float32, {2, 2});
    Tensor zp = random_tensor(DType::UInt8, {2, 2}, 100, 150);
    Node n = make_node("", "DequantizeLinear", {{"axis", int_attr(0)}, {"block_size", int_attr(3)}});
    Tensor y = run1(n, {x, scale, zp});
    Tensor expected(DType::Float32, x.shape());
    for (int64_t r = 0; r < 5; ++r)
      for (int64_t c = 0; c < 2; ++c) {
        int64_t p = (r / 3) * 2 + c;
        expected.set(r * 2 + c, dequantize_ref(x.get_int(r * 2 + c), zp.get_int(p), scale.get(p)));
      }
    check_equal(y, expected);
  }
  SECTION("mismatched shapes name the node") {
    Tensor x = random_tensor(DType::Int8, {3, 4}, -100, 100);
    Node n = make_node("", "DequantizeLinear", {{"axis", int_attr(1)}});
    expect_error([&] { run1(n, {x, random_scales(DType::Float32, {3})}); }, ErrorKind::Invalid, "per-axis scale");
    expect_error([&] { run1(n, {x, random_scales(DType::Float32, {4}), random_tensor(DType::Int8, {3}, 1, 5)}); },
                 ErrorKind::Invalid, "zero point shape");
  }
}

// ---------------------------------------------------------------------------------------------
// com.microsoft.MatMulNBits

namespace {

// A random 4-bit weight in MatMulNBits' layouts, with the plain dequantized [N, K] matrix to check against.
struct NBitsWeight {
  int64_t K, N, block, n_blocks;
  std::vector<int64_t> q, zp;  // q: [N, K]; zp: [N, n_blocks]
  Tensor b, scales, packed_zp, float_zp;

  NBitsWeight(int64_t K_, int64_t N_, int64_t block_) : K(K_), N(N_), block(block_), n_blocks((K_ + block_ - 1) / block_) {
    const int64_t row = n_blocks * block, zp_row = (n_blocks + 1) / 2;
    Tensor qs = random_tensor(DType::UInt4, {N, K}, 0, 15);
    Tensor zs = random_tensor(DType::UInt4, {N, n_blocks}, 0, 15);
    q = qs.to_ints();
    zp = zs.to_ints();
    // Padding past K and past the last zero point is junk that must be ignored.
    Tensor b4 = random_tensor(DType::UInt4, {N, row}, 0, 15);
    Tensor z4 = random_tensor(DType::UInt4, {N, 2 * zp_row}, 0, 15);
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t k = 0; k < K; ++k) b4.set_int(n * row + k, q[n * K + k]);
      for (int64_t j = 0; j < n_blocks; ++j) z4.set_int(n * 2 * zp_row + j, zp[n * n_blocks + j]);
    }
    b = Tensor(DType::UInt8, {N, n_blocks, block / 2}, std::vector<uint8_t>(b4.bytes(), b4.bytes() + b4.byte_size()));
    packed_zp = Tensor(DType::UInt8, {N, zp_row}, std::vector<uint8_t>(z4.bytes(), z4.bytes() + z4.byte_size()));
    scales = random_scales(DType::Float32, {N, n_blocks});
    float_zp = floats(DType::Float32, {N, n_blocks}, std::vector<double>(zp.begin(), zp.end()));
  }

  // Y = A x W^T + bias with W[n, k] = (q - zp) * scale, one row of A at a time.
  Tensor expected(const Tensor& a, bool with_zp, const Tensor& bias = Tensor()) const {
    Shape out = a.shape();
    out.back() = N;
    const int64_t rows = a.size() / K;
    std::vector<double> y(rows * N);
    for (int64_t m = 0; m < rows; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double acc = bias.empty() ? 0.0 : bias.get(n);
        for (int64_t k = 0; k < K; ++k) {
          int64_t j = n * n_blocks + k / block;
          acc += a.get(m * K + k) * dequantize_ref(q[n * K + k], with_zp ? zp[j] : 8, scales.get(j));
        }
        y[m * N + n] = acc;
      }
    return floats(DType::Float32, out, y);
  }
};

Node nbits_node(const NBitsWeight& w, int64_t bits = 4) {
  return make_node("com.microsoft", "MatMulNBits",
                   {{"K", int_attr(w.K)}, {"N", int_attr(w.N)}, {"bits", int_attr(bits)}, {"block_size", int_attr(w.block)}});
}

}  // namespace

TEST_CASE("MatMulNBits matches dequantize-then-matmul for its layouts", "[quant]") {
  // K = 40 with block 16: three blocks, the last one padded; an odd block count packs zero points unevenly.
  NBitsWeight w(40, 5, 16);
  Node n = nbits_node(w);
  Tensor a = random_tensor(DType::Float32, {3, 40});

  SECTION("2-D scales and packed zero points") {
    check_close(run1(n, {a, w.b, w.scales, w.packed_zp}), w.expected(a, true));
  }
  SECTION("1-D scales and zero points") {
    Tensor flat_zp = w.packed_zp.reshaped({w.N * ((w.n_blocks + 1) / 2)});
    Tensor y = run1(n, {a, w.b, w.scales.reshaped({w.N * w.n_blocks}), flat_zp});
    check_close(y, w.expected(a, true));
  }
  SECTION("absent zero point means 8") {
    check_close(run1(n, {a, w.b, w.scales}), w.expected(a, false));
  }
  SECTION("float zero points of the scales' type") {
    check_close(run1(n, {a, w.b, w.scales, w.float_zp}), w.expected(a, true));
  }
  SECTION("bias, trivial g_idx, batched and 1-D A") {
    Tensor bias = random_tensor(DType::Float32, {w.N});
    std::vector<int64_t> g(w.K);
    for (int64_t k = 0; k < w.K; ++k) g[k] = k / w.block;
    Tensor g_idx = ints(DType::Int32, {w.K}, g);
    Tensor a3 = random_tensor(DType::Float32, {2, 3, 40});
    check_close(run1(n, {a3, w.b, w.scales, w.packed_zp, g_idx, bias}), w.expected(a3, true, bias));
    Tensor a1 = random_tensor(DType::Float32, {40});
    check_close(run1(n, {a1, w.b, w.scales, Tensor(), Tensor(), bias}), w.expected(a1, false, bias));
  }
  SECTION("shape inference") {
    ValueInfo ai = make_info(DType::Float32, SymbolicShape{Dim{-1, "batch"}, Dim{-1, "seq"}, Dim{40, ""}});
    auto out = infer(n, {&ai});
    CHECK(out[0].dtype == DType::Float32);
    CHECK(shape_str(out[0].shape) == "[batch,seq,5]");
  }
}

TEST_CASE("MatMulNBits refuses what it does not support, naming the node", "[quant]") {
  NBitsWeight w(32, 4, 16);
  Tensor a = random_tensor(DType::Float32, {2, 32});
  expect_error([&] { run1(nbits_node(w, 8), {a, w.b, w.scales}); }, ErrorKind::Unsupported, "bits=8");
  ValueInfo ai = make_info(DType::Float32, SymbolicShape{Dim{2, ""}, Dim{32, ""}});
  expect_error([&] { infer(nbits_node(w, 2), {&ai}); }, ErrorKind::Unsupported, "bits=2");
  std::vector<int64_t> g(32);
  for (int64_t k = 0; k < 32; ++k) g[k] = (k % 2) ? 1 : 0;  // an act-order permutation
  expect_error([&] { run1(nbits_node(w), {a, w.b, w.scales, Tensor(), ints(DType::Int32, {32}, g)}); },
               ErrorKind::Unsupported, "g_idx");
  expect_error([&] { run1(nbits_node(w), {a, w.b, random_scales(DType::Float32, {4, 3})}); }, ErrorKind::Invalid,
               "scales shape");
}

// ---------------------------------------------------------------------------------------------
// tetra.QMatMul and tetra.QConv

namespace {

std::shared_ptr<QuantizedWeight> random_weight(const Shape& shape, int64_t axis, int64_t block, bool zero_point) {
  auto w = std::make_shared<QuantizedWeight>();
  w->name = "w";
  w->pattern = "DequantizeLinear";
  w->data = random_tensor(DType::Int4, shape, -8, 7);
  Shape s = shape;
  if (block > 0) s[axis] = (s[axis] + block - 1) / block;
  else s = {shape[axis]};
  w->scale = random_scales(DType::Float32, s);
  if (zero_point) w->zero_point = random_tensor(DType::Int4, s, -2, 2);
  w->axis = axis;
  w->block_size = block;
  return w;
}

// The weight at logical [k, n] of a [K, N] (or, transposed, [N, K]) weight.
double weight_at(const QuantizedWeight& w, bool trans_b, int64_t k, int64_t n) {
  const Shape& s = w.shape();
  return trans_b ? w.value(n * s[1] + k) : w.value(k * s[1] + n);
}

}  // namespace

TEST_CASE("tetra.QMatMul: trans_b, batched A, bias, alpha and beta", "[quant]") {
  const int64_t K = 12, N = 5;
  for (bool trans_b : {false, true}) {
    DYNAMIC_SECTION("trans_b " << trans_b) {
      // Blocked along K with a ragged last block, with zero points.
      auto w = random_weight(trans_b ? Shape{N, K} : Shape{K, N}, trans_b ? 1 : 0, 5, true);
      Node n = make_node("tetra", "QMatMul", {{"trans_b", int_attr(trans_b)}});
      n.weight = w;
      Tensor a = random_tensor(DType::Float32, {2, 3, K});
      Tensor y = run1(n, {a});
      Tensor expected(DType::Float32, {2, 3, N});
      for (int64_t r = 0; r < 6; ++r)
        for (int64_t j = 0; j < N; ++j) {
          double acc = 0;
          for (int64_t k = 0; k < K; ++k) acc += a.get(r * K + k) * weight_at(*w, trans_b, k, j);
          expected.set(r * N + j, acc);
        }
      check_close(y, expected);

      ValueInfo ai = make_info(DType::Float32, SymbolicShape{Dim{-1, "b"}, Dim{3, ""}, Dim{K, ""}});
      auto info = infer(n, {&ai});
      CHECK(shape_str(info[0].shape) == "[b,3,5]");
    }
  }
  SECTION("Gemm form: trans_a, alpha, beta and a bias") {
    auto w = random_weight({N, K}, 0, 0, false);  // per output channel
    Node n = make_node("tetra", "QMatMul",
                       {{"trans_b", int_attr(1)}, {"trans_a", int_attr(1)}, {"alpha", float_attr(0.5)},
                        {"beta", float_attr(2.0)}});
    n.weight = w;
    Tensor a = random_tensor(DType::Float32, {K, 4});  // A^T
    Tensor bias = random_tensor(DType::Float32, {N});
    Tensor y = run1(n, {a, bias});
    Tensor expected(DType::Float32, {4, N});
    for (int64_t m = 0; m < 4; ++m)
      for (int64_t j = 0; j < N; ++j) {
        double acc = 0;
        for (int64_t k = 0; k < K; ++k) acc += a.get(k * 4 + m) * weight_at(*w, true, k, j);
        expected.set(m * N + j, 0.5 * acc + 2.0 * bias.get(j));
      }
    check_close(y, expected);
  }
  SECTION("no weight attached is an error naming the node") {
    Node n = make_node("tetra", "QMatMul");
    expect_error([&] { run1(n, {random_tensor(DType::Float32, {2, 3})}); }, ErrorKind::Invalid, "weight");
  }
}

TEST_CASE("tetra.QConv equals a convolution with the dequantized weight", "[quant]") {
  // X [1, 4, 5, 5], W [6, 2, 3, 3] (group 2), per output channel scales, pads 1, stride 2, bias.
  auto w = random_weight({6, 2, 3, 3}, 0, 0, true);
  Node n = make_node("tetra", "QConv",
                     {{"group", int_attr(2)}, {"pads", ints_attr({1, 1, 1, 1})}, {"strides", ints_attr({2, 2})}});
  n.weight = w;
  Tensor x = random_tensor(DType::Float32, {1, 4, 5, 5});
  Tensor bias = random_tensor(DType::Float32, {6});
  Tensor y = run1(n, {x, bias});

  Tensor expected(DType::Float32, {1, 6, 3, 3});
  for (int64_t m = 0; m < 6; ++m)
    for (int64_t oy = 0; oy < 3; ++oy)
      for (int64_t ox = 0; ox < 3; ++ox) {
        double acc = bias.get(m);
        for (int64_t c = 0; c < 2; ++c)
          for (int64_t ky = 0; ky < 3; ++ky)
            for (int64_t kx = 0; kx < 3; ++kx) {
              int64_t iy = oy * 2 - 1 + ky, ix = ox * 2 - 1 + kx, ic = (m / 3) * 2 + c;
              if (iy < 0 || iy >= 5 || ix < 0 || ix >= 5) continue;
              acc += x.get((ic * 5 + iy) * 5 + ix) * w->value(((m * 2 + c) * 3 + ky) * 3 + kx);
            }
        expected.set((m * 3 + oy) * 3 + ox, acc);
      }
  check_close(y, expected);

  ValueInfo xi = make_info(DType::Float32, SymbolicShape{Dim{-1, "n"}, Dim{4, ""}, Dim{5, ""}, Dim{5, ""}});
  CHECK(shape_str(infer(n, {&xi})[0].shape) == "[n,6,3,3]");
}

// ---------------------------------------------------------------------------------------------
// Integer and QLinear ops

TEST_CASE("MatMulInteger with per-tensor and per-row zero points", "[quant]") {
  // The example of the ONNX operator documentation.
  Tensor a = ints(DType::UInt8, {4, 3}, {11, 7, 3, 10, 6, 2, 9, 5, 1, 8, 4, 0});
  Tensor b = ints(DType::UInt8, {3, 2}, {1, 4, 2, 5, 3, 6});
  Node n = make_node("", "MatMulInteger");
  Tensor y = run1(n, {a, b, ints(DType::UInt8, {}, {12}), ints(DType::UInt8, {}, {0})});
  check_equal(y, ints(DType::Int32, {4, 2}, {-38, -83, -44, -98, -50, -113, -56, -128}));

  // Per-row zero points of a [4] and per-column ones of b [2].
  Tensor y2 = run1(n, {a, b, ints(DType::UInt8, {4}, {1, 2, 3, 4}), ints(DType::UInt8, {2}, {1, 2})});
  std::vector<int64_t> expected;
  for (int64_t m = 0; m < 4; ++m)
    for (int64_t j = 0; j < 2; ++j) {
      int64_t acc = 0;
      for (int64_t k = 0; k < 3; ++k) acc += (a.get_int(m * 3 + k) - (m + 1)) * (b.get_int(k * 2 + j) - (j + 1));
      expected.push_back(acc);
    }
  check_equal(y2, ints(DType::Int32, {4, 2}, expected));
}

TEST_CASE("ConvInteger with a zero point", "[quant]") {
  // The example of the ONNX operator documentation: x 2..10, x_zero_point 1, w all ones.
  Tensor x = ints(DType::UInt8, {1, 1, 3, 3}, {2, 3, 4, 5, 6, 7, 8, 9, 10});
  Tensor w = ints(DType::UInt8, {1, 1, 2, 2}, {1, 1, 1, 1});
  Tensor y = run1(make_node("", "ConvInteger"), {x, w, ints(DType::UInt8, {}, {1})});
  check_equal(y, ints(DType::Int32, {1, 1, 2, 2}, {12, 16, 24, 28}));
  // Per output channel weight zero points.
  Tensor w2 = ints(DType::Int8, {2, 1, 1, 1}, {3, -2});
  Tensor x2 = ints(DType::Int8, {1, 1, 1, 2}, {5, -7});
  Tensor y2 = run1(make_node("", "ConvInteger"), {x2, w2, Tensor(), ints(DType::Int8, {2}, {1, -1})});
  check_equal(y2, ints(DType::Int32, {1, 2, 1, 2}, {10, -14, -5, 7}));
}

TEST_CASE("QLinearMatMul requantizes with round half to even and saturation", "[quant]") {
  // The example of the ONNX operator documentation.
  Tensor a = ints(DType::UInt8, {2, 4}, {208, 236, 0, 238, 3, 214, 255, 29});
  Tensor b = ints(DType::UInt8, {4, 3}, {152, 51, 244, 60, 26, 255, 0, 127, 246, 127, 254, 247});
  auto f = [](double v) { return floats(DType::Float32, {}, {v}); };
  auto u = [](int64_t v) { return ints(DType::UInt8, {}, {v}); };
  Node n = make_node("", "QLinearMatMul");
  Tensor y = run1(n, {a, f(0.0066), u(113), b, f(0.00705), u(114), f(0.0107), u(118)});
  check_equal(y, ints(DType::UInt8, {2, 3}, {168, 115, 255, 1, 66, 151}));

  SECTION("per-row a and per-column b scales") {
    Tensor as = random_scales(DType::Float32, {2}), bs = random_scales(DType::Float32, {3});
    Tensor azp = random_tensor(DType::UInt8, {2}, 100, 140), bzp = random_tensor(DType::UInt8, {3}, 100, 140);
    Tensor y2 = run1(n, {a, as, azp, b, bs, bzp, f(0.02), u(128)});
    Tensor expected(DType::UInt8, {2, 3});
    for (int64_t m = 0; m < 2; ++m)
      for (int64_t j = 0; j < 3; ++j) {
        double acc = 0;
        for (int64_t k = 0; k < 4; ++k)
          acc += double(a.get_int(m * 4 + k) - azp.get_int(m)) * double(b.get_int(k * 3 + j) - bzp.get_int(j));
        float mult = float(float(as.get(m)) * float(bs.get(j))) / 0.02f;
        expected.set_int(m * 3 + j, static_cast<int64_t>(std::fmin(255, std::fmax(0, std::nearbyint(acc * mult + 128)))));
      }
    check_equal(y2, expected);
  }
  SECTION("a per-column scale for a is refused") {
    expect_error([&] { run1(n, {a, random_scales(DType::Float32, {1, 4}), Tensor(), b, f(0.1), Tensor(), f(0.1), u(0)}); },
                 ErrorKind::Invalid, "per-row");
  }
}

TEST_CASE("QLinearConv with per-channel weight scales and an int32 bias", "[quant]") {
  // x (uint8, scale 0.5, zero point 10) and w (int8, scales 0.25 / 0.5) give real outputs that the
  // output scale 0.25 maps to whole numbers; see the arithmetic in each comment.
  Tensor x = ints(DType::UInt8, {1, 1, 2, 2}, {10, 20, 30, 40});
  Tensor w = ints(DType::Int8, {2, 1, 1, 1}, {2, -3});
  Tensor ws = floats(DType::Float32, {2}, {0.25, 0.5});
  auto f = [](double v) { return floats(DType::Float32, {}, {v}); };
  Tensor bias = ints(DType::Int32, {2}, {4, -4});
  Node n = make_node("", "QLinearConv");
  Tensor y = run1(n, {x, f(0.5), ints(DType::UInt8, {}, {10}), w, ws, ints(DType::Int8, {2}, {0, 0}), f(0.25),
                      ints(DType::UInt8, {}, {128}), bias});
  // Channel 0: ((x - 10) * 2 + 4) * 0.5 + 128; channel 1: ((x - 10) * -3 - 4) * 1 + 128.
  check_equal(y, ints(DType::UInt8, {1, 2, 2, 2}, {130, 140, 150, 160, 124, 94, 64, 34}));
  // Saturation: a tiny output scale pushes everything to the ends of the range.
  Tensor sat = run1(n, {x, f(0.5), ints(DType::UInt8, {}, {10}), w, ws, Tensor(), f(0.001), ints(DType::UInt8, {}, {128})});
  check_equal(sat, ints(DType::UInt8, {1, 2, 2, 2}, {128, 255, 255, 255, 128, 0, 0, 0}));
}

// ---------------------------------------------------------------------------------------------
// Against ONNX Runtime: the ops that the importer leaves as they are

namespace {

// Loads the one-node model, runs it with tetra's reference evaluator and with ORT, and compares.
void check_model_against_ort(const ModelBuilder& model, const std::vector<Tensor>& inputs, double tol,
                             const std::string& what) {
  INFO(what);
  std::string path = model.save(temp_dir("quant_ort") + "/model.onnx");
  Graph graph = load_onnx(path);
  REQUIRE(graph.inputs.size() == inputs.size());
  TensorMap feeds;
  for (size_t i = 0; i < inputs.size(); ++i) feeds[graph.inputs[i].name] = inputs[i];
  infer_shapes(graph);
  TensorMap ours = run_reference(graph, feeds);
  std::vector<Tensor> theirs = run_ort(path, inputs);
  REQUIRE(theirs.size() == 1);
  const Tensor& got = ours.at(graph.outputs[0].name);
  CHECK(got.dtype() == theirs[0].dtype());
  CHECK(compare_tensors(got, theirs[0], tol, tol) == "");
}

}  // namespace

TEST_CASE("Quantization ops match ONNX Runtime", "[quant][ort]") {
  if (!require_ort()) return;
  SECTION("MatMulNBits with float zero points, bias and a padded last block") {
    NBitsWeight w(40, 6, 16);
    ModelBuilder b;
    b.opset("com.microsoft", 1);
    b.input("a", DType::Float32, {3, 40}).output("y", DType::Float32);
    b.initializer("b", w.b).initializer("scales", w.scales).initializer("zp", w.float_zp);
    b.initializer("bias", random_tensor(DType::Float32, {6}));
    b.node("MatMulNBits", {"a", "b", "scales", "zp", "", "bias"}, {"y"},
           {{"K", int64_t(40)}, {"N", int64_t(6)}, {"bits", int64_t(4)}, {"block_size", int64_t(16)}}, "com.microsoft");
    check_model_against_ort(b, {random_tensor(DType::Float32, {3, 40})}, 1e-5, "MatMulNBits float zero points");
  }
  SECTION("QuantizeLinear blocked and DequantizeLinear per axis") {
    ModelBuilder q;
    q.input("x", DType::Float32, {3, 10}).output("y", DType::Int8);
    q.initializer("s", random_scales(DType::Float32, {3, 3})).initializer("z", random_tensor(DType::Int8, {3, 3}, -9, 9));
    q.node("QuantizeLinear", {"x", "s", "z"}, {"y"}, {{"axis", int64_t(1)}, {"block_size", int64_t(4)}});
    check_model_against_ort(q, {random_tensor(DType::Float32, {3, 10}, -20, 20)}, 0, "QuantizeLinear blocked");
    ModelBuilder d;
    d.input("x", DType::UInt8, {4, 3}).output("y", DType::Float32);
    d.initializer("s", random_scales(DType::Float32, {4})).initializer("z", random_tensor(DType::UInt8, {4}, 0, 255));
    d.node("DequantizeLinear", {"x", "s", "z"}, {"y"}, {{"axis", int64_t(0)}});
    check_model_against_ort(d, {random_tensor(DType::UInt8, {4, 3}, 0, 255)}, 0, "DequantizeLinear per axis");
  }
  SECTION("QLinearMatMul and QLinearConv") {
    ModelBuilder m;
    m.input("a", DType::Int8, {2, 3, 8}).output("y", DType::Int8);
    m.initializer("as", floats(DType::Float32, {}, {0.05})).initializer("az", ints(DType::Int8, {}, {3}));
    m.initializer("b", random_tensor(DType::Int8, {8, 5}, -128, 127));
    m.initializer("bs", floats(DType::Float32, {}, {0.02})).initializer("bz", ints(DType::Int8, {}, {-2}));
    m.initializer("ys", floats(DType::Float32, {}, {0.3})).initializer("yz", ints(DType::Int8, {}, {-5}));
    m.node("QLinearMatMul", {"a", "as", "az", "b", "bs", "bz", "ys", "yz"}, {"y"});
    check_model_against_ort(m, {random_tensor(DType::Int8, {2, 3, 8}, -128, 127)}, 0, "QLinearMatMul");
    ModelBuilder c;
    c.input("x", DType::UInt8, {1, 4, 6, 6}).output("y", DType::UInt8);
    c.initializer("xs", floats(DType::Float32, {}, {0.04})).initializer("xz", ints(DType::UInt8, {}, {120}));
    // 7-bit weights: on x86 without VNNI, ORT's uint8 x int8 kernels add pairs of products in int16
    // (vpmaddubsw), which saturates for 255 * 127 * 2; ORT's quantizer keeps weights in 7 bits there.
    c.initializer("w", random_tensor(DType::Int8, {6, 2, 3, 3}, -63, 63));
    c.initializer("ws", random_scales(DType::Float32, {6})).initializer("wz", ints(DType::Int8, {6}, {0, 0, 0, 0, 0, 0}));
    c.initializer("ys", floats(DType::Float32, {}, {0.5})).initializer("yz", ints(DType::UInt8, {}, {100}));
    c.initializer("bias", random_tensor(DType::Int32, {6}, -500, 500));
    c.node("QLinearConv", {"x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "bias"}, {"y"},
           {{"group", int64_t(2)}, {"pads", std::vector<int64_t>{1, 0, 1, 2}}, {"strides", std::vector<int64_t>{2, 1}}});
    check_model_against_ort(c, {random_tensor(DType::UInt8, {1, 4, 6, 6}, 0, 255)}, 0, "QLinearConv");
  }
}
