// QMatMul kernels against the plain-loop reference: default and random schedules of each template,
// every quantization form, odd shapes (M = 1..65, K not a multiple of the vector width, ragged
// blocks and panels), with and without the epilogue. Each kernel is compiled once and run on many
// shapes: M, K and N are runtime sizes.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>

#include "qmatmul_reference.h"
#include "schedules/qmatmul_kernel.h"
#include "schedules/qmatmul_templates.h"

using namespace tetra;
using namespace tetra::dsl;
using namespace tetra::schedules;
using tetra::test::Granularity;
using tetra::test::WeightSpec;

namespace {

struct Shape3 {
  int M, K, N;
};

// Runs `kernel` on a fresh weight of `spec` and fresh A for each shape; returns the failures.
void check_kernel(const QMatMulKernel& kernel, const WeightSpec& spec, const std::vector<Shape3>& shapes,
                  uint64_t seed) {
  const QMatMulWorkload& wl = kernel.workload();
  for (const Shape3& s : shapes) {
    INFO("kernel " << kernel.schedule().to_string() << "\nweight " << spec.describe() << " M=" << s.M
                    << " K=" << s.K << " N=" << s.N);
    test::KernelRun run = test::run_on_random_data(kernel, spec, s.M, s.K, s.N, seed);
    seed += 2;
    INFO((run.status.ok() ? "" : run.status.failure().describe()));
    REQUIRE(run.status.ok());
    test::Reference ref = test::reference_qmatmul(run.A, run.w, spec.trans_b, wl.has_bias ? &run.bias : nullptr,
                                                  run.alpha, run.beta);
    for (int m = 0; m < s.M; ++m)
      for (int n = 0; n < s.N; ++n) {
        size_t i = size_t(m) * s.N + n;
        const double residual = wl.epilogue.residual ? run.residual(n, m) : 0.0;
        ref.y[i] = test::reference_epilogue(wl.epilogue, ref.y[i], residual);
        ref.abs_sum[i] += std::fabs(residual);
      }
    std::string diff = test::compare(run.Y, ref, s.K);
    CHECK(diff == "");
  }
}

QMatMulKernel compile(const QMatMulWorkload& wl, const Schedule& s) {
  Result<QMatMulKernel> k = compile_qmatmul(wl, s, host_target());
  INFO(wl.key() << " " << s.to_string() << "\n" << (k.ok() ? "" : k.failure().describe()));
  REQUIRE(k.ok());
  return std::move(k).value();
}

QMatMulWorkload workload_for(const WeightSpec& spec, int M, int K, int N, bool bias = false) {
  QuantizedWeight w = test::random_weight(K, N, spec, 1);
  QMatMulWorkload wl = qmatmul_workload(w, spec.trans_b, M, bias).value();
  return wl;
}

std::vector<WeightSpec> all_specs() {
  return {
      {DType::Int4, false, Granularity::BlockedK, 32, false, false},
      {DType::UInt4, true, Granularity::BlockedK, 16, true, false},  // MatMulNBits' form
      {DType::Int4, true, Granularity::PerN, 0, false, false},
      {DType::UInt4, false, Granularity::PerTensor, 0, false, false},
      {DType::Int4, false, Granularity::PerK, 0, true, false},
      {DType::UInt4, true, Granularity::BlockedN, 8, false, false},
      {DType::Int4, true, Granularity::BlockedK, 32, false, true},  // float16 scales
      {DType::Float32, false, Granularity::PerTensor, 0, false, false},  // unquantized weights
      {DType::Float16, false, Granularity::PerTensor, 0, true, false},
  };
}

}  // namespace

TEST_CASE("default GEMV and GEMM kernels for every quantization form", "[qmatmul]") {
  const std::vector<Shape3> shapes = {{1, 37, 53}, {3, 64, 40}, {5, 130, 17}, {1, 3, 1}, {13, 100, 70}};
  uint64_t seed = 100;
  for (const WeightSpec& spec : all_specs()) {
    for (int M : {1, 64}) {
      QMatMulWorkload wl = workload_for(spec, M, 128, 64);
      Schedule s = default_qmatmul_schedule(wl, host_target()).value();
      check_kernel(compile(wl, s), spec, shapes, seed);
      seed += 1000;
    }
  }
}

