#include "tests/halide/qconv_cases.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <sstream>

#include "runtime/ops/conv_core.h"
#include "tests/halide/qmatmul_reference.h"

namespace tetra::qconv_test {

namespace {

Attribute ints(const std::vector<int64_t>& v) {
  Attribute a;
  a.kind = Attribute::Kind::Ints;
  a.ints = v;
  return a;
}

// Runs `c` with weight `spec` under schedule `s` (the default when empty) and `epilogue`, and compares
// with the reference.
}  // namespace

QuantizedWeight random_weight(const Shape& shape, const WeightSpec& spec, std::mt19937_64& rng) {
  if (spec.type == DType::Float32 || spec.type == DType::Float16) {
    std::normal_distribution<double> normal(0.0, 0.1);
    QuantizedWeight w;
    w.name = "w";
    w.pattern = "Float";
    w.data = Tensor(spec.type, shape);
    for (int64_t i = 0; i < w.data.size(); ++i)
      w.data.set(i, spec.type == DType::Float16 ? half_to_float(double_to_half(normal(rng))) : normal(rng));
    return w;
  }
  bool is_signed = spec.type == DType::Int4;
  std::uniform_int_distribution<int> code(is_signed ? -8 : 0, is_signed ? 7 : 15);
  std::uniform_real_distribution<double> mag(0.01, 0.1);
  std::bernoulli_distribution negative(0.2);
  QuantizedWeight w;
  w.name = "w";
  w.pattern = "DequantizeLinear";
  w.data = Tensor(spec.type, shape);
  for (int64_t i = 0; i < w.data.size(); ++i) w.data.set_int(i, code(rng));
  Shape grid;  // per tensor: a scalar
  if (spec.grid == ConvInt4Format::Grid::PerAxis) grid = {shape[spec.axis]};
  if (spec.grid == ConvInt4Format::Grid::Blocked) {
    grid = shape;
    grid[spec.axis] = (shape[spec.axis] + spec.block - 1) / spec.block;
    w.block_size = spec.block;
  }
  w.axis = spec.axis;
  w.scale = Tensor(spec.f16_scale ? DType::Float16 : DType::Float32, grid);
  for (int64_t i = 0; i < w.scale.size(); ++i) {
    double v = mag(rng) * (negative(rng) ? -1 : 1);
    if (spec.f16_scale) v = half_to_float(double_to_half(v));
    w.scale.set(i, v);
  }
  if (spec.zero_point) {
    w.zero_point = Tensor(spec.type, grid);
    for (int64_t i = 0; i < w.zero_point.size(); ++i) w.zero_point.set_int(i, code(rng));
  }
  return w;
}

Node Case::node() const {
  Node n;
  n.name = "conv";
  n.domain = "tetra";
  n.op_type = "QConv";
  n.attrs["group"].i = group;
  n.attrs["strides"] = ints({SH, SW});
  n.attrs["dilations"] = ints({DH, DW});
  n.attrs["pads"] = ints(pads);
  return n;
}

std::string Case::describe() const {
  std::ostringstream s;
  s << "x [" << N << "," << C << "," << H << "," << W << "] m " << M << " group " << group << " k " << KH << "x" << KW
    << " s " << SH << "x" << SW << " d " << DH << "x" << DW << " pads " << pads[0] << "," << pads[1] << "," << pads[2]
    << "," << pads[3] << (bias ? " bias" : "");
  return s.str();
}

Case random_case(int64_t KH, int64_t KW, int64_t SH, int64_t SW, std::mt19937_64& rng, int kind) {
  auto pick = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  Case c{};
  c.KH = KH, c.KW = KW, c.SH = SH, c.SW = SW;
  c.N = pick(1, 2);
  c.DH = pick(1, 2), c.DW = pick(1, 2);
  c.pads = {pick(0, 2), pick(0, 2), pick(0, 2), pick(0, 2)};
  if (kind == -1) kind = pick(0, 2) > 0;
  if (kind == 1) {
    c.group = c.C = pick(2, 9);
    c.M = c.C * pick(1, 2);
  } else if (kind == 2) {
    c.group = 1;
    c.C = pick(1, 9);
    c.M = pick(1, 13);
  } else {
    c.group = pick(2, 3);
    c.C = c.group * pick(2, 3);
    c.M = c.group * pick(1, 3);
  }
  // Odd sizes, at least the dilated kernel.
  c.H = std::max<int64_t>((KH - 1) * c.DH + 1, pick(3, 12) * 2 + 1);
  c.W = std::max<int64_t>((KW - 1) * c.DW + 1, pick(3, 20) * 2 + 1);
  c.bias = pick(0, 1) == 1;
  return c;
}

QConvWorkload workload_of(const Case& c, const QuantizedWeight& w) {
  ConvParams p = conv_params(c.node(), {c.N, c.C, c.H, c.W}, w.shape());
  QConvWorkload wl;
  wl.N = c.N, wl.C = c.C, wl.H = c.H, wl.W = c.W, wl.M = c.M, wl.group = c.group;
  wl.KH = c.KH, wl.KW = c.KW, wl.SH = c.SH, wl.SW = c.SW, wl.DH = c.DH, wl.DW = c.DW;
  wl.pad_top = p.pads_begin[0], wl.pad_left = p.pads_begin[1];
  wl.pad_bottom = p.pads_end[0], wl.pad_right = p.pads_end[1];
  wl.OH = p.out_spatial[0], wl.OW = p.out_spatial[1];
  wl.format = dsl::conv_int4_format_of(w).value();
  wl.block = w.block_size;
  wl.has_bias = c.bias;
  return wl;
}

std::vector<WeightSpec> all_specs() {
  using G = ConvInt4Format::Grid;
  return {
      {DType::Int4, false, G::PerAxis, 0, 0, false},  // the common form: one scale per output channel
      {DType::UInt4, true, G::PerAxis, 0, 0, false},      {DType::Int4, true, G::PerTensor, 0, 0, true},
      {DType::UInt4, false, G::Blocked, 1, 2, false},      // blocked along the input channels
      {DType::Int4, true, G::Blocked, 0, 2, true},         // blocked along the output channels
      {DType::Int4, false, G::PerAxis, 3, 0, false},       // per kernel column
      {DType::Float32, false, G::PerTensor, 0, 0, false},  // unquantized weights
      {DType::Float16, false, G::PerTensor, 0, 0, false},
  };
}

ConvBuffers random_buffers(const Case& c, const QConvWorkload& wl, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  ConvBuffers b;
  b.X = Halide::Buffer<float>(int(c.W), int(c.H), int(c.C), int(c.N));
  b.X.for_each_value([&](float& v) { v = uniform(rng); });
  b.B = Halide::Buffer<float>(int(c.M));
  b.B.for_each_value([&](float& v) { v = uniform(rng); });
  b.Y = Halide::Buffer<float>(int(wl.OW), int(wl.OH), int(wl.M), int(wl.N));
  b.Y.fill(std::numeric_limits<float>::quiet_NaN());
  b.R = Halide::Buffer<float>(int(wl.OW), int(wl.OH), int(wl.M), int(wl.N));
  b.R.for_each_value([&](float& v) { v = uniform(rng); });
  return b;
}

Expected expected_outputs(const Case& c, const QuantizedWeight& w, const ConvBuffers& b,
                          const OutputEpilogue& epilogue) {
  const Halide::Buffer<float>& X = b.X;
  const Halide::Buffer<float>& B = b.B;
  const Halide::Buffer<float>& R = b.R;
  // X's flat NCHW index is Halide's (w, h, c, n) dense offset.
  ConvParams p = conv_params(c.node(), {c.N, c.C, c.H, c.W}, w.shape());
  std::vector<double> bias(size_t(c.M)), abs_bias(size_t(c.M));
  for (int64_t m = 0; m < c.M; ++m) bias[size_t(m)] = B(int(m)), abs_bias[size_t(m)] = std::fabs(B(int(m)));
  std::vector<double> ref = conv_reference(
      p, [&](int64_t i) { return double(X.data()[i]); }, [&](int64_t i) { return double(w.value(i)); },
      c.bias ? &bias : nullptr);
  std::vector<double> mag = conv_reference(
      p, [&](int64_t i) { return std::fabs(double(X.data()[i])); },
      [&](int64_t i) { return std::fabs(double(w.value(i))); }, c.bias ? &abs_bias : nullptr);
  // fp32 accumulation in any order: error <= taps * 2^-24 * sum |x w|, with room.
  double taps = double(c.C / c.group * c.KH * c.KW + 1);
  Expected e;
  for (size_t i = 0; i < ref.size(); ++i) {
    double residual = epilogue.residual ? R.data()[i] : 0.0;  // Y and R share the dense (w, h, m, n) order
    double want = test::reference_epilogue(epilogue, ref[i], residual);
    // The activations' slopes are at most ~1.13 (Gelu); their expressions are within 1e-6 relative.
    double tol = 1.2 * (4 * taps * std::ldexp(mag[i] + std::fabs(residual), -24)) + 1e-6 * std::fabs(want) + 1e-30;
    if (epilogue.empty()) tol = 4 * taps * std::ldexp(mag[i], -24) + 1e-30;
    e.want.push_back(float(want));
    e.tolerance.push_back(float(tol));
  }
  return e;
}

std::string compare_with_reference(const Case& c, const QuantizedWeight& w, const ConvBuffers& b,
                                   const OutputEpilogue& epilogue) {
  const Expected e = expected_outputs(c, w, b, epilogue);
  const Halide::Buffer<float>& Y = b.Y;
  if (e.want.size() != size_t(Y.number_of_elements())) return "the output has the wrong size";
  int bad = 0;
  std::ostringstream report;
  for (size_t i = 0; i < e.want.size(); ++i) {
    double got = Y.data()[i];
    if (!(std::fabs(got - e.want[i]) <= e.tolerance[i]) && bad++ < 5)
      report << "  y[" << i << "] = " << got << ", expected " << e.want[i] << "\n";
  }
  if (bad == 0) return "";
  return std::to_string(bad) + " outputs differ:\n" + report.str();
}

}  // namespace tetra::qconv_test
