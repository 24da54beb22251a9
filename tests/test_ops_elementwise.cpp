// Unit tests of the elementwise ([elementwise]) and reduction ([reduce]) reference kernels:
// hand-computed edge cases, per-opset attribute/input forms, and shape inference with symbolic dims.
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "importer/error.h"
#include "runtime/op_registry.h"
#include "runtime/ops/op_util.h"
#include "tests/ort_oracle.h"
#include "tests/test_support.h"
#include "tools/model_builder.h"

using namespace tetra;
using namespace tetra::test;

namespace {


Node make_node(const std::string& op, int64_t opset, std::map<std::string, Attribute> attrs = {}) {
  Node n;
  n.op_type = op;
  n.name = "my_" + op;
  n.opset = opset;
  n.attrs = std::move(attrs);
  n.outputs = {"y"};
  return n;
}

const OpDef& op_def(const Node& n) {
  const OpDef* def = OpRegistry::get().find("", n.op_type);
  REQUIRE(def != nullptr);
  return *def;
}

std::vector<Tensor> compute(const Node& n, const std::vector<Tensor>& in) { return op_def(n).compute(n, in); }
Tensor compute1(const Node& n, const std::vector<Tensor>& in) { return compute(n, in).at(0); }

std::vector<ValueInfo> infer(const Node& n, const std::vector<ValueInfo>& in, std::vector<const Tensor*> constants = {}) {
  InferContext ctx{n, {}, constants};
  for (const ValueInfo& v : in) ctx.inputs.push_back(v.dtype == DType::Undefined ? nullptr : &v);
  ctx.constants.resize(in.size(), nullptr);
  return op_def(n).infer(ctx);
}

ValueInfo sym(DType t, const std::vector<Dim>& dims) { return make_info(t, SymbolicShape(dims)); }
Dim d(int64_t v) { return Dim{v, ""}; }
Dim d(const char* s) { return Dim{-1, s}; }

Tensor floats(const Shape& shape, const std::vector<double>& v, DType t = DType::Float32) {
  return Tensor::from_doubles(t, shape, v);
}
Tensor ints(DType t, const Shape& shape, const std::vector<int64_t>& v) { return Tensor::from_ints(t, shape, v); }

// The error a call throws, so its kind and message can be checked.
template <class F>
Error error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  FAIL("expected a tetra::Error");
  return Error(ErrorKind::Invalid, "");
}

float round_f(double v) { return static_cast<float>(v); }

}  // namespace

// ------------------------------------------------------------------------------------------------
// Unary

TEST_CASE("unary float ops match the double formula rounded once", "[elementwise]") {
  struct Case {
    const char* op;
    double (*f)(double);
    double lo, hi;
  };
  const Case cases[] = {
      {"Relu", [](double x) { return x < 0 ? 0.0 : x; }, -3, 3},
      {"Sigmoid", [](double x) { return 1 / (1 + std::exp(-x)); }, -8, 8},
      {"Tanh", [](double x) { return std::tanh(x); }, -4, 4},
      {"HardSigmoid", [](double x) { return std::max(0.0, std::min(1.0, 0.2 * x + 0.5)); }, -4, 4},
      {"HardSwish", [](double x) { return x * std::max(0.0, std::min(1.0, x / 6 + 0.5)); }, -5, 5},
      {"Erf", [](double x) { return std::erf(x); }, -3, 3},
      {"Sqrt", [](double x) { return std::sqrt(x); }, 0.01, 9},
      {"Exp", [](double x) { return std::exp(x); }, -5, 5},
      {"Log", [](double x) { return std::log(x); }, 0.01, 9},
      {"Neg", [](double x) { return -x; }, -3, 3},
      {"Abs", [](double x) { return std::fabs(x); }, -3, 3},
      {"Reciprocal", [](double x) { return 1 / x; }, 0.1, 5},
  };
  for (const Case& c : cases) {
    INFO(c.op);
    Node n = make_node(c.op, 17);
    for (DType t : {DType::Float32, DType::Float16}) {
      Tensor x = random_tensor(t, {3, 5}, c.lo, c.hi);
      Tensor y = compute1(n, {x});
      REQUIRE(y.dtype() == t);
      REQUIRE(y.shape() == x.shape());
      Tensor expected(t, x.shape());
      for (int64_t i = 0; i < x.size(); ++i) expected.set(i, c.f(x.get(i)));
      CHECK(compare_tensors(y, expected, 0, 0) == "");
    }
  }
}

TEST_CASE("activation attributes and hand values", "[elementwise]") {
  Tensor x = floats({5}, {-3, -2, 0.5, 1, 3});
  SECTION("LeakyRelu default alpha 0.01 and explicit alpha") {
    Tensor y = compute1(make_node("LeakyRelu", 16), {x});
    CHECK(y.get(0) == round_f(0.01 * -3.0));
    CHECK(y.get(4) == 3.0);
    Tensor y2 = compute1(make_node("LeakyRelu", 16, {{"alpha", float_attr(0.5)}}), {x});
    CHECK(y2.get(1) == -1.0);
  }
  SECTION("HardSigmoid alpha/beta") {
    Tensor y = compute1(make_node("HardSigmoid", 6, {{"alpha", float_attr(0.5)}, {"beta", float_attr(0.25)}}), {x});
    CHECK(y.get(0) == 0.0);                // clipped at 0
    CHECK(y.get(2) == 0.5);                // 0.25 + 0.25
    CHECK(y.get(4) == 1.0);                // clipped at 1
  }
  SECTION("HardSwish") {
    Tensor y = compute1(make_node("HardSwish", 14), {x});
    CHECK(y.get(0) == 0.0);
    CHECK(y.get(3) == round_f(1.0 * (1.0 / 6 + 0.5)));
    CHECK(y.get(4) == 3.0);
  }
  SECTION("Gelu none and tanh") {
    Tensor one = floats({1}, {1.0});
    CHECK(compute1(make_node("Gelu", 20), {one}).get(0) == Approx(0.8413447460685429).epsilon(1e-6));
    Tensor y = compute1(make_node("Gelu", 20, {{"approximate", string_attr("tanh")}}), {one});
    CHECK(y.get(0) == Approx(0.8411919906082768).epsilon(1e-6));
    Error e = error_of([&] { compute1(make_node("Gelu", 20, {{"approximate", string_attr("fast")}}), {one}); });
    CHECK(std::string(e.what()).find("my_Gelu") != std::string::npos);
  }
  SECTION("Relu keeps NaN") {
    Tensor y = compute1(make_node("Relu", 14), {floats({2}, {NAN, -1})});
    CHECK(std::isnan(y.get(0)));
    CHECK(y.get(1) == 0.0);
  }
}

