// Grouped and depthwise QConv kernels against conv_reference (runtime/ops/conv_core.h) with the
// dequantized weight: odd H and W, strides 1 and 2, dilations, asymmetric pads, groups 2 and C,
// depthwise multipliers, every quantization form and float32/float16 weights, default and random
// schedules, fresh random data.
// A kernel depends only on the kernel size, strides, weight format and bias, so each one is compiled
// once (test-local cache) and run on many shapes.
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <random>
#include <sstream>

#include "dsl/core/kernel_spec.h"
#include "runtime/ops/conv_core.h"
#include "schedules/cpu/conv.h"

using namespace tetra;
using namespace tetra::dsl;
using namespace tetra::schedules;

namespace {

struct WeightSpec {
  DType type = DType::Int4;
  bool zero_point = false;
  ConvInt4Format::Grid grid = ConvInt4Format::Grid::PerAxis;
  int axis = 0;
  int64_t block = 0;  // Blocked only
  bool f16_scale = false;
};

// A fresh weight [M, Cg, KH, KW]: every code value possible, nonzero scales of both signs. A float32 or
// float16 `type` gives an unquantized weight of random values.
QuantizedWeight random_weight(const Shape& shape, const WeightSpec& spec, std::mt19937_64& rng) {
  if (spec.type == DType::Float32 || spec.type == DType::Float16) {
    std::normal_distribution<double> normal(0.0, 0.1);
    QuantizedWeight w;
    w.name = "w";
    w.pattern = "Float";
    w.data = Tensor(spec.type, shape);
    for (int64_t i = 0; i < w.data.size(); ++i) w.data.set(i, spec.type == DType::Float16 ? half_to_float(double_to_half(normal(rng))) : normal(rng));
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

Attribute ints(const std::vector<int64_t>& v) {
  Attribute a;
  a.kind = Attribute::Kind::Ints;
  a.ints = v;
  return a;
}

// One conv to run: the node's attributes and the input and weight shapes.
struct Case {
  int64_t N, C, H, W, M, group, KH, KW, SH, SW, DH, DW;
  std::vector<int64_t> pads;  // top, left, bottom, right
  bool bias;

  Node node() const {
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
  Shape weight_shape() const { return {M, C / group, KH, KW}; }
  std::string describe() const {
    std::ostringstream s;
    s << "x [" << N << "," << C << "," << H << "," << W << "] m " << M << " group " << group << " k " << KH << "x"
      << KW << " s " << SH << "x" << SW << " d " << DH << "x" << DW << " pads " << pads[0] << "," << pads[1] << ","
      << pads[2] << "," << pads[3] << (bias ? " bias" : "");
    return s.str();
  }
};

// A random conv with this kernel and stride: depthwise (multiplier 1 or 2), groups of 2-3 channels or
// dense, group 1 with output channels not a multiple of the schedules' channel tiles (kind 1, 0 or 2;
// -1: depthwise or grouped), odd sizes, dilation 1 or 2, asymmetric pads.
Case random_case(int64_t KH, int64_t KW, int64_t SH, int64_t SW, std::mt19937_64& rng, int kind = -1) {
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
  wl.format = conv_int4_format_of(w).value();
  wl.block = w.block_size;
  wl.has_bias = c.bias;
  return wl;
}

// Kernels compiled by this test binary, by kernel spec and schedule.
const QConvKernel& compiled(const QConvWorkload& wl, const Schedule& s) {
  static std::map<std::string, QConvKernel> cache;
  std::string key = kernel_spec(wl, host_target().name).key() + " " + s.to_string();
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  Result<QConvKernel> k = compile_qconv(wl, s, host_target());
  INFO(wl.key() << " " << s.to_string() << "\n" << (k.ok() ? "" : k.failure().describe()));
  REQUIRE(k.ok());
  return cache.emplace(key, std::move(k).value()).first->second;
}

// The epilogue's activation in double, the reference for the kernels' output stage.
double activate(const ConvEpilogue& e, double v) {
  const std::string& a = e.activation;
  if (a.empty()) return v;
  if (a == "Relu") return v < 0 ? 0 : v;
  if (a == "LeakyRelu") return v >= 0 ? v : e.params[0] * v;
  if (a == "Clip:min,max") return std::min(std::max(v, double(e.params[0])), double(e.params[1]));
  if (a == "HardSwish") return v * std::min(std::max(v / 6 + 0.5, 0.0), 1.0);
  if (a == "HardSigmoid") return std::min(std::max(e.params[0] * v + e.params[1], 0.0), 1.0);
  if (a == "Sigmoid") return 1 / (1 + std::exp(-v));
  if (a == "Gelu:none") return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
  FAIL("no reference for " << a);
  return 0;
}

// Runs `c` with weight `spec` under schedule `s` (the default when empty) and `epilogue`, and compares
// with the reference.
void check_case(const Case& c, const WeightSpec& spec, const Schedule* s, std::mt19937_64& rng,
                const ConvEpilogue& epilogue = {}) {
  QuantizedWeight w = random_weight(c.weight_shape(), spec, rng);
  QConvWorkload wl = workload_of(c, w);
  wl.epilogue = epilogue;
  Schedule schedule = s ? *s : default_qconv_schedule(wl, host_target()).value();
  INFO(c.describe() << "\nweight " << wl.format.describe() << " block " << wl.block << "\nschedule "
                    << schedule.to_string());
  const QConvKernel& kernel = compiled(wl, schedule);

  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  Halide::Buffer<float> X(int(c.W), int(c.H), int(c.C), int(c.N));
  X.for_each_value([&](float& v) { v = uniform(rng); });
  Halide::Buffer<float> B(int(c.M));
  B.for_each_value([&](float& v) { v = uniform(rng); });
  Halide::Buffer<float> Y(int(wl.OW), int(wl.OH), int(wl.M), int(wl.N));
  Y.fill(std::numeric_limits<float>::quiet_NaN());  // unwritten outputs fail the comparison
  Halide::Buffer<float> R(int(wl.OW), int(wl.OH), int(wl.M), int(wl.N));
  R.for_each_value([&](float& v) { v = uniform(rng); });
  Result<ConvInt4Buffers> packed = pack_conv_weight(w);
  REQUIRE(packed.ok());
  Status st = kernel.run(wl, X, packed.value(), Y, c.bias ? &B : nullptr, epilogue.residual ? &R : nullptr);
  INFO((st.ok() ? "" : st.failure().describe()));
  REQUIRE(st.ok());

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
  REQUIRE(ref.size() == size_t(Y.number_of_elements()));
  // fp32 accumulation in any order: error <= taps * 2^-24 * sum |x w|, with room.
  double taps = double(c.C / c.group * c.KH * c.KW + 1);
  int bad = 0;
  std::ostringstream report;
  for (size_t i = 0; i < ref.size(); ++i) {
    double residual = epilogue.residual ? R.data()[i] : 0.0;  // Y and R share the dense (w, h, m, n) order
    double want = activate(epilogue, ref[i] + residual);
    // The activations' slopes are at most ~1.13 (Gelu); their expressions are within 1e-6 relative.
    double tol = 1.2 * (4 * taps * std::ldexp(mag[i] + std::fabs(residual), -24)) + 1e-6 * std::fabs(want) + 1e-30;
    if (epilogue.empty()) tol = 4 * taps * std::ldexp(mag[i], -24) + 1e-30;
    double got = Y.data()[i];
    if (!(std::fabs(got - want) <= tol) && bad++ < 5) report << "  y[" << i << "] = " << got << ", expected " << want << "\n";
  }
  INFO(bad << " outputs differ:\n" << report.str());
  CHECK(bad == 0);
}

std::vector<WeightSpec> all_specs() {
  using G = ConvInt4Format::Grid;
  return {
      {DType::Int4, false, G::PerAxis, 0, 0, false},   // the common form: one scale per output channel
      {DType::UInt4, true, G::PerAxis, 0, 0, false},
      {DType::Int4, true, G::PerTensor, 0, 0, true},
      {DType::UInt4, false, G::Blocked, 1, 2, false},  // blocked along the input channels
      {DType::Int4, true, G::Blocked, 0, 2, true},     // blocked along the output channels
      {DType::Int4, false, G::PerAxis, 3, 0, false},   // per kernel column
      {DType::Float32, false, G::PerTensor, 0, 0, false},  // unquantized weights
      {DType::Float16, false, G::PerTensor, 0, 0, false},
  };
}

}  // namespace

TEST_CASE("QConv default schedules match the reference on many shapes", "[qconv][halide]") {
  std::mt19937_64 rng(11);
  std::vector<WeightSpec> specs = all_specs();
  struct Kernel {
    int64_t KH, KW, SH, SW;
  };
  // Each (kernel, stride) with two formats, depthwise and grouped; the default schedule of the first
  // shape is compiled and then runs other random shapes.
  std::vector<Kernel> kernels = {{3, 3, 1, 1}, {3, 3, 2, 2}, {5, 3, 1, 2}};
  for (size_t k = 0; k < kernels.size(); ++k) {
    for (int kind = 0; kind < 3; ++kind) {
      const WeightSpec& spec = specs[(3 * k + size_t(kind)) % specs.size()];
      const Kernel& kn = kernels[k];
      Case first = random_case(kn.KH, kn.KW, kn.SH, kn.SW, rng, kind);
      QConvWorkload wl = workload_of(first, random_weight(first.weight_shape(), spec, rng));
      Schedule s = default_qconv_schedule(wl, host_target()).value();
      for (int i = 0; i < 4; ++i) {
        Case c = i == 0 ? first : random_case(kn.KH, kn.KW, kn.SH, kn.SW, rng, kind);
        c.bias = first.bias;
        check_case(c, spec, &s, rng);
      }
    }
  }
}

TEST_CASE("QConv random schedules from the knob space match the reference", "[qconv][halide]") {
  std::mt19937_64 rng(23);
  std::vector<WeightSpec> specs = all_specs();
  for (int trial = 0; trial < 9; ++trial) {
    const WeightSpec& spec = specs[size_t(trial) % specs.size()];
    int64_t stride = trial % 2 + 1;
    Case first = random_case(3, 3, stride, stride, rng, trial % 3 == 2 ? 2 : -1);
    QConvWorkload wl = workload_of(first, random_weight(first.weight_shape(), spec, rng));
    const QConvTemplate* t = qconv_template_for(wl, host_target()).value();
    dsl::KnobSpace space = t->space(wl, host_target());
    Schedule s = space.sample(rng);
    while (!check_qconv_schedule(wl, s, host_target()).ok()) s = space.sample(rng);  // skip conflicts
    // The same kernel on other shapes of the same kernel size, stride, kind and bias.
    for (int i = 0; i < 3; ++i) {
      Case c = i == 0 ? first : random_case(3, 3, stride, stride, rng, wl.group == 1 ? 2 : wl.depthwise());
      c.bias = first.bias;
      check_case(c, spec, &s, rng);
    }
  }
}

TEST_CASE("QConv epilogues: a residual and an activation in the output stage", "[qconv][halide]") {
  std::mt19937_64 rng(31);
  std::vector<WeightSpec> specs = all_specs();
  std::vector<ConvEpilogue> epilogues = {
      {true, "", {}},          {false, "Relu", {}},          {true, "Clip:min,max", {0.0f, 6.0f}},
      {false, "HardSwish", {}}, {false, "LeakyRelu", {0.1f}}, {true, "Sigmoid", {}},
      {false, "Gelu:none", {}}, {true, "HardSigmoid", {0.2f, 0.5f}}};
  for (size_t e = 0; e < epilogues.size(); ++e) {
    INFO("epilogue " << epilogues[e].describe());
    // Dense, depthwise and grouped in turn; default schedules of each.
    Case c = random_case(3, 3, 1 + e % 2, 1 + e % 2, rng, int(e % 3) == 0 ? 2 : int(e % 3) == 1 ? 1 : 0);
    check_case(c, specs[e % specs.size()], nullptr, rng, epilogues[e]);
  }
}

TEST_CASE("QConv schedules are checked with a reason", "[qconv][halide]") {
  QConvWorkload wl;
  wl.N = 1, wl.C = wl.M = wl.group = 64, wl.H = wl.W = 56, wl.KH = wl.KW = 3, wl.OH = wl.OW = 56;
  wl.pad_top = wl.pad_left = wl.pad_bottom = wl.pad_right = 1;
  wl.format.grid = ConvInt4Format::Grid::PerAxis;
  const TargetSpec& target = parse_target("x86-64-avx512").value();
  Schedule d = default_qconv_schedule(wl, target).value();
  CHECK(d.template_name == "cpu_int4_depthwise_conv");
  CHECK(check_qconv_schedule(wl, d, target).ok());
  CHECK(Schedule::parse(d.to_string()).value() == d);
  CHECK(cpu_conv_space(wl, target).size() > 50);

  Schedule conflict = d;
  conflict.knobs["tile_ow"] = int64_t(8);
  conflict.knobs["vector_width"] = int64_t(16);
  Status st = check_qconv_schedule(wl, conflict, target);
  REQUIRE_FALSE(st.ok());
  CHECK(st.failure().kind == FailureKind::KnobConflict);

  Schedule unknown = d;
  unknown.knobs["tile_n"] = int64_t(16);
  CHECK(check_qconv_schedule(wl, unknown, target).failure().kind == FailureKind::UnknownKnob);

  QConvWorkload grouped = wl;
  grouped.group = 32;  // Cg = 2
  st = check_qconv_schedule(grouped, d, target);
  REQUIRE_FALSE(st.ok());
  CHECK(st.failure().kind == FailureKind::Unsupported);
  CHECK(default_qconv_schedule(grouped, target).value().template_name == "cpu_int4_grouped_conv");
  QConvWorkload dense = wl;
  dense.group = 1;
  Schedule dense_default = default_qconv_schedule(dense, target).value();
  CHECK(dense_default.template_name == "cpu_int4_dense_conv");
  CHECK(dense_default.get_int("tile_m") == 4);
  CHECK(check_qconv_schedule(dense, d, target).failure().kind == FailureKind::Unsupported);
  CHECK(check_qconv_schedule(wl, dense_default, target).failure().kind == FailureKind::Unsupported);
}

TEST_CASE("QConv kernels refuse mismatched buffers without crashing", "[qconv][halide]") {
  std::mt19937_64 rng(5);
  Case c{1, 4, 9, 9, 4, 4, 3, 3, 1, 1, 1, 1, {1, 1, 1, 1}, false};
  QuantizedWeight w = random_weight(c.weight_shape(), all_specs()[0], rng);
  QConvWorkload wl = workload_of(c, w);
  const QConvKernel& kernel = compiled(wl, default_qconv_schedule(wl, host_target()).value());
  ConvInt4Buffers packed = pack_conv_weight(w).value();
  Halide::Buffer<float> X(9, 9, 4, 1), Y(9, 9, 4, 1), small(8, 9, 4, 1);
  X.fill(0.5f);
  CHECK(kernel.run(wl, X, packed, Y).ok());
  CHECK_FALSE(kernel.run(wl, small, packed, Y).ok());  // X is not (W, H, C, N)
  CHECK_FALSE(kernel.run(wl, X, packed, small).ok());  // nor Y (OW, OH, M, N)
  QConvWorkload strided = wl;
  strided.SH = 2;
  CHECK_FALSE(kernel.run(strided, X, packed, Y).ok());  // compiled for stride 1
  QConvWorkload with_bias = wl;
  with_bias.has_bias = true;
  CHECK_FALSE(kernel.run(with_bias, X, packed, Y).ok());
}

// Not run by default. `tetra_halide_tests "[.bench]"` prints the best of 5 rounds x 200 runs for the
// default schedule of depthwise 3x3 s1 p1 on 1x64x56x56, and for each schedule in
// TETRA_QCONV_SCHEDULES (JSON, one per line); rounds interleave the schedules, because this shared
// machine has slow phases. TETRA_QCONV_DUMP=prefix writes each kernel's .stmt and .s.
TEST_CASE("QConv depthwise 3x3 1x64x56x56 timings", "[.bench]") {
  std::mt19937_64 rng(3);
  Case c{1, 64, 56, 56, 64, 64, 3, 3, 1, 1, 1, 1, {1, 1, 1, 1}, true};
  QuantizedWeight w = random_weight(c.weight_shape(), all_specs()[0], rng);
  QConvWorkload wl = workload_of(c, w);
  ConvInt4Buffers packed = pack_conv_weight(w).value();
  Halide::Buffer<float> X(56, 56, 64, 1), Y(56, 56, 64, 1), B(64);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  X.for_each_value([&](float& v) { v = uniform(rng); });
  B.for_each_value([&](float& v) { v = uniform(rng); });

  std::vector<Schedule> schedules = {default_qconv_schedule(wl, host_target()).value()};
  if (const char* env = std::getenv("TETRA_QCONV_SCHEDULES")) {
    std::istringstream lines(env);
    for (std::string line; std::getline(lines, line);)
      if (!line.empty()) schedules.push_back(Schedule::parse(line).value());
  }
  std::vector<double> best(schedules.size(), 1e9);
  for (int round = 0; round < 5; ++round) {
    for (size_t k = 0; k < schedules.size(); ++k) {
      const QConvKernel& kernel = compiled(wl, schedules[k]);
      REQUIRE(kernel.run(wl, X, packed, Y, &B).ok());
      for (int rep = 0; rep < 200; ++rep) {
        auto start = std::chrono::steady_clock::now();
        REQUIRE(kernel.run(wl, X, packed, Y, &B).ok());
        best[k] = std::min(best[k], std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
      }
    }
  }
  for (size_t k = 0; k < schedules.size(); ++k) {
    std::printf("%.3f ms  %s\n", best[k], schedules[k].to_string().c_str());
    if (const char* dump = std::getenv("TETRA_QCONV_DUMP")) {
      const QConvKernel& kernel = compiled(wl, schedules[k]);
      kernel.write_lowered_stmt(dump + std::to_string(k) + ".stmt");
      kernel.write_assembly(dump + std::to_string(k) + ".s");
    }
  }
}