TEST_CASE("GEMV block sums with the zero point per weight and per block, every signedness", "[qmatmul]") {
  // per_block reads unsigned codes (two's complement nibbles XOR 8) and subtracts offset * sum(a) once
  // per block; ragged K puts padding codes in the last block, where A must read 0.
  const std::vector<WeightSpec> specs = {{DType::Int4, false, Granularity::BlockedK, 32, false, false},
                                         {DType::UInt4, false, Granularity::BlockedK, 32, false, false},
                                         {DType::UInt4, true, Granularity::BlockedK, 16, true, false},
                                         {DType::Int4, true, Granularity::BlockedK, 64, false, false}};
  uint64_t seed = 61000;
  for (const WeightSpec& spec : specs) {
    for (const char* zero_point : {"per_weight", "per_block"}) {
      QMatMulWorkload wl = workload_for(spec, 1, 256, 64);
      Schedule s = find_qmatmul_template("cpu_int4_gemv")->default_schedule(wl, host_target());
      s.knobs["split_k"] = int64_t(1);
      s.knobs["block_sums"] = wl.format.k_group;
      s.knobs["zero_point"] = std::string(zero_point);
      check_kernel(compile(wl, s), spec, {{1, 256, 64}, {2, 77, 45}, {1, 3, 17}}, seed);
      seed += 100;
    }
  }
}

TEST_CASE("every row count from 1 to 65", "[qmatmul]") {
  WeightSpec spec{DType::Int4, true, Granularity::BlockedK, 32, false, false};
  for (int hint : {1, 128}) {
    QMatMulWorkload wl = workload_for(spec, hint, 96, 80);
    QMatMulKernel kernel = compile(wl, default_qmatmul_schedule(wl, host_target()).value());
    std::vector<Shape3> shapes;
    for (int M = 1; M <= 65; ++M) shapes.push_back({M, 77, 45});
    check_kernel(kernel, spec, shapes, 5000 + uint64_t(hint));
  }
}

TEST_CASE("epilogue: bias, alpha, beta and relu", "[qmatmul]") {
  WeightSpec spec{DType::UInt4, true, Granularity::BlockedK, 32, true, false};
  for (int M : {1, 32}) {
    QMatMulWorkload wl = workload_for(spec, M, 64, 48, /*bias=*/true);
    wl.epilogue = OutputEpilogue::relu();
    QMatMulKernel kernel = compile(wl, default_qmatmul_schedule(wl, host_target()).value());
    check_kernel(kernel, spec, {{1, 64, 48}, {7, 33, 21}, {40, 65, 50}}, 9000 + uint64_t(M));
    CHECK(kernel.workload().key() == "qmatmul m" + std::to_string(M) + " k64 n48 uint4 blocked(k,32) zp f32 bias relu");
  }
}

TEST_CASE("epilogue: a residual and an activation in the output stage", "[qmatmul]") {
  // The epilogues a fused MatMul node applies in its kernel (runtime/epilogue.h kernel_epilogue), on
  // the default and a random schedule of each CPU template.
  WeightSpec spec{DType::Int4, false, Granularity::BlockedK, 32, false, false};
  std::mt19937_64 rng(77);
  const std::vector<OutputEpilogue> epilogues = {
      {true, "", {}},           {false, "Gelu:none", {}},
      {true, "Relu", {}},       {true, "Clip:min,max", {-0.5f, 0.75f}},
      {false, "HardSwish", {}}, {true, "Relu", {}, /*activation_first=*/true}};
  int compiled = 0;
  for (const QMatMulTemplate& t : qmatmul_templates()) {
    if (t.int8() || t.family != TargetFamily::Cpu) continue;
    for (size_t e = 0; e < epilogues.size(); ++e) {
      QMatMulWorkload wl = workload_for(spec, 16, 96, 40, /*bias=*/e % 2 == 0);
      wl.epilogue = epilogues[e];
      Schedule s = t.default_schedule(wl, host_target());
      if (e % 2 == 0) do
          s = t.space(wl, host_target()).sample(rng);
        while (!check_qmatmul_schedule(wl, s, host_target()).ok());
      INFO(t.name << " " << epilogues[e].describe());
      check_kernel(compile(wl, s), spec, {{1, 96, 40}, {13, 70, 33}, {40, 96, 40}}, 41000 + uint64_t(e) * 10);
      ++compiled;
    }
  }
  CHECK(compiled >= 5);
}

TEST_CASE("every string knob value and the extremes of every integer knob", "[qmatmul]") {
  // Start from the default and change one knob; a conflicting combination must be rejected, not run.
  // Integer knobs are tried at their smallest and largest values only, to keep the compiles few.
  WeightSpec spec{DType::UInt4, true, Granularity::BlockedK, 16, true, false};
  const std::vector<Shape3> shapes = {{1, 45, 50}, {14, 300, 33}};
  int compiled = 0, rejected = 0;
  for (const QMatMulTemplate& t : qmatmul_templates()) {
    if (t.int8()) continue;                       // tests/halide/test_qmatmul_int8.cpp
    if (t.family != TargetFamily::Cpu) continue;  // tests/halide/test_gpu_kernels.cpp
    QMatMulWorkload wl = workload_for(spec, 16, 512, 256);
    KnobSpace space = t.space(wl, host_target());
    Schedule base = t.default_schedule(wl, host_target());
    for (const KnobDecl& knob : space.knobs) {
      std::vector<KnobValue> values = knob.values;
      if (std::holds_alternative<int64_t>(values.front())) values = {values.front(), values.back()};
      for (const KnobValue& value : values) {
        if (base.knobs.at(knob.name) == value) continue;
        Schedule s = base;
        s.knobs[knob.name] = value;
        Status st = check_qmatmul_schedule(wl, s, host_target());
        if (!st) {
          CHECK(st.failure().kind == FailureKind::KnobConflict);
          ++rejected;
          continue;
        }
        check_kernel(compile(wl, s), spec, shapes, 30000 + uint64_t(compiled) * 10);
        ++compiled;
      }
    }
  }
  CHECK(compiled > 15);
  CHECK(rejected > 0);
}