TEST_CASE("Neg, Abs, Relu on signed integers wrap like C", "[elementwise]") {
  Tensor x = ints(DType::Int8, {4}, {-128, -5, 0, 127});
  CHECK(compute1(make_node("Neg", 13), {x}).to_ints() == std::vector<int64_t>{-128, 5, 0, -127});
  CHECK(compute1(make_node("Abs", 13), {x}).to_ints() == std::vector<int64_t>{-128, 5, 0, 127});
  CHECK(compute1(make_node("Relu", 14), {x}).to_ints() == std::vector<int64_t>{0, 0, 0, 127});
  Tensor big = ints(DType::Int64, {2}, {-(int64_t(1) << 60) - 1, int64_t(1) << 55});
  CHECK(compute1(make_node("Neg", 13), {big}).to_ints() == std::vector<int64_t>{(int64_t(1) << 60) + 1, -(int64_t(1) << 55)});
}

TEST_CASE("unary ops reject integer inputs ONNX does not allow", "[elementwise]") {
  Node n = make_node("Sqrt", 13);
  Error e = error_of([&] { compute1(n, {ints(DType::Int32, {2}, {4, 9})}); });
  CHECK(std::string(e.what()).find("Sqrt 'my_Sqrt'") != std::string::npos);
  CHECK_THROWS_AS(infer(n, {make_info(DType::Int32, Shape{2})}), Error);
  CHECK_THROWS_AS(compute1(make_node("Neg", 13), {ints(DType::UInt8, {1}, {3})}), Error);
}

TEST_CASE("unary inference keeps symbolic dims and unknown rank", "[elementwise]") {
  auto out = infer(make_node("Relu", 14), {sym(DType::Float16, {d("batch"), d(3), Dim{}})});
  REQUIRE(out.size() == 1);
  CHECK(out[0].dtype == DType::Float16);
  REQUIRE(out[0].shape.size() == 3);
  CHECK(out[0].shape[0].symbol == "batch");
  CHECK(out[0].shape[1].value == 3);
  CHECK_FALSE(out[0].shape[2].known());
  auto unknown = infer(make_node("Tanh", 13), {unknown_rank(DType::Float32)});
  CHECK_FALSE(unknown[0].has_shape);
}

// ------------------------------------------------------------------------------------------------
// Binary

TEST_CASE("Add/Sub/Mul/Div broadcast numpy-style", "[elementwise]") {
  Tensor a = random_tensor(DType::Float32, {2, 1, 4}, -2, 2);
  Tensor b = random_tensor(DType::Float32, {3, 1}, 0.5, 2);
  struct Case {
    const char* op;
    double (*f)(double, double);
  };
  const Case cases[] = {{"Add", [](double x, double y) { return x + y; }},
                        {"Sub", [](double x, double y) { return x - y; }},
                        {"Mul", [](double x, double y) { return x * y; }},
                        {"Div", [](double x, double y) { return x / y; }}};
  for (const Case& c : cases) {
    INFO(c.op);
    Tensor y = compute1(make_node(c.op, 14), {a, b});
    REQUIRE(y.shape() == Shape{2, 3, 4});
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < 3; ++j)
        for (int64_t k = 0; k < 4; ++k)
          CHECK(y.get((i * 3 + j) * 4 + k) == round_f(c.f(a.get(i * 4 + k), b.get(j))));
  }
}

TEST_CASE("integer arithmetic: Div truncates toward zero, overflow wraps, zero divisor fails", "[elementwise]") {
  Tensor a = ints(DType::Int32, {4}, {7, -7, 7, -7});
  Tensor b = ints(DType::Int32, {4}, {2, 2, -2, -2});
  CHECK(compute1(make_node("Div", 14), {a, b}).to_ints() == std::vector<int64_t>{3, -3, -3, 3});
  Tensor c = ints(DType::Int8, {2}, {127, -128});
  Tensor one = ints(DType::Int8, {}, {1});
  CHECK(compute1(make_node("Add", 14), {c, one}).to_ints() == std::vector<int64_t>{-128, -127});
  CHECK(compute1(make_node("Sub", 14), {c, one}).to_ints() == std::vector<int64_t>{126, 127});
  Tensor u = ints(DType::UInt8, {2}, {200, 3});
  CHECK(compute1(make_node("Mul", 14), {u, ints(DType::UInt8, {}, {2})}).to_ints() == std::vector<int64_t>{144, 6});
  Error e = error_of([&] { compute1(make_node("Div", 14), {a, ints(DType::Int32, {1}, {0})}); });
  CHECK(std::string(e.what()).find("my_Div") != std::string::npos);
}

TEST_CASE("binary ops name the node on shape and type mismatches", "[elementwise]") {
  Node n = make_node("Add", 14);
  Tensor a = random_tensor(DType::Float32, {2, 3});
  Tensor b = random_tensor(DType::Float32, {4});
  Error e = error_of([&] { compute1(n, {a, b}); });
  CHECK(std::string(e.what()).find("Add 'my_Add'") != std::string::npos);
  CHECK(e.kind() == ErrorKind::Invalid);
  Error ei = error_of([&] { infer(n, {sym(DType::Float32, {d("N"), d(3)}), sym(DType::Float32, {d(4)})}); });
  CHECK(std::string(ei.what()).find("my_Add") != std::string::npos);
  CHECK_THROWS_AS(compute1(n, {a, random_tensor(DType::Float16, {3})}), Error);
}

