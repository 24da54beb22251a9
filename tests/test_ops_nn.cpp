// Reference kernels of the nn and tensor op families, against hand-computed cases and naive formulas.
#include <catch2/catch.hpp>

#include <cmath>

#include "importer/error.h"
#include "runtime/op_registry.h"
#include "runtime/ops/conv_core.h"
#include "tools/model_builder.h"
#include "tests/ort_oracle.h"
#include "tests/test_support.h"

using namespace tetra;
using tetra::test::compare_tensors;
using tetra::test::random_tensor;

namespace {


Node make_node(const std::string& op, int64_t opset, size_t inputs, size_t outputs = 1) {
  Node n;
  n.name = "node_" + op;
  n.op_type = op;
  n.opset = opset;
  for (size_t i = 0; i < inputs; ++i) n.inputs.push_back("in" + std::to_string(i));
  for (size_t i = 0; i < outputs; ++i) n.outputs.push_back("out" + std::to_string(i));
  return n;
}

const OpDef& op(const std::string& type) {
  const OpDef* d = OpRegistry::get().find("", type);
  REQUIRE(d != nullptr);
  return *d;
}

std::vector<Tensor> run(const Node& n, const std::vector<Tensor>& in) { return op(n.op_type).compute(n, in); }
Tensor run1(const Node& n, const std::vector<Tensor>& in) {
  auto out = run(n, in);
  REQUIRE(out.size() >= 1);
  return out[0];
}

// Infers with the given input infos; `constants` (same length or shorter) hold known values.
std::vector<ValueInfo> infer(const Node& n, const std::vector<ValueInfo>& in, const std::vector<const Tensor*>& constants = {}) {
  InferContext ctx{n, {}, constants};
  for (const ValueInfo& v : in) ctx.inputs.push_back(v.dtype == DType::Undefined ? nullptr : &v);
  return op(n.op_type).infer(ctx);
}

Tensor f32(Shape s, std::vector<double> v) { return Tensor::from_doubles(DType::Float32, std::move(s), v); }
Tensor i64(Shape s, std::vector<int64_t> v) { return Tensor::from_ints(DType::Int64, std::move(s), v); }
Tensor i64v(std::vector<int64_t> v) {
  Shape s{int64_t(v.size())};
  return i64(s, v);
}

void require_close(const Tensor& got, const Tensor& expected, double atol = 1e-5, double rtol = 1e-5) {
  INFO(compare_tensors(got, expected, atol, rtol));
  REQUIRE(compare_tensors(got, expected, atol, rtol).empty());
}

// Expects an Error of `kind` whose message names the node.
template <class F>
void require_error(F&& f, const Node& n, ErrorKind kind = ErrorKind::Invalid) {
  try {
    f();
    FAIL("expected an error");
  } catch (const Error& e) {
    INFO(e.what());
    REQUIRE(std::string(e.what()).find(n.name) != std::string::npos);
    REQUIRE(e.kind() == kind);
  }
}

int64_t rand_int(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(test::rng()); }

// ---- naive direct convolution, written from the ONNX formula, independently of conv_core ------------

struct ConvCase {
  int64_t n, c, m, group;
  Shape in, k, stride, dil, pb, pe;
};

Tensor naive_conv(const ConvCase& cc, const Tensor& x, const Tensor& w, const Tensor* b) {
  const size_t R = cc.in.size();
  Shape out;
  for (size_t d = 0; d < R; ++d) out.push_back((cc.in[d] + cc.pb[d] + cc.pe[d] - cc.dil[d] * (cc.k[d] - 1) - 1) / cc.stride[d] + 1);
  Shape y_shape{cc.n, cc.m};
  y_shape.insert(y_shape.end(), out.begin(), out.end());
  Tensor y(DType::Float32, y_shape);
  const int64_t cg = cc.c / cc.group, mg = cc.m / cc.group;
  int64_t out_sp = num_elements(out), k_sp = num_elements(cc.k), in_sp = num_elements(cc.in);
  auto os = strides_of(out), ks = strides_of(cc.k), is = strides_of(cc.in);
  for (int64_t n = 0; n < cc.n; ++n)
    for (int64_t m = 0; m < cc.m; ++m)
      for (int64_t o = 0; o < out_sp; ++o) {
        double acc = b ? b->get(m) : 0.0;
        for (int64_t c = 0; c < cg; ++c)
          for (int64_t k = 0; k < k_sp; ++k) {
            int64_t flat = 0;
            bool inside = true;
            for (size_t d = 0; d < R; ++d) {
              int64_t pos = (o / os[d] % out[d]) * cc.stride[d] - cc.pb[d] + (k / ks[d] % cc.k[d]) * cc.dil[d];
              inside = inside && pos >= 0 && pos < cc.in[d];
              flat += pos * is[d];
            }
            if (!inside) continue;
            int64_t ci = (m / mg) * cg + c;
            acc += x.get((n * cc.c + ci) * in_sp + flat) * w.get((m * cg + c) * k_sp + k);
          }
        y.set((n * cc.m + m) * out_sp + o, acc);
      }
  return y;
}

Node conv_node(const ConvCase& cc) {
  Node n = make_node("Conv", 17, 3);
  n.attrs["group"] = int_attr(cc.group);
  n.attrs["strides"] = ints_attr(cc.stride);
  n.attrs["dilations"] = ints_attr(cc.dil);
  Shape pads = cc.pb;
  pads.insert(pads.end(), cc.pe.begin(), cc.pe.end());
  n.attrs["pads"] = ints_attr(pads);
  n.attrs["kernel_shape"] = ints_attr(cc.k);
  return n;
}

}  // namespace

// =====================================================================================================
// MatMul / Gemm
// =====================================================================================================

TEST_CASE("MatMul 2-D hand example", "[nn]") {
  Node n = make_node("MatMul", 13, 2);
  Tensor a = f32({2, 3}, {1, 2, 3, 4, 5, 6}), b = f32({3, 2}, {7, 8, 9, 10, 11, 12});
  require_close(run1(n, {a, b}), f32({2, 2}, {58, 64, 139, 154}));
}

TEST_CASE("MatMul 1-D promotion and batch broadcasting", "[nn]") {
  Node n = make_node("MatMul", 13, 2);
  Tensor v = f32({3}, {1, -2, 0.5});
  Tensor m = random_tensor(DType::Float32, {3, 4});
  // [3] x [3,4] -> [4]
  Tensor y = run1(n, {v, m});
  REQUIRE(y.shape() == Shape{4});
  for (int64_t j = 0; j < 4; ++j)
    REQUIRE(y.get(j) == Approx(1 * m.get(j) - 2 * m.get(4 + j) + 0.5 * m.get(8 + j)).margin(1e-6));
  // [4,3] x [3] -> [4]
  Tensor mt = random_tensor(DType::Float32, {4, 3});
  REQUIRE(run1(n, {mt, v}).shape() == Shape{4});
  // [3] x [3] -> []
  Tensor dot = run1(n, {v, v});
  REQUIRE(dot.shape() == Shape{});
  REQUIRE(dot.get(0) == Approx(5.25));

  // Batch broadcast [2,1,2,3] x [3,3,2] -> [2,3,2,2]; each batch equals the 2-D product.
  Tensor a = random_tensor(DType::Float32, {2, 1, 2, 3}), b = random_tensor(DType::Float32, {3, 3, 2});
  Tensor c = run1(n, {a, b});
  REQUIRE(c.shape() == Shape{2, 3, 2, 2});
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 3; ++j)
      for (int64_t r = 0; r < 2; ++r)
        for (int64_t col = 0; col < 2; ++col) {
          double e = 0;
          for (int64_t k = 0; k < 3; ++k) e += a.get(i * 6 + r * 3 + k) * b.get(j * 6 + k * 2 + col);
          REQUIRE(c.get(((i * 3 + j) * 2 + r) * 2 + col) == Approx(e).margin(1e-6));
        }

  // Inference: symbolic batch, 1-D removal.
  ValueInfo ai = make_info(DType::Float32, SymbolicShape{Dim{-1, "batch"}, Dim{5, ""}, Dim{3, ""}});
  ValueInfo bi = make_info(DType::Float32, Shape{3});
  auto out = infer(n, {ai, bi});
  REQUIRE(shape_str(out[0].shape) == "[batch,5]");
}