TEST_CASE("random schedules from each template's knob space", "[qmatmul]") {
  std::mt19937_64 rng(2024);
  const std::vector<WeightSpec> specs = all_specs();
  const std::vector<Shape3> shapes = {{1, 45, 50}, {9, 130, 33}, {20, 64, 100}};
  int compiled = 0;
  for (const QMatMulTemplate& t : qmatmul_templates()) {
    if (t.int8()) continue;                       // tests/halide/test_qmatmul_int8.cpp
    if (t.family != TargetFamily::Cpu) continue;  // tests/halide/test_gpu_kernels.cpp
    for (int i = 0; i < 5; ++i) {
      const WeightSpec& spec = specs[rng() % specs.size()];
      QMatMulWorkload wl = workload_for(spec, 16, 128, 96);
      KnobSpace space = t.space(wl, host_target());
      Schedule s = space.sample(rng);
      while (!check_qmatmul_schedule(wl, s, host_target()).ok()) s = space.sample(rng);  // skip knob conflicts
      check_kernel(compile(wl, s), spec, shapes, 20000 + uint64_t(compiled) * 100);
      ++compiled;
    }
  }
  CHECK(compiled == 10);
}

TEST_CASE("random schedules of each template with float32 and float16 weights", "[qmatmul]") {
  // Unquantized weights take the same templates: the format only changes what "w" reads.
  std::mt19937_64 rng(77);
  const std::vector<WeightSpec> specs = {{DType::Float32, false, Granularity::PerTensor, 0, false, false},
                                         {DType::Float16, false, Granularity::PerTensor, 0, true, false}};
  const std::vector<Shape3> shapes = {{1, 45, 50}, {9, 131, 33}, {20, 64, 100}};
  int compiled = 0;
  for (const QMatMulTemplate& t : qmatmul_templates()) {
    if (t.int8() || t.family != TargetFamily::Cpu) continue;
    for (const WeightSpec& spec : specs) {
      QMatMulWorkload wl = workload_for(spec, 16, 128, 96);
      KnobSpace space = t.space(wl, host_target());
      Schedule s = space.sample(rng);
      while (!check_qmatmul_schedule(wl, s, host_target()).ok()) s = space.sample(rng);
      check_kernel(compile(wl, s), spec, shapes, 40000 + uint64_t(compiled) * 100);
      ++compiled;
    }
  }
  CHECK(compiled == 4);
}

TEST_CASE("running with a mismatched weight or shape fails as data", "[qmatmul]") {
  WeightSpec spec{DType::Int4, false, Granularity::BlockedK, 32, false, false};
  QMatMulWorkload wl = workload_for(spec, 1, 64, 32);
  QMatMulKernel kernel = compile(wl, default_qmatmul_schedule(wl, host_target()).value());
  QuantizedWeight w = test::random_weight(64, 32, spec, 1);
  PackedInt4Buffers packed = kernel.pack(w, false).value();
  Halide::Buffer<float> A = test::random_matrix(64, 2, 2), Y(32, 2);
  CHECK(kernel.run(A, packed, Y).ok());

  Halide::Buffer<float> A_short = test::random_matrix(60, 2, 2);
  CHECK(kernel.run(A_short, packed, Y).failure().kind == FailureKind::Run);
  Halide::Buffer<float> Y_wide(33, 2);
  CHECK(kernel.run(A, packed, Y_wide).failure().kind == FailureKind::Run);
  PackedInt4Buffers other_panel = pack_int4_weight(w, false, Int4Layout{kernel.layout().panel * 2, 2}).value();
  CHECK(kernel.run(A, other_panel, Y).failure().kind == FailureKind::Run);
  QuantizedWeight uw = test::random_weight(64, 32, WeightSpec{DType::UInt4, false, Granularity::BlockedK, 32, false, false}, 1);
  CHECK(kernel.pack(uw, false).failure().kind == FailureKind::Unsupported);
  CHECK(kernel.run(A, pack_int4_weight(uw, false, kernel.layout()).value(), Y).failure().kind == FailureKind::Run);
}