TEST_CASE("binary inference broadcasts symbolic dims", "[elementwise]") {
  auto out = infer(make_node("Mul", 14), {sym(DType::Float32, {d("N"), d(1), d(4)}), sym(DType::Float32, {d(3), d(1)})});
  REQUIRE(out[0].has_shape);
  REQUIRE(out[0].shape.size() == 3);
  CHECK(out[0].shape[0].symbol == "N");
  CHECK(out[0].shape[1].value == 3);
  CHECK(out[0].shape[2].value == 4);
  auto eq = infer(make_node("Equal", 13), {sym(DType::Int64, {d("N")}), sym(DType::Int64, {d(1)})});
  CHECK(eq[0].dtype == DType::Bool);
  CHECK(eq[0].shape[0].symbol == "N");
  auto unknown = infer(make_node("Add", 14), {unknown_rank(DType::Float32), sym(DType::Float32, {d(3)})});
  CHECK_FALSE(unknown[0].has_shape);
}

TEST_CASE("Pow keeps the base type", "[elementwise]") {
  Node n = make_node("Pow", 15);
  Tensor x = random_tensor(DType::Float32, {2, 3}, 0.1, 3);
  Tensor e = random_tensor(DType::Float32, {3}, -2, 2);
  Tensor y = compute1(n, {x, e});
  for (int64_t i = 0; i < 6; ++i) CHECK(y.get(i) == round_f(std::pow(x.get(i), e.get(i % 3))));
  // Integer base, integer exponent: exact.
  Tensor yi = compute1(n, {ints(DType::Int32, {3}, {2, -3, 7}), ints(DType::Int64, {3}, {10, 3, 0})});
  CHECK(yi.dtype() == DType::Int32);
  CHECK(yi.to_ints() == std::vector<int64_t>{1024, -27, 1});
  // int64 powers wrap like repeated multiplication, and huge exponents finish.
  Tensor wrapped = compute1(n, {ints(DType::Int64, {3}, {3, 2, -1}), ints(DType::Int64, {3}, {40, 64, 1000000000001})});
  CHECK(wrapped.to_ints() == std::vector<int64_t>{-6289078614652622815LL, 0, -1});
  // Integer base, float exponent: through double, truncated.
  Tensor yf = compute1(n, {ints(DType::Int32, {2}, {9, 10}), floats({2}, {0.5, 0.5})});
  CHECK(yf.to_ints() == std::vector<int64_t>{3, 3});
  // Float base, integer exponent.
  Tensor yb = compute1(n, {floats({2}, {1.5, -2}), ints(DType::Int64, {2}, {2, 3})});
  CHECK(yb.to_doubles() == std::vector<double>{2.25, -8});
}

TEST_CASE("Min and Max are variadic, broadcast and propagate NaN", "[elementwise]") {
  Tensor a = floats({2, 2}, {1, 5, NAN, -1});
  Tensor b = floats({2}, {3, 2});
  Tensor c = floats({}, {4});
  Tensor mn = compute1(make_node("Min", 13), {a, b, c});
  Tensor mx = compute1(make_node("Max", 13), {a, b, c});
  REQUIRE(mn.shape() == Shape{2, 2});
  CHECK(mn.get(0) == 1);
  CHECK(mn.get(1) == 2);
  CHECK(std::isnan(mn.get(2)));
  CHECK(mn.get(3) == -1);
  CHECK(mx.get(0) == 4);
  CHECK(mx.get(1) == 5);
  CHECK(std::isnan(mx.get(2)));
  CHECK(mx.get(3) == 4);
  Tensor only = random_tensor(DType::Int32, {3}, -5, 5);
  CHECK(compute1(make_node("Max", 13), {only}).to_ints() == only.to_ints());
  Tensor mi = compute1(make_node("Min", 13), {ints(DType::Int64, {2}, {int64_t(1) << 62, -3}), ints(DType::Int64, {1}, {(int64_t(1) << 62) - 1})});
  CHECK(mi.to_ints() == std::vector<int64_t>{(int64_t(1) << 62) - 1, -3});
  auto out = infer(make_node("Max", 13), {sym(DType::Float32, {d("N"), d(1)}), sym(DType::Float32, {d(5)}), sym(DType::Float32, {})});
  CHECK(out[0].shape.size() == 2);
  CHECK(out[0].shape[1].value == 5);
}

TEST_CASE("Equal compares exactly and outputs bool", "[elementwise]") {
  int64_t big = (int64_t(1) << 60) + 1;
  Tensor y = compute1(make_node("Equal", 13), {ints(DType::Int64, {3}, {big, big, 5}), ints(DType::Int64, {3}, {big, big - 1, 5})});
  CHECK(y.dtype() == DType::Bool);
  CHECK(y.to_ints() == std::vector<int64_t>{1, 0, 1});
  Tensor f = compute1(make_node("Equal", 13), {floats({3}, {NAN, 1.5, 2}), floats({1}, {1.5})});
  CHECK(f.to_ints() == std::vector<int64_t>{0, 1, 0});
  Tensor bools = compute1(make_node("Equal", 13), {ints(DType::Bool, {2}, {1, 0}), ints(DType::Bool, {2}, {1, 1})});
  CHECK(bools.to_ints() == std::vector<int64_t>{1, 0});
}

// ------------------------------------------------------------------------------------------------
// Where, Clip, Identity

TEST_CASE("Where broadcasts three ways and copies exactly", "[elementwise]") {
  Tensor cond = ints(DType::Bool, {2, 1}, {1, 0});
  int64_t big = (int64_t(1) << 58) + 3;
  Tensor x = ints(DType::Int64, {3}, {big, 2, 3});
  Tensor y = ints(DType::Int64, {}, {-7});
  Tensor out = compute1(make_node("Where", 16), {cond, x, y});
  REQUIRE(out.shape() == Shape{2, 3});
  CHECK(out.to_ints() == std::vector<int64_t>{big, 2, 3, -7, -7, -7});
  Tensor xf = random_tensor(DType::Float16, {2, 3});
  Tensor yf = random_tensor(DType::Float16, {2, 3});
  Tensor of = compute1(make_node("Where", 16), {cond, xf, yf});
  for (int64_t i = 0; i < 6; ++i) CHECK(of.get(i) == (i < 3 ? xf.get(i) : yf.get(i)));
  CHECK_THROWS_AS(compute1(make_node("Where", 16), {floats({1}, {1}), x, y}), Error);
  auto info = infer(make_node("Where", 16), {sym(DType::Bool, {d("N"), d(1)}), sym(DType::Int64, {d(3)}), sym(DType::Int64, {})});
  CHECK(info[0].dtype == DType::Int64);
  CHECK(info[0].shape[0].symbol == "N");
  CHECK(info[0].shape[1].value == 3);
}