TEST_CASE("MatMul errors name the node", "[nn]") {
  Node n = make_node("MatMul", 13, 2);
  n.name = "mm_bad";
  require_error([&] { run(n, {random_tensor(DType::Float32, {2, 3}), random_tensor(DType::Float32, {4, 2})}); }, n);
  require_error([&] { run(n, {random_tensor(DType::Float32, {2, 2, 3}), random_tensor(DType::Float32, {3, 3, 2})}); }, n);
  require_error([&] { infer(n, {make_info(DType::Float32, Shape{2, 3}), make_info(DType::Float32, Shape{4, 2})}); }, n);
  require_error([&] { run(n, {random_tensor(DType::Int32, {2, 3}, -5, 5), random_tensor(DType::Int32, {3, 2}, -5, 5)}); }, n,
                ErrorKind::Unsupported);
}

TEST_CASE("Gemm every attribute combination and bias shape", "[nn]") {
  const int64_t M = 3, K = 4, N = 2;
  Tensor a = random_tensor(DType::Float32, {M, K}), b = random_tensor(DType::Float32, {K, N});
  auto transpose = [](const Tensor& t) {
    Tensor r(t.dtype(), {t.shape()[1], t.shape()[0]});
    for (int64_t i = 0; i < t.shape()[0]; ++i)
      for (int64_t j = 0; j < t.shape()[1]; ++j) r.set(j * t.shape()[0] + i, t.get(i * t.shape()[1] + j));
    return r;
  };
  std::vector<Shape> bias_shapes{{}, {1}, {N}, {1, N}, {M, 1}, {M, N}};
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (int with_bias = 0; with_bias <= int(bias_shapes.size()); ++with_bias) {
        Node n = make_node("Gemm", 13, with_bias ? 3 : 2);
        n.attrs["transA"] = int_attr(ta);
        n.attrs["transB"] = int_attr(tb);
        n.attrs["alpha"] = float_attr(0.5);
        n.attrs["beta"] = float_attr(-2.0);
        std::vector<Tensor> in{ta ? transpose(a) : a, tb ? transpose(b) : b};
        Tensor c;
        if (with_bias) {
          c = random_tensor(DType::Float32, bias_shapes[with_bias - 1]);
          in.push_back(c);
        }
        INFO("transA=" << ta << " transB=" << tb << " bias#" << with_bias);
        Tensor y = run1(n, in);
        REQUIRE(y.shape() == Shape{M, N});
        std::vector<int64_t> cmap = with_bias ? broadcast_index_map(c.shape(), {M, N}) : std::vector<int64_t>{};
        for (int64_t i = 0; i < M; ++i)
          for (int64_t j = 0; j < N; ++j) {
            double e = 0;
            for (int64_t k = 0; k < K; ++k) e += a.get(i * K + k) * b.get(k * N + j);
            e *= 0.5;
            if (with_bias) e += -2.0 * c.get(cmap[i * N + j]);
            REQUIRE(y.get(i * N + j) == Approx(e).margin(1e-5));
          }
        std::vector<ValueInfo> infos{make_info(DType::Float32, in[0].shape()), make_info(DType::Float32, in[1].shape())};
        if (with_bias) infos.push_back(make_info(DType::Float32, c.shape()));
        REQUIRE(to_shape(infer(n, infos)[0].shape) == Shape{M, N});
      }
}

TEST_CASE("Gemm rejects a bias that does not broadcast unidirectionally", "[nn]") {
  Node n = make_node("Gemm", 13, 3);
  n.name = "gemm_bias";
  Tensor a = random_tensor(DType::Float32, {3, 4}), b = random_tensor(DType::Float32, {4, 2});
  require_error([&] { run(n, {a, b, random_tensor(DType::Float32, {3})}); }, n);
  require_error([&] { run(n, {a, b, random_tensor(DType::Float32, {2, 3, 2})}); }, n);
  require_error([&] { run(n, {a, random_tensor(DType::Float32, {3, 2})}); }, n);
}

// =====================================================================================================
// Conv
// =====================================================================================================

TEST_CASE("Conv 2-D hand example with padding and bias", "[nn]") {
  Node n = make_node("Conv", 11, 3);
  n.attrs["pads"] = ints_attr({1, 1, 1, 1});
  Tensor x = f32({1, 1, 2, 2}, {1, 2, 3, 4});
  Tensor w = f32({1, 1, 3, 3}, {0, 0, 0, 0, 1, 1, 0, 1, 1});  // sums x[i..i+1, j..j+1]
  Tensor b = f32({1}, {0.5});
  require_close(run1(n, {x, w, b}), f32({1, 1, 2, 2}, {10.5, 6.5, 7.5, 4.5}));
}

TEST_CASE("Conv matches the direct formula on random shapes", "[nn]") {
  for (int iter = 0; iter < 40; ++iter) {
    ConvCase cc;
    const int64_t R = 1 + iter % 3;
    cc.group = std::vector<int64_t>{1, 2, 3}[rand_int(0, 2)];
    cc.n = rand_int(1, 2);
    cc.c = cc.group * rand_int(1, 2);
    cc.m = cc.group * rand_int(1, 2);
    if (iter % 5 == 0) cc.m = cc.c;  // depthwise when group == C
    for (int64_t d = 0; d < R; ++d) {
      cc.k.push_back(rand_int(1, 3));
      cc.stride.push_back(rand_int(1, 3));
      cc.dil.push_back(rand_int(1, 2));
      cc.pb.push_back(rand_int(0, 2));
      cc.pe.push_back(rand_int(0, 2));
      int64_t span = (cc.k.back() - 1) * cc.dil.back() + 1;
      cc.in.push_back(std::max<int64_t>(span, rand_int(1, R == 3 ? 5 : 8)));
    }
    if (iter % 5 == 0) cc.group = cc.c;
    Shape xs{cc.n, cc.c}, ws{cc.m, cc.c / cc.group};
    xs.insert(xs.end(), cc.in.begin(), cc.in.end());
    ws.insert(ws.end(), cc.k.begin(), cc.k.end());
    Tensor x = random_tensor(DType::Float32, xs), w = random_tensor(DType::Float32, ws),
           b = random_tensor(DType::Float32, {cc.m});
    Node n = conv_node(cc);
    INFO("iter " << iter << " x " << shape_str(xs) << " w " << shape_str(ws) << " group " << cc.group);
    bool with_bias = iter % 2 == 0;
    Tensor y = run1(n, with_bias ? std::vector<Tensor>{x, w, b} : std::vector<Tensor>{x, w});
    require_close(y, naive_conv(cc, x, w, with_bias ? &b : nullptr));
    // Inference agrees with the computed shape, and keeps a symbolic batch.
    SymbolicShape sx = to_symbolic(xs);
    sx[0] = Dim{-1, "N"};
    auto info = infer(n, {make_info(DType::Float32, sx), make_info(DType::Float32, ws)});
    SymbolicShape expect = to_symbolic(y.shape());
    expect[0] = Dim{-1, "N"};
    REQUIRE(shape_str(info[0].shape) == shape_str(expect));
  }
}

