// The int8-activation QMatMul kernels (cpu_int4_vnni) against Int8ActivationReference, the same
// quantization of A in plain C++: every quantization form that allows int8 activations, odd shapes,
// random schedules; their accuracy against the exact result; and the machine code they may contain.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <limits>
#include <random>
#include <regex>
#include <sstream>

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

bool host_has_int8_dot() {
  if (host_target().has_int8_dot()) return true;
  WARN("this CPU has no AVX512-VNNI: the int8-activation kernels cannot run here");
  return false;
}

// A QMatMul workload asking for int8 activations.
QMatMulWorkload int8_request(const WeightSpec& spec, int M, int K, int N, bool bias = false) {
  QuantizedWeight w = test::random_weight(K, N, spec, 1);
  QMatMulWorkload wl = qmatmul_workload(w, spec.trans_b, M, bias).value();
  wl.int8_activations = true;
  return wl;
}

// The same, resolved for a VNNI target (whether this host is one or not): the int8 kernel's workload.
QMatMulWorkload int8_workload(const WeightSpec& spec, int M, int K, int N, bool bias = false) {
  static const TargetSpec vnni = parse_target("x86-64-avx512-vnni").value();
  ResolvedQMatMul resolved = resolve_qmatmul(int8_request(spec, M, K, N, bias), vnni);
  INFO(resolved.note);
  REQUIRE(resolved.workload.int8_activations);
  return resolved.workload;
}

QMatMulKernel compile(const QMatMulWorkload& wl, const Schedule& s) {
  Result<QMatMulKernel> k = compile_qmatmul(wl, s, host_target());
  INFO(wl.key() << " " << s.to_string() << "\n" << (k.ok() ? "" : k.failure().describe()));
  REQUIRE(k.ok());
  return std::move(k).value();
}

// Runs `kernel` on fresh weights and A per shape; Y must match the int8 reference within fp32
// rounding of its float terms (the integer dot products are exact).
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

    Int8ActivationReference ref(run.A.data(), s.M, s.K, wl.activation_block());
    int bad = 0;
    std::ostringstream first;
    for (int m = 0; m < s.M; ++m)
      for (int n = 0; n < s.N; ++n) {
        double magnitude = 0;
        double want = run.alpha * ref.value(run.w, spec.trans_b, m, n, &magnitude);
        if (wl.has_bias) want += run.beta * run.bias[size_t(n)];
        if (wl.epilogue.is_lone_relu()) want = std::max(want, 0.0);
        double got = run.Y(n, m);
        if (!(std::fabs(got - want) <= 1e-5 * (1 + magnitude))) {
          if (bad++ == 0) first << "(" << m << ", " << n << "): " << got << " instead of " << want;
        }
      }
    INFO(bad << " wrong, first " << first.str());
    CHECK(bad == 0);
  }
}

// The quantization forms whose k-blocks allow int8 activations (per-k and n-blocked scales do not).
std::vector<WeightSpec> int8_specs() {
  return {
      {DType::Int4, false, Granularity::BlockedK, 32, false, false},
      {DType::UInt4, true, Granularity::BlockedK, 16, true, false},  // MatMulNBits' form
      {DType::Int4, true, Granularity::BlockedK, 64, false, false},
      {DType::Int4, true, Granularity::PerN, 0, false, false},
      {DType::UInt4, false, Granularity::PerTensor, 0, false, false},
      {DType::UInt4, true, Granularity::PerN, 0, true, false},
      {DType::Int4, true, Granularity::BlockedK, 32, false, true},  // float16 scales, read as float32
  };
}

}  // namespace

TEST_CASE("int8-activation kernels for every quantization form that allows them", "[qmatmul][int8]") {
  if (!host_has_int8_dot()) return;
  const std::vector<Shape3> shapes = {{1, 37, 53}, {3, 64, 40}, {5, 130, 17}, {1, 3, 1}, {13, 100, 70}};
  uint64_t seed = 700;
  for (const WeightSpec& spec : int8_specs()) {
    for (int M : {1, 64}) {
      QMatMulWorkload wl = int8_workload(spec, M, 128, 64, /*bias=*/M > 1);
      Schedule s = default_qmatmul_schedule(wl, host_target()).value();
      CHECK(s.template_name == "cpu_int4_vnni");
      check_kernel(compile(wl, s), spec, shapes, seed);
      seed += 1000;
    }
  }
}