TEST_CASE("Clip: attributes before opset 11, optional inputs after", "[elementwise]") {
  Tensor x = floats({5}, {-3, -0.5, 0.25, 2, NAN});
  SECTION("opset 6 attributes") {
    Tensor y = compute1(make_node("Clip", 6, {{"min", float_attr(-1)}, {"max", float_attr(1)}}), {x});
    CHECK(y.get(0) == -1);
    CHECK(y.get(1) == -0.5);
    CHECK(y.get(3) == 1);
    CHECK(std::isnan(y.get(4)));
    Tensor open = compute1(make_node("Clip", 6, {{"max", float_attr(0)}}), {x});
    CHECK(open.get(0) == -3);
    CHECK(open.get(2) == 0);
  }
  SECTION("opset 13 inputs, each optional") {
    Node n = make_node("Clip", 13);
    Tensor lo = floats({}, {-1}), hi = floats({}, {1});
    Tensor both = compute1(n, {x, lo, hi});
    CHECK(both.get(0) == -1);
    CHECK(both.get(3) == 1);
    Tensor max_only = compute1(n, {x, Tensor(), hi});
    CHECK(max_only.get(0) == -3);
    CHECK(max_only.get(3) == 1);
    Tensor min_only = compute1(n, {x, lo});
    CHECK(min_only.get(0) == -1);
    CHECK(min_only.get(3) == 2);
    CHECK(compare_tensors(compute1(n, {x}), x, 0, 0) == "");
    // Attributes are ignored from opset 11 on.
    Node with_attr = make_node("Clip", 13, {{"min", float_attr(0)}});
    CHECK(compute1(with_attr, {x}).get(0) == -3);
  }
  SECTION("min > max gives max everywhere") {
    Tensor y = compute1(make_node("Clip", 13), {x, floats({}, {2}), floats({}, {1})});
    CHECK(y.get(0) == 1);
    CHECK(y.get(2) == 1);
  }
  SECTION("integer types") {
    Tensor xi = ints(DType::Int8, {4}, {-128, -3, 4, 127});
    Tensor y = compute1(make_node("Clip", 13), {xi, ints(DType::Int8, {}, {-2}), ints(DType::Int8, {}, {3})});
    CHECK(y.dtype() == DType::Int8);
    CHECK(y.to_ints() == std::vector<int64_t>{-2, -2, 3, 3});
    CHECK_THROWS_AS(compute1(make_node("Clip", 13), {xi, floats({}, {0})}), Error);
  }
}

TEST_CASE("Identity passes any tensor through", "[elementwise]") {
  Tensor x = random_tensor(DType::UInt4, {3, 3}, 0, 15);
  Tensor y = compute1(make_node("Identity", 16), {x});
  CHECK(y.dtype() == DType::UInt4);
  CHECK(y.to_ints() == x.to_ints());
  auto out = infer(make_node("Identity", 16), {sym(DType::Int4, {d("K"), d(2)})});
  CHECK(out[0].dtype == DType::Int4);
  CHECK(out[0].shape[0].symbol == "K");
}

// ------------------------------------------------------------------------------------------------
// Cast

namespace {
Node cast_node(DType to, int64_t opset) { return make_node("Cast", opset, {{"to", int_attr(static_cast<int64_t>(to))}}); }
std::vector<int64_t> range(int64_t lo, int64_t hi) {
  std::vector<int64_t> v;
  for (int64_t i = lo; i <= hi; ++i) v.push_back(i);
  return v;
}
}  // namespace

TEST_CASE("Cast to int4/uint4 saturates before opset 25 and wraps from 25", "[elementwise]") {
  // The ONNX conformance inputs: -9..15 as float.
  std::vector<int64_t> values = range(-9, 15);
  std::vector<double> as_double(values.begin(), values.end());
  Tensor x = floats({5, 5}, as_double);
  Tensor x16 = floats({5, 5}, as_double, DType::Float16);
  std::vector<int64_t> sat_int4, sat_uint4, wrap_int4, wrap_uint4;
  for (int64_t v : values) {
    sat_int4.push_back(std::min<int64_t>(std::max<int64_t>(v, -8), 7));
    sat_uint4.push_back(std::min<int64_t>(std::max<int64_t>(v, 0), 15));
    wrap_int4.push_back((v & 0xF) >= 8 ? (v & 0xF) - 16 : (v & 0xF));
    wrap_uint4.push_back(v & 0xF);
  }
  for (const Tensor& src : {x, x16}) {
    INFO(dtype_name(src.dtype()));
    CHECK(compute1(cast_node(DType::Int4, 21), {src}).to_ints() == sat_int4);
    CHECK(compute1(cast_node(DType::UInt4, 21), {src}).to_ints() == sat_uint4);
    CHECK(compute1(cast_node(DType::Int4, 25), {src}).to_ints() == wrap_int4);
    CHECK(compute1(cast_node(DType::UInt4, 25), {src}).to_ints() == wrap_uint4);
  }
  // Spot checks from the rules: -9 -> -8, 8 -> 7 (saturate); 8 -> -8, -1 -> 15 (wrap).
  CHECK(sat_int4.front() == -8);
  CHECK(sat_int4[17] == 7);
  CHECK(wrap_int4[17] == -8);
  CHECK(wrap_uint4[8] == 15);

  SECTION("fractions: opset <= 24 rounds half to even, opset 25 truncates; NaN gives 0") {
    Tensor f = floats({7}, {2.5, 3.5, -2.5, 2.7, -2.7, NAN, 1e9});
    CHECK(compute1(cast_node(DType::Int4, 21), {f}).to_ints() == std::vector<int64_t>{2, 4, -2, 3, -3, 0, 7});
    CHECK(compute1(cast_node(DType::UInt4, 21), {f}).to_ints() == std::vector<int64_t>{2, 4, 0, 3, 0, 0, 15});
    Tensor g = floats({5}, {2.5, 3.5, -2.5, 2.7, -2.7});
    CHECK(compute1(cast_node(DType::Int4, 25), {g}).to_ints() == std::vector<int64_t>{2, 3, -2, 2, -2});
  }
  SECTION("integer sources follow the same opset rule") {
    Tensor i8 = ints(DType::Int8, {4}, {100, -100, 7, -3});
    CHECK(compute1(cast_node(DType::Int4, 21), {i8}).to_ints() == std::vector<int64_t>{7, -8, 7, -3});
    CHECK(compute1(cast_node(DType::Int4, 25), {i8}).to_ints() == std::vector<int64_t>{4, -4, 7, -3});
    Tensor i4 = ints(DType::Int4, {3}, {-3, 7, -8});
    CHECK(compute1(cast_node(DType::UInt4, 21), {i4}).to_ints() == std::vector<int64_t>{0, 7, 0});
    CHECK(compute1(cast_node(DType::UInt4, 25), {i4}).to_ints() == std::vector<int64_t>{13, 7, 8});
    Tensor u4 = ints(DType::UInt4, {3}, {15, 8, 7});
    CHECK(compute1(cast_node(DType::Int4, 21), {u4}).to_ints() == std::vector<int64_t>{7, 7, 7});
    CHECK(compute1(cast_node(DType::Int4, 25), {u4}).to_ints() == std::vector<int64_t>{-1, -8, 7});
  }
}