TEST_CASE("Conv auto_pad SAME_UPPER, SAME_LOWER and VALID", "[nn]") {
  for (const char* mode : {"SAME_UPPER", "SAME_LOWER", "VALID"})
    for (int64_t stride : {1, 2, 3})
      for (int64_t in : {5, 6, 7}) {
        ConvCase cc{1, 2, 3, 1, {in, in - 1}, {3, 2}, {stride, stride}, {1, 2}, {0, 0}, {0, 0}};
        Node n = conv_node(cc);
        n.attrs.erase("pads");
        n.attrs["auto_pad"] = string_attr(mode);
        // Expected padding, from the spec's formulas.
        for (size_t d = 0; d < 2; ++d) {
          if (std::string(mode) == "VALID") continue;
          int64_t out = (cc.in[d] + stride - 1) / stride;
          int64_t total = std::max<int64_t>(0, (out - 1) * stride + (cc.k[d] - 1) * cc.dil[d] + 1 - cc.in[d]);
          int64_t small = total / 2, big = total - small;
          cc.pb[d] = std::string(mode) == "SAME_UPPER" ? small : big;
          cc.pe[d] = total - cc.pb[d];
        }
        Tensor x = random_tensor(DType::Float32, {1, 2, cc.in[0], cc.in[1]}), w = random_tensor(DType::Float32, {3, 2, 3, 2});
        INFO(mode << " stride " << stride << " in " << in);
        Tensor y = run1(n, {x, w});
        require_close(y, naive_conv(cc, x, w, nullptr));
        if (std::string(mode) != "VALID") {
          REQUIRE(y.shape()[2] == (cc.in[0] + stride - 1) / stride);
          REQUIRE(y.shape()[3] == (cc.in[1] + stride - 1) / stride);
        }
      }
}

TEST_CASE("Conv float16 rounds once to half", "[nn]") {
  Node n = make_node("Conv", 11, 2);
  Tensor x = random_tensor(DType::Float16, {1, 2, 4, 4}), w = random_tensor(DType::Float16, {2, 2, 3, 3});
  Tensor y = run1(n, {x, w});
  REQUIRE(y.dtype() == DType::Float16);
  ConvCase cc{1, 2, 2, 1, {4, 4}, {3, 3}, {1, 1}, {1, 1}, {0, 0}, {0, 0}};
  Tensor e = naive_conv(cc, x, w, nullptr);
  for (int64_t i = 0; i < y.size(); ++i) REQUIRE(y.get(i) == half_to_float(double_to_half(e.get(i))));
}

TEST_CASE("Conv errors on bad shapes name the node", "[nn]") {
  Node n = make_node("Conv", 11, 3);
  n.name = "conv_bad";
  Tensor x = random_tensor(DType::Float32, {1, 4, 5, 5});
  // channel mismatch
  require_error([&] { run(n, {x, random_tensor(DType::Float32, {2, 3, 3, 3})}); }, n);
  // kernel larger than the input
  require_error([&] { run(n, {x, random_tensor(DType::Float32, {2, 4, 7, 7})}); }, n);
  // wrong bias length
  require_error([&] { run(n, {x, random_tensor(DType::Float32, {2, 4, 3, 3}), random_tensor(DType::Float32, {3})}); }, n);
  // group that does not divide the channels
  Node g = n;
  g.attrs["group"] = int_attr(3);
  require_error([&] { run(g, {x, random_tensor(DType::Float32, {3, 1, 3, 3})}); }, g);
  // kernel_shape that disagrees with the weight
  Node k = n;
  k.attrs["kernel_shape"] = ints_attr({2, 2});
  require_error([&] { run(k, {x, random_tensor(DType::Float32, {2, 4, 3, 3})}); }, k);
  require_error([&] {
    infer(k, {make_info(DType::Float32, x.shape()), make_info(DType::Float32, Shape{2, 4, 3, 3})});
  }, k);
  // pads of the wrong length
  Node p = n;
  p.attrs["pads"] = ints_attr({1, 1});
  require_error([&] { run(p, {x, random_tensor(DType::Float32, {2, 4, 3, 3})}); }, p);
}

// =====================================================================================================
// ConvTranspose
// =====================================================================================================

TEST_CASE("ConvTranspose hand example", "[nn]") {
  Node n = make_node("ConvTranspose", 11, 2);
  n.attrs["strides"] = ints_attr({2});
  Tensor x = f32({1, 1, 2}, {1, 2}), w = f32({1, 1, 3}, {1, 10, 100});
  // x0 at 0..2, x1 at 2..4, overlapping at 2.
  require_close(run1(n, {x, w}), f32({1, 1, 5}, {1, 10, 102, 20, 200}));
  Node p = n;
  p.attrs["pads"] = ints_attr({1, 0});
  p.attrs["output_padding"] = ints_attr({1});
  require_close(run1(p, {x, w}), f32({1, 1, 5}, {10, 102, 20, 200, 0}));
}

// <Conv(x, w), y> == <x, ConvTranspose(y, w)> for the same attributes: ConvTranspose is the adjoint.
TEST_CASE("ConvTranspose is the adjoint of Conv", "[nn]") {
  for (int iter = 0; iter < 30; ++iter) {
    const int64_t R = 1 + iter % 2;
    const int64_t group = rand_int(1, 2), c = group * rand_int(1, 2), m = group * rand_int(1, 2);
    Shape in, k, stride, dil, pads(2 * R);
    for (int64_t d = 0; d < R; ++d) {
      k.push_back(rand_int(1, 3));
      stride.push_back(rand_int(1, 3));
      dil.push_back(rand_int(1, 2));
      pads[d] = rand_int(0, 1);
      pads[d + R] = rand_int(0, 1);
      in.push_back(std::max<int64_t>((k.back() - 1) * dil.back() + 1, rand_int(2, 7)));
    }
    Node conv = make_node("Conv", 17, 2);
    conv.attrs["group"] = int_attr(group);
    conv.attrs["strides"] = ints_attr(stride);
    conv.attrs["dilations"] = ints_attr(dil);
    conv.attrs["pads"] = ints_attr(pads);
    Shape xs{1, c}, ws{m, c / group};
    xs.insert(xs.end(), in.begin(), in.end());
    ws.insert(ws.end(), k.begin(), k.end());
    Tensor x = random_tensor(DType::Float32, xs), w = random_tensor(DType::Float32, ws);
    Tensor cx = run1(conv, {x, w});
    // ConvTranspose's weight is [C_in_of_transpose = m, c/group]: the same tensor viewed per group.
    Node ct = conv;
    ct.op_type = "ConvTranspose";
    // output_padding recovers input sizes that the strided conv rounded away.
    Shape adj;
    for (int64_t d = 0; d < R; ++d) {
      int64_t natural = stride[d] * (cx.shape()[2 + d] - 1) + (k[d] - 1) * dil[d] + 1 - pads[d] - pads[d + R];
      adj.push_back(in[d] - natural);
    }
    ct.attrs["output_padding"] = ints_attr(adj);
    Tensor y = random_tensor(DType::Float32, cx.shape());
    // Reinterpret w [m, c/g, k] as [m, c/g, k] = ConvTranspose's [C=m, M/group=c/g, k].
    Tensor ty = run1(ct, {y, w});
    INFO("iter " << iter << " x " << shape_str(xs) << " w " << shape_str(ws) << " group " << group);
    REQUIRE(ty.shape() == x.shape());
    double lhs = 0, rhs = 0;
    for (int64_t i = 0; i < cx.size(); ++i) lhs += cx.get(i) * y.get(i);
    for (int64_t i = 0; i < x.size(); ++i) rhs += x.get(i) * ty.get(i);
    REQUIRE(lhs == Approx(rhs).epsilon(1e-4).margin(1e-4));
  }
}