TEST_CASE("int8 activations: every row count from 1 to 41, relu, random schedules", "[qmatmul][int8]") {
  if (!host_has_int8_dot()) return;
  WeightSpec spec{DType::UInt4, true, Granularity::BlockedK, 32, true, false};
  QMatMulWorkload wl = int8_workload(spec, 16, 96, 80, true);
  wl.epilogue = OutputEpilogue::relu();
  std::vector<Shape3> rows;
  for (int M = 1; M <= 41; ++M) rows.push_back({M, 77, 45});
  check_kernel(compile(wl, default_qmatmul_schedule(wl, host_target()).value()), spec, rows, 800);

  std::mt19937_64 rng(11);
  const QMatMulTemplate* t = find_qmatmul_template("cpu_int4_vnni");
  KnobSpace space = t->space(wl, host_target());
  for (int i = 0; i < 4; ++i) {
    Schedule s = space.sample(rng);
    while (!check_qmatmul_schedule(wl, s, host_target()).ok()) s = space.sample(rng);
    check_kernel(compile(wl, s), spec, {{1, 64, 48}, {9, 130, 33}, {20, 64, 100}}, 900 + uint64_t(i) * 10);
  }
}

TEST_CASE("int8 activations are less exact than float32, by what the quantization of A allows", "[qmatmul][int8]") {
  if (!host_has_int8_dot()) return;
  const int M = 4, K = 1024, N = 64;
  WeightSpec spec{DType::Int4, false, Granularity::BlockedK, 32, false, false};
  QMatMulWorkload wl = int8_workload(spec, M, K, N);
  QMatMulKernel kernel = compile(wl, default_qmatmul_schedule(wl, host_target()).value());
  QuantizedWeight w = test::random_weight(K, N, spec, 42);
  Halide::Buffer<float> A = test::random_matrix(K, M, 43);
  Halide::Buffer<float> Y(N, M);
  REQUIRE(kernel.run(A, kernel.pack(w, false).value(), Y).ok());
  test::Reference exact = test::reference_qmatmul(A, w, false);
  double max_err = 0, max_y = 0;
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      max_err = std::max(max_err, std::fabs(Y(n, m) - exact.y[size_t(m * N + n)]));
      max_y = std::max(max_y, std::fabs(exact.y[size_t(m * N + n)]));
    }
  // Rounding A to 8 bits per block of 32: errors near 1e-3 of the output's range, not fp32's 1e-7.
  INFO("max error " << max_err << " of max |y| " << max_y);
  CHECK(max_err > 1e-5 * max_y);
  CHECK(max_err < 1e-2 * max_y);
}

TEST_CASE("int8 activations fall back to float32 where they cannot run, saying why", "[qmatmul][int8]") {
  WeightSpec per_k{DType::Int4, false, Granularity::PerK, 0, true, false};
  QMatMulWorkload wl = int8_request(per_k, 1, 64, 32);
  ResolvedQMatMul runs = resolve_qmatmul(wl, parse_target("x86-64-avx512-vnni").value());
  CHECK_FALSE(runs.workload.int8_activations);
  CHECK(runs.note.find("multiple of 8") != std::string::npos);

  WeightSpec blocked{DType::Int4, false, Granularity::BlockedK, 32, false, false};
  QMatMulWorkload ok = int8_workload(blocked, 1, 64, 32);
  CHECK(ok.key() == "qmatmul m1 k64 n32 int4 blocked(k,32) f32 a8");
  TargetSpec avx2 = parse_target("x86-64-avx2").value();
  ResolvedQMatMul on_avx2 = resolve_qmatmul(ok, avx2);
  CHECK_FALSE(on_avx2.workload.int8_activations);
  CHECK(on_avx2.note.find("x86-64-avx2 has no int8 dot products") != std::string::npos);
  // A float32 template cannot serve an int8 workload, nor the reverse.
  Schedule gemv = find_qmatmul_template("cpu_int4_gemv")->default_schedule(ok, host_target());
  CHECK_FALSE(check_qmatmul_schedule(ok, gemv, host_target()).ok());
  QMatMulWorkload fp32 = ok;
  fp32.int8_activations = false;
  Schedule vnni = find_qmatmul_template("cpu_int4_vnni")->default_schedule(ok, host_target());
  CHECK_FALSE(check_qmatmul_schedule(fp32, vnni, host_target()).ok());
}