TEST_CASE("Cast from int4/uint4 is exact, odd element counts included", "[elementwise]") {
  Tensor i4 = ints(DType::Int4, {3, 3}, {-8, -7, -1, 0, 1, 2, 5, 6, 7});
  for (DType to : {DType::Float32, DType::Float16, DType::Int8, DType::Int32, DType::Int64}) {
    INFO(dtype_name(to));
    Tensor y = compute1(cast_node(to, 21), {i4});
    CHECK(y.dtype() == to);
    CHECK(y.to_ints() == i4.to_ints());
  }
  Tensor u4 = ints(DType::UInt4, {5}, {0, 15, 9, 1, 8});
  CHECK(compute1(cast_node(DType::UInt8, 21), {u4}).to_ints() == u4.to_ints());
  CHECK(compute1(cast_node(DType::Float32, 21), {u4}).to_doubles() == std::vector<double>{0, 15, 9, 1, 8});
  // INT4 -> UINT8 wraps negatives like any integer narrowing (the opset-21 conformance data: -8 -> 248).
  CHECK(compute1(cast_node(DType::UInt8, 21), {ints(DType::Int4, {2}, {-8, 3})}).to_ints() == std::vector<int64_t>{248, 3});
}

TEST_CASE("Cast float to wider integers truncates toward zero and wraps out of range", "[elementwise]") {
  Tensor x = floats({8}, {2.9, -2.9, 300, -129, NAN, 0.5, -0.5, 255});
  CHECK(compute1(cast_node(DType::Int8, 13), {x}).to_ints() == std::vector<int64_t>{2, -2, 44, 127, 0, 0, 0, -1});
  CHECK(compute1(cast_node(DType::UInt8, 13), {x}).to_ints() == std::vector<int64_t>{2, 254, 44, 127, 0, 0, 0, 255});
  Tensor big = floats({4}, {3e9, -3e9, INFINITY, -INFINITY});
  CHECK(compute1(cast_node(DType::Int32, 13), {big}).to_ints() == std::vector<int64_t>{3000000000LL - (1LL << 32), -3000000000LL + (1LL << 32), -1, 0});
  Tensor y64 = compute1(cast_node(DType::Int64, 13), {big});
  CHECK(y64.get_int(0) == 3000000000LL);
  CHECK(y64.get_int(2) == std::numeric_limits<int64_t>::max());
  CHECK(y64.get_int(3) == std::numeric_limits<int64_t>::min());
}

TEST_CASE("Cast to and from bool and between floats", "[elementwise]") {
  Tensor x = floats({4}, {0.0, -0.5, NAN, -0.0});
  CHECK(compute1(cast_node(DType::Bool, 13), {x}).to_ints() == std::vector<int64_t>{0, 1, 1, 0});
  CHECK(compute1(cast_node(DType::Bool, 13), {ints(DType::Int32, {3}, {0, 256, -1})}).to_ints() == std::vector<int64_t>{0, 1, 1});
  CHECK(compute1(cast_node(DType::Float16, 13), {ints(DType::Bool, {2}, {1, 0})}).to_doubles() == std::vector<double>{1, 0});
  // float32 -> float16 rounds once, ties to even; 65520 and above overflow to inf.
  double ulp = std::ldexp(1.0, -10);
  Tensor f = floats({4}, {1 + ulp / 2, 1 + 1.5 * ulp, 65520, -70000});
  Tensor h = compute1(cast_node(DType::Float16, 13), {f});
  CHECK(h.get(0) == 1.0);
  CHECK(h.get(1) == 1 + 2 * ulp);
  CHECK(h.get(2) == INFINITY);
  CHECK(h.get(3) == -INFINITY);
  Tensor back = compute1(cast_node(DType::Float32, 13), {h});
  CHECK(compare_tensors(back, h, 0, 0) == "");
  // int64 -> float32 rounds once: 2^60 + 2^36 + 1 is just above half a float ulp (2^37) and rounds up,
  // where going through double would land on the tie and round down to 2^60.
  int64_t v = (int64_t(1) << 60) + (int64_t(1) << 36) + 1;
  Tensor r = compute1(cast_node(DType::Float32, 13), {ints(DType::Int64, {1}, {v})});
  CHECK(r.get(0) == std::ldexp(1.0, 60) + std::ldexp(1.0, 37));
}