TEST_CASE("ConvTranspose output_shape, auto_pad and bias", "[nn]") {
  Tensor x = random_tensor(DType::Float32, {1, 2, 3, 3}), w = random_tensor(DType::Float32, {2, 3, 3, 3});
  Tensor b = f32({3}, {1, 2, 3});
  Node base = make_node("ConvTranspose", 11, 3);
  base.attrs["strides"] = ints_attr({2, 2});
  Tensor full = run1(base, {x, w, b});
  REQUIRE(full.shape() == Shape{1, 3, 7, 7});
  // output_shape 6x6 crops one pixel: at the beginning (NOTSET) per the spec's formula.
  Node os = base;
  os.attrs["output_shape"] = ints_attr({6, 6});
  Tensor cropped = run1(os, {x, w, b});
  REQUIRE(cropped.shape() == Shape{1, 3, 6, 6});
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t i = 0; i < 6; ++i)
      for (int64_t j = 0; j < 6; ++j) REQUIRE(cropped.get((c * 6 + i) * 6 + j) == full.get((c * 7 + i + 1) * 7 + j + 1));
  // SAME_UPPER: output = in * stride, the odd pixel cropped at the end.
  Node su = base;
  su.attrs["auto_pad"] = string_attr("SAME_UPPER");
  Tensor same = run1(su, {x, w, b});
  REQUIRE(same.shape() == Shape{1, 3, 6, 6});
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t i = 0; i < 6; ++i)
      for (int64_t j = 0; j < 6; ++j) REQUIRE(same.get((c * 6 + i) * 6 + j) == full.get((c * 7 + i) * 7 + j));
  auto info = infer(su, {make_info(DType::Float32, x.shape()), make_info(DType::Float32, w.shape())});
  REQUIRE(to_shape(info[0].shape) == Shape{1, 3, 6, 6});
  // groups: each group of input channels feeds its own output channels.
  Node g = make_node("ConvTranspose", 11, 2);
  g.attrs["group"] = int_attr(2);
  Tensor wg = random_tensor(DType::Float32, {2, 1, 2, 2});
  Tensor yg = run1(g, {x, wg});
  REQUIRE(yg.shape() == Shape{1, 2, 4, 4});
  Node single = make_node("ConvTranspose", 11, 2);
  for (int64_t c = 0; c < 2; ++c) {
    Tensor xc(DType::Float32, {1, 1, 3, 3}), wc(DType::Float32, {1, 1, 2, 2});
    for (int64_t i = 0; i < 9; ++i) xc.set(i, x.get(c * 9 + i));
    for (int64_t i = 0; i < 4; ++i) wc.set(i, wg.get(c * 4 + i));
    Tensor yc = run1(single, {xc, wc});
    for (int64_t i = 0; i < 16; ++i) REQUIRE(yg.get(c * 16 + i) == Approx(yc.get(i)));
  }
}

// =====================================================================================================
// Pools
// =====================================================================================================

