// Grouped and depthwise QConv kernels against conv_reference (runtime/ops/conv_core.h) with the
// dequantized weight: odd H and W, strides 1 and 2, dilations, asymmetric pads, groups 2 and C,
// depthwise multipliers, every quantization form and float32/float16 weights, default and random
// schedules, fresh random data.
// A kernel depends only on the kernel size, strides, weight format and bias, so each one is compiled
// once (test-local cache) and run on many shapes.
#include <algorithm>
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
#include "schedules/cpu/conv.h"
#include "tests/halide/qconv_cases.h"

using namespace tetra;
using namespace tetra::dsl;
using namespace tetra::schedules;

namespace {

using namespace tetra::qconv_test;

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

// Runs `c` with weight `spec` under schedule `s` (the default when empty) and `epilogue`, and compares
// with the reference.
void check_case(const Case& c, const WeightSpec& spec, const Schedule* s, std::mt19937_64& rng,
                const OutputEpilogue& epilogue = {}) {
  QuantizedWeight w = random_weight(c.weight_shape(), spec, rng);
  QConvWorkload wl = workload_of(c, w);
  wl.epilogue = epilogue;
  Schedule schedule = s ? *s : default_qconv_schedule(wl, host_target()).value();
  INFO(c.describe() << "\nweight " << wl.format.describe() << " block " << wl.block << "\nschedule "
                    << schedule.to_string());
  const QConvKernel& kernel = compiled(wl, schedule);
  qconv_test::ConvBuffers b = qconv_test::random_buffers(c, wl, rng);
  Result<ConvInt4Buffers> packed = pack_conv_weight(w);
  REQUIRE(packed.ok());
  Status st = kernel.run(wl, b.X, packed.value(), b.Y, c.bias ? &b.B : nullptr, epilogue.residual ? &b.R : nullptr);
  INFO((st.ok() ? "" : st.failure().describe()));
  REQUIRE(st.ok());
  std::string mismatches = qconv_test::compare_with_reference(c, w, b, epilogue);
  INFO(mismatches);
  CHECK(mismatches.empty());
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
  std::vector<OutputEpilogue> epilogues = {{true, "", {}},
                                           {false, "Relu", {}},
                                           {true, "Clip:min,max", {0.0f, 6.0f}},
                                           {false, "HardSwish", {}},
                                           {false, "LeakyRelu", {0.1f}},
                                           {true, "Sigmoid", {}},
                                           {false, "Gelu:none", {}},
                                           {true, "HardSigmoid", {0.2f, 0.5f}},
                                           {true, "Relu", {}, /*activation_first=*/true},
                                           {true, "Clip:min,max", {0.0f, 6.0f}, /*activation_first=*/true}};
  for (size_t e = 0; e < epilogues.size(); ++e) {
    INFO("epilogue " << epilogues[e].describe());
    // Dense, depthwise and grouped in turn; default schedules of each.
    Case c = random_case(3, 3, 1 + e % 2, 1 + e % 2, rng, int(e % 3) == 0 ? 2 : int(e % 3) == 1 ? 1 : 0);
    check_case(c, specs[e % specs.size()], nullptr, rng, epilogues[e]);
  }
}

TEST_CASE("QConv dense default tiles keep half the vector registers accumulating", "[qconv][halide]") {
  // 4 output channels x 4 vectors of AVX-512 (16 of its 32 registers), x 2 of AVX2 (8 of 16), x 4
  // NEON registers (two 8-wide vectors, 16 of 32): the AVX-512 tile spills on AVX2 and ran 1.85x
  // slower there (schedules/cpu/conv.cpp).
  QConvWorkload wl;
  wl.N = 1, wl.C = 64, wl.M = 128, wl.group = 1, wl.H = 16, wl.W = 160, wl.KH = wl.KW = 3;
  wl.SH = wl.SW = 2, wl.OH = 8, wl.OW = 80;
  wl.pad_top = wl.pad_left = wl.pad_bottom = wl.pad_right = 1;
  for (const char* name : {"x86-64-avx512", "x86-64-avx2", "arm-64"}) {
    INFO(name);
    const TargetSpec& target = parse_target(name).value();
    Schedule d = default_qconv_schedule(wl, target).value();
    REQUIRE(d.template_name == "cpu_int4_dense_conv");
    CHECK(check_qconv_schedule(wl, d, target).ok());
    int64_t registers_per_vector = std::max<int64_t>(1, d.get_int("vector_width") / target.natural_lanes());
    int64_t accumulators = d.get_int("tile_m") * d.get_int("tile_oh") * d.get_int("tile_ow") /
                           d.get_int("vector_width") * registers_per_vector;
    CHECK(accumulators == target.vector_registers() / 2);
  }
  CHECK(parse_target("x86-64-avx512").value().vector_registers() == 32);
  CHECK(parse_target("x86-64-avx2").value().vector_registers() == 16);
  CHECK(parse_target("arm-64").value().vector_registers() == 32);
  CHECK(parse_target("hip:gfx90a").value().vector_registers() == 0);
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