TEST_CASE("Cast works for every pair of supported types", "[elementwise]") {
  const DType types[] = {DType::Float32, DType::Float16, DType::Int8, DType::UInt8, DType::Int32,
                         DType::Int64,   DType::Bool,    DType::Int4, DType::UInt4};
  for (DType from : types) {
    // Small random integers are exact in every type (bool keeps nonzero as 1).
    Tensor x = Tensor::from_ints(from, {4}, random_tensor(DType::Int32, {4}, 0, 7).to_ints());
    for (DType to : types) {
      for (int64_t opset : {21, 25}) {
        INFO(dtype_name(from) << " -> " << dtype_name(to) << " opset " << opset);
        Tensor y = compute1(cast_node(to, opset), {x});
        REQUIRE(y.dtype() == to);
        REQUIRE(y.shape() == x.shape());
        for (int64_t i = 0; i < x.size(); ++i) CHECK(y.get(i) == (to == DType::Bool ? x.get(i) != 0 : x.get(i)));
      }
    }
  }
}

TEST_CASE("CastLike takes the type of input 1, and unsupported targets fail", "[elementwise]") {
  Tensor x = floats({3}, {1.5, -2.5, 9});
  Tensor like = ints(DType::Int4, {1}, {0});
  Node n = make_node("CastLike", 21, {{"saturate", int_attr(1)}});
  Tensor y = compute1(n, {x, like});
  CHECK(y.dtype() == DType::Int4);
  CHECK(y.to_ints() == std::vector<int64_t>{2, -2, 7});
  auto info = infer(n, {sym(DType::Float32, {d("N")}), sym(DType::Int4, {d(1)})});
  CHECK(info[0].dtype == DType::Int4);
  CHECK(info[0].shape[0].symbol == "N");

  Node to_double = cast_node(DType::Float64, 13);
  Error e = error_of([&] { compute1(to_double, {x}); });
  CHECK(e.kind() == ErrorKind::Unsupported);
  CHECK(std::string(e.what()).find("my_Cast") != std::string::npos);
  CHECK_THROWS_AS(infer(to_double, {sym(DType::Float32, {d(3)})}), Error);
  auto cast_info = infer(cast_node(DType::Int64, 13), {sym(DType::Float32, {d("batch"), d(2)})});
  CHECK(cast_info[0].dtype == DType::Int64);
  CHECK(cast_info[0].shape[0].symbol == "batch");
}

// ------------------------------------------------------------------------------------------------
// Reductions

namespace {
// Sum over axis 1 of a [2,3,4] tensor, by hand.
std::vector<double> sum_axis1(const Tensor& x) {
  std::vector<double> out(8, 0.0);
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 3; ++j)
      for (int64_t k = 0; k < 4; ++k) out[i * 4 + k] += x.get((i * 3 + j) * 4 + k);
  return out;
}
}  // namespace

TEST_CASE("ReduceSum: axes attribute before 13, input from 13", "[reduce]") {
  Tensor x = random_tensor(DType::Float32, {2, 3, 4});
  std::vector<double> expected = sum_axis1(x);
  Tensor old = compute1(make_node("ReduceSum", 11, {{"axes", ints_attr({-2})}}), {x});
  REQUIRE(old.shape() == Shape{2, 1, 4});
  Tensor axes = ints(DType::Int64, {1}, {1});
  Tensor now = compute1(make_node("ReduceSum", 13, {{"keepdims", int_attr(0)}}), {x, axes});
  REQUIRE(now.shape() == Shape{2, 4});
  for (int64_t i = 0; i < 8; ++i) {
    CHECK(old.get(i) == round_f(expected[i]));
    CHECK(now.get(i) == round_f(expected[i]));
  }
  SECTION("no axes: all, or nothing with noop_with_empty_axes") {
    double total = 0;
    for (double v : x.to_doubles()) total += v;
    Tensor all = compute1(make_node("ReduceSum", 13), {x});
    REQUIRE(all.shape() == Shape{1, 1, 1});
    CHECK(all.get(0) == round_f(total));
    Tensor all_old = compute1(make_node("ReduceSum", 11, {{"keepdims", int_attr(0)}}), {x});
    REQUIRE(all_old.shape() == Shape{});
    CHECK(all_old.get(0) == round_f(total));
    Tensor noop = compute1(make_node("ReduceSum", 13, {{"noop_with_empty_axes", int_attr(1)}}), {x, ints(DType::Int64, {0}, {})});
    CHECK(compare_tensors(noop, x, 0, 0) == "");
  }
  SECTION("integers sum exactly") {
    Tensor xi = ints(DType::Int64, {2, 2}, {int64_t(1) << 60, 1, 3, -4});
    Tensor y = compute1(make_node("ReduceSum", 13, {{"keepdims", int_attr(0)}}), {xi, ints(DType::Int64, {1}, {0})});
    CHECK(y.to_ints() == std::vector<int64_t>{(int64_t(1) << 60) + 3, -3});
  }
  SECTION("bad axes name the node") {
    Error e = error_of([&] { compute1(make_node("ReduceSum", 13), {x, ints(DType::Int64, {1}, {3})}); });
    CHECK(std::string(e.what()).find("my_ReduceSum") != std::string::npos);
    CHECK_THROWS_AS(compute1(make_node("ReduceSum", 13), {x, ints(DType::Int64, {2}, {1, -2})}), Error);
  }
}

TEST_CASE("ReduceMean: axes attribute before 18, input from 18", "[reduce]") {
  Tensor x = random_tensor(DType::Float16, {2, 3, 4});
  std::vector<double> sums = sum_axis1(x);
  Tensor old = compute1(make_node("ReduceMean", 13, {{"axes", ints_attr({1})}, {"keepdims", int_attr(0)}}), {x});
  Tensor now = compute1(make_node("ReduceMean", 18, {{"keepdims", int_attr(0)}}), {x, ints(DType::Int64, {1}, {1})});
  Tensor expected(DType::Float16, {2, 4});
  for (int64_t i = 0; i < 8; ++i) expected.set(i, sums[i] / 3);
  CHECK(compare_tensors(old, expected, 0, 0) == "");
  CHECK(compare_tensors(now, expected, 0, 0) == "");
  // Integer means truncate toward zero.
  Tensor xi = ints(DType::Int32, {2, 2}, {-3, -4, 5, 6});
  CHECK(compute1(make_node("ReduceMean", 18, {{"keepdims", int_attr(0)}}), {xi, ints(DType::Int64, {1}, {1})}).to_ints() ==
        std::vector<int64_t>{-3, 5});
}