TEST_CASE("resolving int8 activations decides the scale type with them", "[qmatmul][int8]") {
  // float16 scales are widened only for the int8 kernels; a fall-back keeps them.
  const TargetSpec vnni = parse_target("x86-64-avx512-vnni").value();
  const TargetSpec avx2 = parse_target("x86-64-avx2").value();
  WeightSpec short_blocks{DType::Int4, false, Granularity::BlockedK, 4, false, /*f16_scale=*/true};
  ResolvedQMatMul short_on_vnni = resolve_qmatmul(int8_request(short_blocks, 1, 64, 32), vnni);
  CHECK_FALSE(short_on_vnni.workload.int8_activations);
  CHECK(short_on_vnni.workload.format.f16_scale);
  CHECK(short_on_vnni.note.find("multiple of 8, not 4") != std::string::npos);

  WeightSpec long_blocks{DType::Int4, false, Granularity::BlockedK, 32, false, /*f16_scale=*/true};
  QMatMulWorkload request = int8_request(long_blocks, 1, 64, 32);
  ResolvedQMatMul long_on_vnni = resolve_qmatmul(request, vnni);
  CHECK(long_on_vnni.workload.int8_activations);
  CHECK_FALSE(long_on_vnni.workload.format.f16_scale);
  CHECK(long_on_vnni.note.empty());
  ResolvedQMatMul long_on_avx2 = resolve_qmatmul(request, avx2);
  CHECK_FALSE(long_on_avx2.workload.int8_activations);
  CHECK(long_on_avx2.workload.format.f16_scale);
  // A workload that asks for nothing is its own resolution.
  request.int8_activations = false;
  CHECK(resolve_qmatmul(request, vnni).workload.key() == request.key());
}

TEST_CASE("int8-activation kernels hold 512-bit VNNI and nothing this CPU might lack", "[qmatmul][int8]") {
  if (!host_has_int8_dot()) return;
  // They are compiled as sapphirerapids (dsl/target.h): no AVX512-FP16 and no VEX-encoded AVX-VNNI.
  WeightSpec spec{DType::UInt4, true, Granularity::BlockedK, 32, true, true};
  for (int M : {1, 64}) {
    QMatMulWorkload wl = int8_workload(spec, M, 128, 64, true);
    QMatMulKernel kernel = compile(wl, default_qmatmul_schedule(wl, host_target()).value());
    std::string path = std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") + "/tetra_int8_" +
                       std::to_string(M) + ".s";
    kernel.write_assembly(path);
    std::ifstream in(path);
    std::string line;
    int dots = 0;
    std::vector<std::string> suspicious;
    std::regex mnemonic(R"(^\s+(\{vex\}\s+)?([a-z][a-z0-9]*)\s*(.*)$)");
    while (std::getline(in, line)) {
      std::smatch m;
      if (!std::regex_match(line, m, mnemonic)) continue;
      std::string op = m[2], args = m[3];
      if (op == "vpdpbusd") {
        ++dots;
        if (m[1].matched || args.find("zmm") == std::string::npos) suspicious.push_back(line);
      }
      bool half = op.size() > 2 && op[0] == 'v' && (op.substr(op.size() - 2) == "ph" || op.substr(op.size() - 2) == "sh");
      if (half || op.find("ph2psx") != std::string::npos || op.find("ps2phx") != std::string::npos || op == "vmovw")
        suspicious.push_back(line);
    }
    INFO("M " << M << ": " << suspicious.size() << " suspicious, e.g. " << (suspicious.empty() ? "" : suspicious[0]));
    CHECK(dots > 0);
    CHECK(suspicious.empty());
  }
}