TEST_CASE("MaxPool and AveragePool hand examples", "[nn]") {
  Tensor x = f32({1, 1, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  Node mp = make_node("MaxPool", 12, 1);
  mp.attrs["kernel_shape"] = ints_attr({2, 2});
  require_close(run1(mp, {x}), f32({1, 1, 2, 2}, {5, 6, 8, 9}));

  // stride 2 with ceil_mode: the partial last window is kept.
  Node mc = mp;
  mc.attrs["strides"] = ints_attr({2, 2});
  require_close(run1(mc, {x}), f32({1, 1, 1, 1}, {5}));
  mc.attrs["ceil_mode"] = int_attr(1);
  require_close(run1(mc, {x}), f32({1, 1, 2, 2}, {5, 6, 8, 9}));

  // pads: padding never wins a max.
  Tensor neg = f32({1, 1, 2, 2}, {-1, -2, -3, -4});
  Node mpad = mp;
  mpad.attrs["pads"] = ints_attr({1, 1, 0, 0});
  require_close(run1(mpad, {neg}), f32({1, 1, 2, 2}, {-1, -1, -1, -1}));

  // AveragePool with pads: count_include_pad decides the divisor.
  Node ap = make_node("AveragePool", 11, 1);
  ap.attrs["kernel_shape"] = ints_attr({2, 2});
  ap.attrs["pads"] = ints_attr({1, 1, 1, 1});
  ap.attrs["strides"] = ints_attr({2, 2});
  require_close(run1(ap, {x}), f32({1, 1, 2, 2}, {1, 2.5, 5.5, 7}));
  ap.attrs["count_include_pad"] = int_attr(1);
  require_close(run1(ap, {x}), f32({1, 1, 2, 2}, {0.25, 1.25, 2.75, 7}));
}

TEST_CASE("AveragePool ceil_mode drops windows that start in the end padding", "[nn]") {
  // in 4, k 2, s 2, pads (0, 1): floor gives 2 windows, ceil would give 3 but the third starts at 4 = in.
  Node ap = make_node("AveragePool", 11, 1);
  ap.attrs["kernel_shape"] = ints_attr({2});
  ap.attrs["strides"] = ints_attr({2});
  ap.attrs["pads"] = ints_attr({0, 1});
  ap.attrs["ceil_mode"] = int_attr(1);
  Tensor x = f32({1, 1, 4}, {1, 2, 3, 4});
  require_close(run1(ap, {x}), f32({1, 1, 2}, {1.5, 3.5}));
  // in 5, k 2, s 2, no pads: ceil keeps a partial window [4]; count_include_pad counts only real taps there.
  Node ap5 = ap;
  ap5.attrs["pads"] = ints_attr({0, 0});
  ap5.attrs["count_include_pad"] = int_attr(1);
  Tensor x5 = f32({1, 1, 5}, {1, 2, 3, 4, 5});
  require_close(run1(ap5, {x5}), f32({1, 1, 3}, {1.5, 3.5, 5}));
  auto info = infer(ap5, {make_info(DType::Float32, x5.shape())});
  REQUIRE(to_shape(info[0].shape) == Shape{1, 1, 3});
}

TEST_CASE("Pools: global pools, auto_pad, errors", "[nn]") {
  Tensor x = random_tensor(DType::Float32, {2, 3, 4, 5});
  Tensor gap = run1(make_node("GlobalAveragePool", 11, 1), {x});
  Tensor gmp = run1(make_node("GlobalMaxPool", 11, 1), {x});
  REQUIRE(gap.shape() == Shape{2, 3, 1, 1});
  for (int64_t p = 0; p < 6; ++p) {
    double sum = 0, mx = -1e9;
    for (int64_t i = 0; i < 20; ++i) {
      sum += x.get(p * 20 + i);
      mx = std::max(mx, x.get(p * 20 + i));
    }
    REQUIRE(gap.get(p) == Approx(sum / 20).margin(1e-6));
    REQUIRE(gmp.get(p) == float(mx));
  }
  Node same = make_node("MaxPool", 12, 1);
  same.attrs["kernel_shape"] = ints_attr({3, 3});
  same.attrs["strides"] = ints_attr({2, 2});
  same.attrs["auto_pad"] = string_attr("SAME_UPPER");
  REQUIRE(run1(same, {x}).shape() == Shape{2, 3, 2, 3});
  SymbolicShape sym{Dim{-1, "N"}, Dim{3, ""}, Dim{-1, "H"}, Dim{5, ""}};
  REQUIRE(shape_str(infer(same, {make_info(DType::Float32, sym)})[0].shape) == "[N,3,?,?]");

  Node idx = make_node("MaxPool", 12, 1, 2);
  idx.name = "pool_with_indices";
  idx.attrs["kernel_shape"] = ints_attr({2, 2});
  require_error([&] { run(idx, {x}); }, idx, ErrorKind::Unsupported);
  require_error([&] { infer(idx, {make_info(DType::Float32, x.shape())}); }, idx, ErrorKind::Unsupported);
  Node nokernel = make_node("AveragePool", 11, 1);
  nokernel.name = "pool_nokernel";
  require_error([&] { run(nokernel, {x}); }, nokernel);
}

// =====================================================================================================
// Resize
// =====================================================================================================

namespace {

Node resize_node(const std::string& mode, const std::string& ctm, const std::string& nearest = "") {
  Node n = make_node("Resize", 13, 3);
  n.attrs["mode"] = string_attr(mode);
  n.attrs["coordinate_transformation_mode"] = string_attr(ctm);
  if (!nearest.empty()) n.attrs["nearest_mode"] = string_attr(nearest);
  return n;
}

// 2x2 -> 4x4 by scales: x = [[1, 2], [3, 4]], so the result is outer(row weights) . x . outer(col weights).
Tensor resize_2x2(const Node& n) {
  Tensor x = f32({1, 1, 2, 2}, {1, 2, 3, 4});
  return run1(n, {x, Tensor(), f32({4}, {1, 1, 2, 2})});
}

// Builds the expected 4x4 from a per-axis (1-D) interpolation of [a, b]: value = a + t * (b - a).
Tensor separable(const std::vector<double>& t) {
  std::vector<double> v;
  for (double ty : t)
    for (double tx : t) v.push_back(1 + 2 * ty + tx);  // x(y, x) = 1 + 2y + x, bilinear is exact
  return f32({1, 1, 4, 4}, v);
}

}  // namespace

TEST_CASE("Resize nearest 2x2 -> 4x4 for every nearest_mode and transform", "[nn]") {
  // Source index per output index (0..3) for scale 2, hand computed from the ONNX formulas.
  struct Case {
    const char* ctm;
    const char* mode;
    std::vector<double> src;
  };
  std::vector<Case> cases{
      // half_pixel: x = (o + 0.5)/2 - 0.5 = -0.25, 0.25, 0.75, 1.25
      {"half_pixel", "round_prefer_floor", {0, 0, 1, 1}},
      {"half_pixel", "round_prefer_ceil", {0, 0, 1, 1}},
      {"half_pixel", "floor", {0, 0, 0, 1}},
      {"half_pixel", "ceil", {0, 1, 1, 1}},
      // asymmetric: x = o/2 = 0, 0.5, 1, 1.5
      {"asymmetric", "round_prefer_floor", {0, 0, 1, 1}},
      {"asymmetric", "round_prefer_ceil", {0, 1, 1, 1}},
      {"asymmetric", "floor", {0, 0, 1, 1}},
      {"asymmetric", "ceil", {0, 1, 1, 1}},
      // align_corners: x = o/3 = 0, .33, .67, 1
      {"align_corners", "round_prefer_floor", {0, 0, 1, 1}},
      {"align_corners", "floor", {0, 0, 0, 1}},
      // tf_half_pixel_for_nn: x = (o + 0.5)/2 = .25, .75, 1.25, 1.75
      {"tf_half_pixel_for_nn", "round_prefer_floor", {0, 1, 1, 1}},
      {"tf_half_pixel_for_nn", "floor", {0, 0, 1, 1}},
      {"pytorch_half_pixel", "round_prefer_floor", {0, 0, 1, 1}},
  };
  for (const Case& c : cases) {
    INFO(c.ctm << " " << c.mode);
    require_close(resize_2x2(resize_node("nearest", c.ctm, c.mode)), separable(c.src));
  }
}

TEST_CASE("Resize linear 2x2 -> 4x4 for each transform", "[nn]") {
  // half_pixel: x = -0.25, 0.25, 0.75, 1.25 clamped to [0, 1].
  require_close(resize_2x2(resize_node("linear", "half_pixel")), separable({0, 0.25, 0.75, 1}));
  require_close(resize_2x2(resize_node("linear", "pytorch_half_pixel")), separable({0, 0.25, 0.75, 1}));
  require_close(resize_2x2(resize_node("linear", "asymmetric")), separable({0, 0.5, 1, 1}));
  require_close(resize_2x2(resize_node("linear", "align_corners")), separable({0, 1.0 / 3, 2.0 / 3, 1}));
}

TEST_CASE("Resize by sizes, opset 10, inference and refusals", "[nn]") {
  Tensor x = random_tensor(DType::Float32, {1, 2, 2, 2});
  Node n = resize_node("linear", "align_corners");
  n.inputs = {"x", "", "", "sizes"};
  Tensor sizes = i64v({1, 2, 3, 5});
  Tensor y = run1(n, {x, Tensor(), Tensor(), sizes});
  REQUIRE(y.shape() == Shape{1, 2, 3, 5});
  REQUIRE(y.get(0) == Approx(x.get(0)));
  REQUIRE(y.get(14) == Approx(x.get(3)));  // the last corner of plane 0
  ValueInfo xi = make_info(DType::Float32, SymbolicShape{Dim{-1, "N"}, Dim{2, ""}, Dim{2, ""}, Dim{2, ""}});
  ValueInfo si = make_info(DType::Int64, Shape{4});
  auto info = infer(n, {xi, ValueInfo{}, ValueInfo{}, si}, {nullptr, nullptr, nullptr, &sizes});
  REQUIRE(shape_str(info[0].shape) == "[N,2,3,5]");
  // Without constant sizes the spatial dims are unknown.
  info = infer(n, {xi, ValueInfo{}, ValueInfo{}, si});
  REQUIRE(shape_str(info[0].shape) == "[N,2,?,?]");

  // Resize-10: (X, scales), asymmetric + floor.
  Node r10 = make_node("Resize", 10, 2);
  Tensor y10 = run1(r10, {f32({1, 1, 1, 2}, {1, 2}), f32({4}, {1, 1, 1, 2})});
  require_close(y10, f32({1, 1, 1, 4}, {1, 1, 2, 2}));

  for (auto [key, value] : std::vector<std::pair<std::string, Attribute>>{
           {"mode", string_attr("cubic")},
           {"coordinate_transformation_mode", string_attr("tf_crop_and_resize")},
           {"antialias", int_attr(1)},
           {"keep_aspect_ratio_policy", string_attr("not_larger")},
           {"axes", ints_attr({1, 2})}}) {
    Node bad = resize_node("linear", "half_pixel");
    bad.name = "resize_bad";
    bad.opset = 19;
    bad.attrs[key] = value;
    try {
      run(bad, {x, Tensor(), f32({4}, {1, 1, 2, 2})});
      FAIL("expected Unsupported for " << key);
    } catch (const Error& e) {
      INFO(e.what());
      REQUIRE(e.kind() == ErrorKind::Unsupported);
      REQUIRE(std::string(e.what()).find("resize_bad") != std::string::npos);
      REQUIRE(std::string(e.what()).find(key) != std::string::npos);
    }
  }
  Node nc = resize_node("nearest", "asymmetric");
  nc.name = "resize_nc";
  require_error([&] { run(nc, {x, Tensor(), f32({4}, {1, 2, 2, 2})}); }, nc, ErrorKind::Unsupported);
  require_error([&] { run(nc, {random_tensor(DType::Float32, {2, 2, 2}), Tensor(), f32({3}, {1, 2, 2})}); }, nc,
                ErrorKind::Unsupported);
}

// =====================================================================================================
// Tensor ops
// =====================================================================================================

TEST_CASE("Reshape: 0 copies, -1 infers, allowzero, symbolic", "[tensor]") {
  Tensor x = random_tensor(DType::Int4, {2, 3, 4}, -8, 7);
  Node n = make_node("Reshape", 14, 2);
  Tensor y = run1(n, {x, i64v({0, -1})});
  REQUIRE(y.shape() == Shape{2, 12});
  REQUIRE(y.dtype() == DType::Int4);
  REQUIRE(y.to_ints() == x.to_ints());
  REQUIRE(run1(n, {x, i64v({-1, 0, 2})}).shape() == Shape{4, 3, 2});  // the 0 copies dim 1 (3)
  REQUIRE(run1(n, {x, i64v({24})}).shape() == Shape{24});
  // allowzero: a 0 is a real zero-size dim.
  Node az = n;
  az.attrs["allowzero"] = int_attr(1);
  Tensor empty(DType::Float32, {0, 3});
  REQUIRE(run1(az, {empty, i64v({3, 0})}).shape() == Shape{3, 0});
  REQUIRE(run1(n, {empty, i64v({0, -1})}).shape() == Shape{0, 3});
  // Errors.
  n.name = "reshape_bad";
  require_error([&] { run(n, {x, i64v({5, -1})}); }, n);
  require_error([&] { run(n, {x, i64v({-1, -1})}); }, n);
  require_error([&] { run(n, {x, i64v({2, 3, 5})}); }, n);
  require_error([&] { run(az, {x, i64v({0, -1})}); }, az);
  // Inference: symbolic batch copied by 0, -1 solved by cancelling it.
  ValueInfo xi = make_info(DType::Float32, SymbolicShape{Dim{-1, "B"}, Dim{3, ""}, Dim{4, ""}});
  ValueInfo si = make_info(DType::Int64, Shape{2});
  Tensor target = i64v({0, -1});
  REQUIRE(shape_str(infer(n, {xi, si}, {nullptr, &target})[0].shape) == "[B,12]");
  Tensor target2 = i64v({-1, 4});
  REQUIRE(shape_str(infer(n, {xi, si}, {nullptr, &target2})[0].shape) == "[?,4]");
  REQUIRE(shape_str(infer(n, {xi, si})[0].shape) == "[?,?]");
}

TEST_CASE("Transpose, Flatten, Squeeze, Unsqueeze", "[tensor]") {
  Tensor x = random_tensor(DType::Int64, {2, 3, 4}, -100, 100);
  Node t = make_node("Transpose", 13, 1);
  t.attrs["perm"] = ints_attr({1, 2, 0});
  Tensor y = run1(t, {x});
  REQUIRE(y.shape() == Shape{3, 4, 2});
  for (int64_t a = 0; a < 2; ++a)
    for (int64_t b = 0; b < 3; ++b)
      for (int64_t c = 0; c < 4; ++c) REQUIRE(y.get_int((b * 4 + c) * 2 + a) == x.get_int((a * 3 + b) * 4 + c));
  Tensor rev = run1(make_node("Transpose", 13, 1), {x});  // default reverses
  REQUIRE(rev.shape() == Shape{4, 3, 2});
  REQUIRE(rev.get_int((3 * 3 + 2) * 2 + 1) == x.get_int((1 * 3 + 2) * 4 + 3));
  t.name = "transpose_bad";
  t.attrs["perm"] = ints_attr({0, 0, 1});
  require_error([&] { run(t, {x}); }, t);

  Node f = make_node("Flatten", 13, 1);
  f.attrs["axis"] = int_attr(-1);
  REQUIRE(run1(f, {x}).shape() == Shape{6, 4});
  f.attrs["axis"] = int_attr(0);
  REQUIRE(run1(f, {x}).shape() == Shape{1, 24});
  f.attrs["axis"] = int_attr(3);
  REQUIRE(run1(f, {x}).shape() == Shape{24, 1});

  Tensor ones = random_tensor(DType::Bool, {1, 3, 1}, 0, 1);
  Node sq13 = make_node("Squeeze", 13, 2);
  REQUIRE(run1(sq13, {ones, i64v({-1})}).shape() == Shape{1, 3});
  REQUIRE(run1(make_node("Squeeze", 13, 1), {ones}).shape() == Shape{3});
  Node sq11 = make_node("Squeeze", 11, 1);
  sq11.attrs["axes"] = ints_attr({0});
  REQUIRE(run1(sq11, {ones}).shape() == Shape{3, 1});
  // Inference: constant axes give the shape; unknown axes of known length still give the rank.
  ValueInfo bi = make_info(DType::Bool, ones.shape()), axes2 = make_info(DType::Int64, Shape{2});
  Tensor ax = i64v({0, 2});
  REQUIRE(to_shape(infer(sq13, {bi, axes2}, {nullptr, &ax})[0].shape) == Shape{3});
  REQUIRE(shape_str(infer(sq13, {bi, axes2})[0].shape) == "[?]");
  REQUIRE(shape_str(infer(make_node("Unsqueeze", 13, 2), {bi, axes2})[0].shape) == "[?,?,?,?,?]");
  REQUIRE_FALSE(infer(sq13, {bi, make_info(DType::Int64, SymbolicShape{Dim{}})})[0].has_shape);
  sq13.name = "squeeze_bad";
  require_error([&] { run(sq13, {ones, i64v({1})}); }, sq13);

  Node us13 = make_node("Unsqueeze", 13, 2);
  REQUIRE(run1(us13, {ones, i64v({0, -1})}).shape() == Shape{1, 1, 3, 1, 1});
  Node us11 = make_node("Unsqueeze", 11, 1);
  us11.attrs["axes"] = ints_attr({1});
  REQUIRE(run1(us11, {ones}).shape() == Shape{1, 1, 3, 1});
  us13.name = "unsqueeze_bad";
  require_error([&] { run(us13, {ones, i64v({1, 1})}); }, us13);
  require_error([&] { run(us13, {ones, i64v({5})}); }, us13);
}

TEST_CASE("Concat and Split", "[tensor]") {
  Tensor a = random_tensor(DType::Float16, {2, 1, 3}), b = random_tensor(DType::Float16, {2, 2, 3});
  Node c = make_node("Concat", 13, 2);
  c.attrs["axis"] = int_attr(-2);
  Tensor y = run1(c, {a, b});
  REQUIRE(y.shape() == Shape{2, 3, 3});
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t k = 0; k < 3; ++k) {
      REQUIRE(y.get((i * 3 + 0) * 3 + k) == a.get(i * 3 + k));
      REQUIRE(y.get((i * 3 + 2) * 3 + k) == b.get((i * 2 + 1) * 3 + k));
    }
  // zero-size input participates
  REQUIRE(run1(c, {a, Tensor(DType::Float16, {2, 0, 3})}).shape() == Shape{2, 1, 3});
  auto info = infer(c, {make_info(DType::Float16, SymbolicShape{Dim{-1, "B"}, Dim{1, ""}, Dim{3, ""}}),
                        make_info(DType::Float16, b.shape())});
  REQUIRE(shape_str(info[0].shape) == "[2,3,3]");
  c.name = "concat_bad";
  require_error([&] { run(c, {a, random_tensor(DType::Float16, {2, 2, 4})}); }, c);

  // Split back with explicit sizes (input from 13, attribute before).
  Node s13 = make_node("Split", 13, 2, 2);
  s13.attrs["axis"] = int_attr(1);
  auto parts = run(s13, {y, i64v({1, 2})});
  REQUIRE(parts.size() == 2);
  require_close(parts[0], a, 0, 0);
  require_close(parts[1], b, 0, 0);
  Node s11 = make_node("Split", 11, 1, 2);
  s11.attrs["axis"] = int_attr(1);
  s11.attrs["split"] = ints_attr({2, 1});
  REQUIRE(run(s11, {y})[1].shape() == Shape{2, 1, 3});
  // Equal split; uneven split only from opset 18, with the last chunk smaller.
  Tensor x = random_tensor(DType::UInt4, {7}, 0, 15);
  Node eq = make_node("Split", 13, 1, 3);
  eq.name = "split_uneven";
  require_error([&] { run(eq, {x}); }, eq);
  Node s18 = make_node("Split", 18, 1, 3);
  s18.attrs["num_outputs"] = int_attr(3);
  auto chunks = run(s18, {x});
  REQUIRE(chunks[0].shape() == Shape{3});
  REQUIRE(chunks[2].shape() == Shape{1});
  REQUIRE(chunks[2].get_int(0) == x.get_int(6));
  s13.name = "split_bad";
  require_error([&] { run(s13, {y, i64v({1, 1})}); }, s13);
}

TEST_CASE("Slice: negative steps, clamping, axes, opset 9 attributes", "[tensor]") {
  Tensor x = Tensor::from_ints(DType::Int32, {10}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  Node n = make_node("Slice", 13, 5);
  auto slice = [&](std::vector<int64_t> st, std::vector<int64_t> en, std::vector<int64_t> ax, std::vector<int64_t> sp) {
    return run1(n, {x, i64v(st), i64v(en), i64v(ax), i64v(sp)}).to_ints();
  };
  REQUIRE(slice({1}, {8}, {0}, {3}) == std::vector<int64_t>{1, 4, 7});
  REQUIRE(slice({-1}, {-100}, {0}, {-1}) == std::vector<int64_t>{9, 8, 7, 6, 5, 4, 3, 2, 1, 0});
  REQUIRE(slice({8}, {1}, {0}, {-3}) == std::vector<int64_t>{8, 5, 2});
  REQUIRE(slice({100}, {-100}, {-1}, {-2}) == std::vector<int64_t>{9, 7, 5, 3, 1});
  REQUIRE(slice({INT64_MIN}, {INT64_MAX}, {0}, {4}) == std::vector<int64_t>{0, 4, 8});
  REQUIRE(slice({5}, {2}, {0}, {1}).empty());
  REQUIRE(slice({0}, {-1}, {0}, {-1}).empty());

  Tensor m = random_tensor(DType::Float32, {3, 4});
  Node two = make_node("Slice", 13, 3);  // axes and steps omitted
  Tensor y = run1(two, {m, i64v({1, -3}), i64v({3, 4})});
  REQUIRE(y.shape() == Shape{2, 3});
  REQUIRE(y.get(0) == m.get(1 * 4 + 1));
  Node s9 = make_node("Slice", 9, 1);
  s9.attrs["starts"] = ints_attr({1});
  s9.attrs["ends"] = ints_attr({1000});
  s9.attrs["axes"] = ints_attr({1});
  REQUIRE(run1(s9, {m}).shape() == Shape{3, 3});

  // Inference with constants, and without (only the named axes become unknown).
  Tensor st = i64v({1}), en = i64v({-1}), ax = i64v({1});
  ValueInfo mi = make_info(DType::Float32, SymbolicShape{Dim{-1, "R"}, Dim{4, ""}});
  ValueInfo vi = make_info(DType::Int64, Shape{1});
  REQUIRE(shape_str(infer(n, {mi, vi, vi, vi}, {nullptr, &st, &en, &ax})[0].shape) == "[R,2]");
  REQUIRE(shape_str(infer(n, {mi, vi, vi, vi}, {nullptr, nullptr, &en, &ax})[0].shape) == "[R,?]");

  n.name = "slice_bad";
  require_error([&] { slice({0}, {5}, {0}, {0}); }, n);
  require_error([&] { slice({0}, {5}, {1}, {1}); }, n);
  require_error([&] { run1(n, {x, i64v({0, 1}), i64v({5}), Tensor(), Tensor()}); }, n);
}

TEST_CASE("Gather: negative indices, any axis, scalar indices", "[tensor]") {
  Tensor x = random_tensor(DType::Int8, {3, 4, 2}, -100, 100);
  Node g = make_node("Gather", 13, 2);
  g.attrs["axis"] = int_attr(1);
  Tensor idx = Tensor::from_ints(DType::Int32, {2, 2}, {0, -1, 2, -4});
  Tensor y = run1(g, {x, idx});
  REQUIRE(y.shape() == Shape{3, 2, 2, 2});
  const int64_t sel[4] = {0, 3, 2, 0};
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 4; ++j)
      for (int64_t k = 0; k < 2; ++k) REQUIRE(y.get_int((i * 4 + j) * 2 + k) == x.get_int((i * 4 + sel[j]) * 2 + k));
  Node g0 = make_node("Gather", 13, 2);
  Tensor s = run1(g0, {x, i64({}, {-1})});
  REQUIRE(s.shape() == Shape{4, 2});
  REQUIRE(s.get_int(7) == x.get_int(2 * 8 + 7));
  REQUIRE(run1(g0, {x, Tensor(DType::Int64, {0})}).shape() == Shape{0, 4, 2});
  auto info = infer(g, {make_info(DType::Int8, SymbolicShape{Dim{-1, "A"}, Dim{4, ""}, Dim{2, ""}}),
                        make_info(DType::Int32, Shape{5})});
  REQUIRE(shape_str(info[0].shape) == "[A,5,2]");
  g.name = "gather_bad";
  require_error([&] { run(g, {x, i64v({4})}); }, g);
  require_error([&] { run(g, {x, i64v({-5})}); }, g);
}

TEST_CASE("Shape, ConstantOfShape, Constant", "[tensor]") {
  Tensor x = random_tensor(DType::Bool, {2, 3, 5}, 0, 1);
  REQUIRE(run1(make_node("Shape", 13, 1), {x}).to_ints() == std::vector<int64_t>{2, 3, 5});
  Node s15 = make_node("Shape", 15, 1);
  s15.attrs["start"] = int_attr(-2);
  REQUIRE(run1(s15, {x}).to_ints() == std::vector<int64_t>{3, 5});
  s15.attrs["end"] = int_attr(-2);
  REQUIRE(run1(s15, {x}).to_ints().empty());
  REQUIRE(to_shape(infer(s15, {make_info(DType::Bool, SymbolicShape(3, Dim{}))})[0].shape) == Shape{0});

  Node cos = make_node("ConstantOfShape", 13, 1);
  Tensor z = run1(cos, {i64v({2, 3})});
  REQUIRE(z.dtype() == DType::Float32);
  REQUIRE(z.shape() == Shape{2, 3});
  REQUIRE(z.get(5) == 0.0);
  cos.attrs["value"] = tensor_attr(Tensor::from_ints(DType::Int64, {1}, {int64_t(1) << 40}));
  Tensor big = run1(cos, {i64v({4})});
  REQUIRE(big.dtype() == DType::Int64);
  REQUIRE(big.get_int(3) == int64_t(1) << 40);
  REQUIRE(run1(cos, {i64v({0})}).size() == 0);
  Tensor target = i64v({7});
  REQUIRE(to_shape(infer(cos, {make_info(DType::Int64, Shape{1})}, {&target})[0].shape) == Shape{7});

  Node c = make_node("Constant", 13, 0);
  c.attrs["value_ints"] = ints_attr({3, -1});
  Tensor ci = run1(c, {});
  REQUIRE(ci.dtype() == DType::Int64);
  REQUIRE(ci.to_ints() == std::vector<int64_t>{3, -1});
  Node cf = make_node("Constant", 13, 0);
  cf.attrs["value_float"] = float_attr(2.5);
  REQUIRE(run1(cf, {}).shape() == Shape{});
  REQUIRE(run1(cf, {}).get(0) == 2.5);
  Node ct = make_node("Constant", 13, 0);
  Tensor packed = random_tensor(DType::Int4, {3}, -8, 7);
  ct.attrs["value"] = tensor_attr(packed);
  REQUIRE(run1(ct, {}).to_ints() == packed.to_ints());
  REQUIRE(to_shape(infer(ct, {})[0].shape) == Shape{3});
  Node cs = make_node("Constant", 13, 0);
  cs.name = "const_string";
  cs.attrs["value_string"] = string_attr("hi");
  require_error([&] { run(cs, {}); }, cs, ErrorKind::Unsupported);
}

// =====================================================================================================
// Cross-checks against ONNX Runtime: one node per model, our kernel called directly.
// =====================================================================================================

namespace {

// The tetra Attribute of a Attr (the kinds these tests use).
Attribute from_proto(const onnx::AttributeProto& p) {
  switch (p.type()) {
    case onnx::AttributeProto::INT: return int_attr(p.i());
    case onnx::AttributeProto::FLOAT: return float_attr(p.f());
    case onnx::AttributeProto::STRING: return string_attr(p.s());
    case onnx::AttributeProto::INTS: return ints_attr(std::vector<int64_t>(p.ints().begin(), p.ints().end()));
    default: FAIL("attribute kind not handled in tests"); return {};
  }
}

// One node (add_single_node: input 0 the graph input, the others initializers) on the reference
// kernel against ORT.
void check_vs_ort(const std::string& op_type, int64_t opset, const std::vector<Attr>& attrs,
                  const std::vector<Tensor>& in, const std::string& what) {
  INFO(op_type << " " << what);
  ModelBuilder b(opset);
  std::vector<std::string> names = test::add_single_node(b, op_type, attrs, in);
  Node n = make_node(op_type, opset, 0);
  n.inputs = names;
  for (const Attr& a : attrs) n.attrs[a.proto.name()] = from_proto(a.proto);
  Tensor ours = run1(n, in);
  std::vector<Tensor> theirs = test::run_ort(b.save(test::temp_dir("nn_ort") + "/model.onnx"), {in[0]});
  REQUIRE(theirs.size() == 1);
  require_close(ours, theirs[0], 1e-4, 1e-4);
}

}  // namespace

TEST_CASE("Resize matches ONNX Runtime", "[nn][ort]") {
  if (!test::require_ort()) return;
  Tensor x = random_tensor(DType::Float32, {1, 2, 3, 5});
  const std::vector<std::vector<float>> scales{{1, 1, 2, 2}, {1, 1, 0.5f, 0.6f}, {1, 1, 1.5f, 2.5f}, {1, 1, 3, 0.8f}};
  for (const char* ctm : {"half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel", "tf_half_pixel_for_nn"})
    for (const char* mode : {"nearest", "linear"})
      for (const char* nearest : {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"}) {
        if (std::string(mode) == "linear" && std::string(nearest) != "round_prefer_floor") continue;
        if (std::string(mode) == "linear" && std::string(ctm) == "tf_half_pixel_for_nn") continue;
        std::vector<Attr> attrs{{"mode", mode}, {"coordinate_transformation_mode", ctm}, {"nearest_mode", nearest}};
        for (const auto& s : scales) {
          Tensor st(DType::Float32, {4});
          for (int i = 0; i < 4; ++i) st.set(i, s[i]);
          check_vs_ort("Resize", 13, attrs, {x, Tensor(), st},
                       std::string(ctm) + " " + mode + " " + nearest + " scales " + std::to_string(s[2]) + "," + std::to_string(s[3]));
        }
        check_vs_ort("Resize", 13, attrs, {x, Tensor(), Tensor(), i64v({1, 2, 7, 4})},
                     std::string(ctm) + " " + mode + " " + nearest + " sizes 7x4");
      }
  check_vs_ort("Resize", 10, {{"mode", "nearest"}}, {x, f32({4}, {1, 1, 2, 3})}, "opset 10 nearest");
  check_vs_ort("Resize", 10, {{"mode", "linear"}}, {x, f32({4}, {1, 1, 2, 3})}, "opset 10 linear");
}

TEST_CASE("Pools match ONNX Runtime", "[nn][ort]") {
  if (!test::require_ort()) return;
  for (int iter = 0; iter < 24; ++iter) {
    const int64_t k = rand_int(2, 3), s = rand_int(1, 3), pb = rand_int(0, k - 1), pe = rand_int(0, k - 1);
    const int64_t h = rand_int(k + 1, 9), w = rand_int(k, 8), ceil = iter % 2, dil = iter % 3 == 2 ? 2 : 1;
    if (dil == 2 && (h < 2 * k || w < 2 * k)) continue;
    Tensor x = random_tensor(DType::Float32, {1, 2, h, w});
    std::vector<Attr> attrs{{"kernel_shape", std::vector<int64_t>{k, k}},
                                  {"strides", std::vector<int64_t>{s, s}},
                                  {"pads", std::vector<int64_t>{pb, pe, pe, pb}},
                                  {"ceil_mode", ceil},
                                  {"dilations", std::vector<int64_t>{dil, dil}}};
    std::string what = "iter " + std::to_string(iter) + " k" + std::to_string(k) + " s" + std::to_string(s) + " pads " +
                       std::to_string(pb) + "," + std::to_string(pe) + " ceil " + std::to_string(ceil) + " in " +
                       std::to_string(h) + "x" + std::to_string(w) + " dil " + std::to_string(dil);
    check_vs_ort("MaxPool", 12, attrs, {x}, what);
    attrs.push_back({"count_include_pad", iter % 4 < 2 ? 1 : 0});
    check_vs_ort("AveragePool", 19, attrs, {x}, what + " count_include_pad " + std::to_string(iter % 4 < 2));
  }
  Tensor x = random_tensor(DType::Float32, {2, 3, 7, 6});
  for (const char* pad : {"SAME_UPPER", "SAME_LOWER", "VALID"}) {
    std::vector<Attr> attrs{{"kernel_shape", std::vector<int64_t>{3, 2}}, {"strides", std::vector<int64_t>{2, 2}},
                                  {"auto_pad", pad}};
    check_vs_ort("MaxPool", 12, attrs, {x}, pad);
    check_vs_ort("AveragePool", 11, attrs, {x}, pad);
  }
  check_vs_ort("GlobalAveragePool", 13, {}, {x}, "");
  check_vs_ort("GlobalMaxPool", 13, {}, {x}, "");
}

TEST_CASE("ConvTranspose and Conv auto_pad match ONNX Runtime", "[nn][ort]") {
  if (!test::require_ort()) return;
  for (int iter = 0; iter < 24; ++iter) {
    const int64_t group = rand_int(1, 2), c = group * rand_int(1, 2), m = group * rand_int(1, 2);
    const int64_t k = rand_int(1, 3), s = rand_int(1, 3), d = rand_int(1, 2), h = rand_int(2, 5), w = rand_int(2, 5);
    Tensor x = random_tensor(DType::Float32, {1, c, h, w}), wt = random_tensor(DType::Float32, {c, m / group, k, k + 1});
    Tensor b = random_tensor(DType::Float32, {m});
    std::vector<Attr> attrs{{"group", group}, {"strides", std::vector<int64_t>{s, s}},
                                  {"dilations", std::vector<int64_t>{d, 1}}};
    std::string what = "iter " + std::to_string(iter);
    switch (iter % 4) {
      case 0:
        attrs.push_back({"pads", std::vector<int64_t>{rand_int(0, k - 1), 0, 0, rand_int(0, k)}});
        attrs.push_back({"output_padding", std::vector<int64_t>{s - 1, 0}});
        break;
      case 1: attrs.push_back({"output_shape", std::vector<int64_t>{h * s - 1 + (k > 1), w * s}}); break;
      case 2: attrs.push_back({"auto_pad", "SAME_UPPER"}); break;
      default: attrs.push_back({"auto_pad", "SAME_LOWER"}); break;
    }
    check_vs_ort("ConvTranspose", 11, attrs, {x, wt, b}, what);
  }
  Tensor x = random_tensor(DType::Float32, {1, 4, 7, 6}), wt = random_tensor(DType::Float32, {4, 2, 3, 2});
  for (const char* pad : {"SAME_UPPER", "SAME_LOWER", "VALID"})
    check_vs_ort("Conv", 11, {{"auto_pad", pad}, {"group", 2}, {"strides", std::vector<int64_t>{2, 3}}}, {x, wt}, pad);
}