TEST_CASE("reduce inference keeps symbolic dims", "[reduce]") {
  ValueInfo x = sym(DType::Float32, {d("N"), d(3), d("T")});
  Tensor axes = ints(DType::Int64, {1}, {-1});
  auto out = infer(make_node("ReduceMean", 18, {{"keepdims", int_attr(0)}}), {x, make_info(DType::Int64, Shape{1})}, {nullptr, &axes});
  REQUIRE(out[0].shape.size() == 2);
  CHECK(out[0].shape[0].symbol == "N");
  CHECK(out[0].shape[1].value == 3);
  auto kept = infer(make_node("ReduceSum", 11, {{"axes", ints_attr({0})}}), {x});
  REQUIRE(kept[0].shape.size() == 3);
  CHECK(kept[0].shape[0].value == 1);
  CHECK(kept[0].shape[2].symbol == "T");
  // Axes known only at run time: keepdims keeps the rank, otherwise the rank is unknown.
  auto runtime_axes = infer(make_node("ReduceSum", 13), {x, make_info(DType::Int64, Shape{1})});
  CHECK(runtime_axes[0].has_shape);
  CHECK(runtime_axes[0].shape.size() == 3);
  auto dropped = infer(make_node("ReduceSum", 13, {{"keepdims", int_attr(0)}}), {x, make_info(DType::Int64, Shape{1})});
  CHECK_FALSE(dropped[0].has_shape);
}

TEST_CASE("Softmax: 2-D coercion before opset 13, single axis from 13", "[reduce]") {
  Tensor x = random_tensor(DType::Float32, {2, 3, 4}, -3, 3);
  // opset 11, axis 1: each of the 2 rows of 12 elements sums to one.
  Tensor old = compute1(make_node("Softmax", 11), {x});
  for (int64_t r = 0; r < 2; ++r) {
    double denom = 0;
    for (int64_t k = 0; k < 12; ++k) denom += std::exp(x.get(r * 12 + k));
    for (int64_t k = 0; k < 12; ++k) CHECK(old.get(r * 12 + k) == Approx(std::exp(x.get(r * 12 + k)) / denom).epsilon(1e-6));
  }
  // opset 13, axis 1: softmax down each column of 3.
  Tensor now = compute1(make_node("Softmax", 13, {{"axis", int_attr(1)}}), {x});
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t k = 0; k < 4; ++k) {
      double denom = 0;
      for (int64_t j = 0; j < 3; ++j) denom += std::exp(x.get((i * 3 + j) * 4 + k));
      for (int64_t j = 0; j < 3; ++j) {
        int64_t at = (i * 3 + j) * 4 + k;
        CHECK(now.get(at) == Approx(std::exp(x.get(at)) / denom).epsilon(1e-6));
      }
    }
  // opset 13 default axis -1; large inputs stay finite thanks to the max subtraction.
  Tensor big = floats({1, 3}, {1000, 1000, 1000 - std::log(2.0)});
  Tensor y = compute1(make_node("Softmax", 13), {big});
  CHECK(y.get(0) == Approx(0.4).margin(1e-4));
  CHECK(y.get(2) == Approx(0.2).margin(1e-4));
  // opset 1..12 default axis 1 on a 2-D input equals opset 13's default.
  Tensor x2 = random_tensor(DType::Float16, {3, 5}, -2, 2);
  CHECK(compare_tensors(compute1(make_node("Softmax", 11), {x2}), compute1(make_node("Softmax", 13), {x2}), 0, 0) == "");
  Error e = error_of([&] { compute1(make_node("Softmax", 13, {{"axis", int_attr(3)}}), {x}); });
  CHECK(std::string(e.what()).find("my_Softmax") != std::string::npos);
  auto info = infer(make_node("Softmax", 13), {sym(DType::Float32, {d("N"), d(10)})});
  CHECK(info[0].shape[0].symbol == "N");
}

TEST_CASE("LayerNormalization matches the formula, with Mean and InvStdDev", "[reduce]") {
  Tensor x = random_tensor(DType::Float32, {2, 3, 4}, -2, 2);
  for (int64_t axis : {-1, 1}) {
    INFO("axis " << axis);
    int64_t n = axis == -1 ? 4 : 12, outer = 24 / n;
    Tensor scale = random_tensor(DType::Float32, axis == -1 ? Shape{4} : Shape{3, 4}, 0.5, 1.5);
    Tensor bias = random_tensor(DType::Float32, axis == -1 ? Shape{4} : Shape{3, 4});
    Node node = make_node("LayerNormalization", 17, {{"axis", int_attr(axis)}, {"epsilon", float_attr(1e-3)}});
    node.outputs = {"y", "mean", "inv_std"};
    auto out = compute(node, {x, scale, bias});
    REQUIRE(out.size() == 3);
    Shape stat = axis == -1 ? Shape{2, 3, 1} : Shape{2, 1, 1};
    CHECK(out[1].shape() == stat);
    CHECK(out[2].dtype() == DType::Float32);
    for (int64_t o = 0; o < outer; ++o) {
      double mean = 0, var = 0;
      for (int64_t k = 0; k < n; ++k) mean += x.get(o * n + k) / n;
      for (int64_t k = 0; k < n; ++k) var += (x.get(o * n + k) - mean) * (x.get(o * n + k) - mean) / n;
      double inv = 1 / std::sqrt(var + 1e-3);
      CHECK(out[1].get(o) == Approx(mean).margin(1e-6));
      CHECK(out[2].get(o) == Approx(inv).epsilon(1e-6));
      for (int64_t k = 0; k < n; ++k) {
        double want = (x.get(o * n + k) - mean) * inv * scale.get(k) + bias.get(k);
        CHECK(out[0].get(o * n + k) == Approx(want).epsilon(1e-5).margin(1e-6));
      }
    }
    auto info = infer(node, {sym(DType::Float32, {d("B"), d(3), d(4)}), sym(DType::Float32, {d(4)})});
    REQUIRE(info.size() == 3);
    CHECK(info[0].shape[0].symbol == "B");
    CHECK(info[1].shape[0].symbol == "B");
    CHECK(info[1].shape[2].value == 1);
  }
  SECTION("B is optional; only Y when one output is asked") {
    Tensor scale = random_tensor(DType::Float32, {4}, 0.5, 1.5);
    auto out = compute(make_node("LayerNormalization", 17), {x, scale});
    CHECK(out.size() == 1);
    CHECK_THROWS_AS(compute(make_node("LayerNormalization", 17), {x, random_tensor(DType::Float32, {5})}), Error);
  }
}

TEST_CASE("BatchNormalization in inference mode", "[reduce]") {
  Tensor x = random_tensor(DType::Float32, {2, 3, 2, 2}, -2, 2);
  Tensor scale = random_tensor(DType::Float32, {3}, 0.5, 1.5), bias = random_tensor(DType::Float32, {3});
  Tensor mean = random_tensor(DType::Float32, {3}), var = random_tensor(DType::Float32, {3}, 0.1, 2);
  Node n = make_node("BatchNormalization", 15, {{"epsilon", float_attr(1e-4)}});
  Tensor y = compute1(n, {x, scale, bias, mean, var});
  for (int64_t i = 0; i < x.size(); ++i) {
    int64_t c = (i / 4) % 3;
    double want = (x.get(i) - mean.get(c)) / std::sqrt(var.get(c) + 1e-4) * scale.get(c) + bias.get(c);
    CHECK(y.get(i) == Approx(want).epsilon(1e-6).margin(1e-6));
  }
  auto info = infer(n, {sym(DType::Float32, {d("N"), d(3), d("H"), d("W")}), sym(DType::Float32, {d(3)}),
                        sym(DType::Float32, {d(3)}), sym(DType::Float32, {d(3)}), sym(DType::Float32, {d(3)})});
  CHECK(info[0].shape[2].symbol == "H");
  CHECK_THROWS_AS(compute1(n, {x, random_tensor(DType::Float32, {4}), bias, mean, var}), Error);

  Node training = make_node("BatchNormalization", 15);
  training.outputs = {"y", "running_mean", "running_var"};
  Error e = error_of([&] { compute1(training, {x, scale, bias, mean, var}); });
  CHECK(e.kind() == ErrorKind::Unsupported);
  CHECK(std::string(e.what()).find("BatchNormalization 'my_BatchNormalization'") != std::string::npos);
}

// Comparisons (float and int64, with equal values present and broadcasting) and logic on their bool
// results, against ONNX Runtime, on the reference and the Halide backends.
TEST_CASE("Comparisons and logic match ONNX Runtime", "[ops][predicates]") {
  if (!require_ort()) return;
  ModelBuilder b(17, "predicates");
  b.input("a", DType::Float32, {3, 4}).input("b", DType::Float32, {4});
  b.input("i", DType::Int64, {3, 4}).input("j", DType::Int64, {1, 4});
  const std::vector<std::string> outputs = {"eq", "lt", "le", "gt", "ge", "ilt", "ige", "and", "or", "xor", "not"};
  for (const std::string& o : outputs) b.output(o, DType::Bool);
  b.node("Equal", {"a", "b"}, {"eq"});
  b.node("Less", {"a", "b"}, {"lt"});
  b.node("LessOrEqual", {"a", "b"}, {"le"});
  b.node("Greater", {"a", "b"}, {"gt"});
  b.node("GreaterOrEqual", {"a", "b"}, {"ge"});
  b.node("Less", {"i", "j"}, {"ilt"});
  b.node("GreaterOrEqual", {"i", "j"}, {"ige"});
  b.node("And", {"lt", "ilt"}, {"and"});
  b.node("Or", {"gt", "ilt"}, {"or"});
  b.node("Xor", {"le", "ige"}, {"xor"});
  b.node("Not", {"eq"}, {"not"});
  const std::string model = b.save(temp_dir("predicates") + "/predicates.onnx");
  // Values on a coarse grid, so that equal pairs occur.
  auto grid = [](DType dtype, const Shape& shape) {
    Tensor t = random_tensor(DType::Float32, shape, -2, 2);
    Tensor out(dtype, shape);
    for (int64_t k = 0; k < t.size(); ++k) out.set(k, std::round(t.get(k)));
    return out;
  };
  const std::vector<Tensor> inputs = {grid(DType::Float32, {3, 4}), grid(DType::Float32, {4}),
                                      grid(DType::Int64, {3, 4}), grid(DType::Int64, {1, 4})};
  const std::vector<Tensor> theirs = run_ort(model, inputs);
  for (Backend backend : {Backend::Reference, Backend::Halide}) {
    const std::vector<Tensor> ours = run_tetra(model, inputs, nullptr, backend);
    REQUIRE(ours.size() == outputs.size());
    for (size_t o = 0; o < outputs.size(); ++o) {
      INFO(outputs[o] << (backend == Backend::Reference ? " (reference)" : " (halide)"));
      CHECK(ours[o].dtype() == DType::Bool);
      CHECK(compare_tensors(ours[o], theirs[o], 0, 0) == "");
    }
  }
  // The logic operators take bools only.
  ModelBuilder bad(17, "bad_and");
  bad.input("a", DType::Float32, {2}).output("y", DType::Bool);
  bad.node("And", {"a", "a"}, {"y"});
  CHECK_THROWS_WITH(run_tetra(bad.save(temp_dir("predicates") + "/bad.onnx"), {random_tensor(DType::Float32, {2})}),
                    Catch::Contains("And") && Catch::Contains("float32 is not supported"));
}
