// Schedules as data: JSON round trips, knob spaces, and rejection of illegal knobs with a reason.
#include <catch2/catch.hpp>

#include <random>

#include "schedules/qmatmul_kernel.h"
#include "schedules/qmatmul_templates.h"

using namespace tetra;
using namespace tetra::dsl;
using namespace tetra::schedules;

namespace {

QMatMulWorkload workload(int64_t M, int64_t K, int64_t N) {
  QMatMulWorkload w;
  w.M = M;
  w.K = K;
  w.N = N;
  w.format.is_signed = true;
  w.format.k_group = 32;
  w.format.per_n = true;
  return w;
}

const TargetSpec& avx512() {
  static const TargetSpec t = parse_target("x86-64-avx512").value();
  return t;
}

Failure rejection(const QMatMulWorkload& w, const Schedule& s, const TargetSpec& t = avx512()) {
  Status st = check_qmatmul_schedule(w, s, t);
  REQUIRE_FALSE(st.ok());
  INFO(st.failure().describe());
  CHECK_FALSE(st.failure().message.empty());
  return st.failure();
}

}  // namespace

TEST_CASE("schedules round-trip through JSON", "[schedule]") {
  std::mt19937_64 rng(7);
  static const TargetSpec vnni = parse_target("x86-64-avx512-vnni").value();
  for (const QMatMulTemplate& t : qmatmul_templates()) {
    QMatMulWorkload wl = workload(8, 512, 768);
    if (t.int8()) {
      wl.int8_activations = true;
      wl = resolve_qmatmul(wl, vnni).workload;
    }
    wl.f16_activations = t.activations == ActivationMode::Float16;
    static const TargetSpec gpu = parse_target("hip:gfx90a").value();
    const TargetSpec& target = t.family == TargetFamily::Hip ? gpu : t.int8() ? vnni : avx512();
    KnobSpace space = t.space(wl, target);
    CHECK(space.size() > 10);
    for (int i = 0; i < 20; ++i) {
      Schedule s = space.sample(rng);
      Result<Schedule> back = Schedule::parse(s.to_string());
      REQUIRE(back.ok());
      CHECK(back.value() == s);
      CHECK(space.check(back.value()).ok());
    }
    Schedule d = t.default_schedule(wl, target);
    CHECK(Schedule::from_json(d.to_json()).value() == d);
    CHECK(check_qmatmul_schedule(wl, d, target).ok());
  }
  Schedule s = Schedule::parse(R"({"template": "cpu_int4_gemv", "knobs": {"tile_n": 64, "parallel": "n"}})").value();
  CHECK(s.get_int("tile_n") == 64);
  CHECK(s.get_string("parallel") == "n");
  CHECK(s.to_json()["knobs"]["tile_n"] == 64);
}

TEST_CASE("malformed schedule JSON is rejected", "[schedule]") {
  for (const char* text : {"not json", "[1, 2]", R"({"knobs": {}})", R"({"template": 3, "knobs": {}})",
                           R"({"template": "cpu_int4_gemv"})", R"({"template": "cpu_int4_gemv", "knobs": {"tile_n": 1.5}})",
                           R"({"template": "cpu_int4_gemv", "knobs": {"tile_n": [64]}})",
                           R"({"template": "cpu_int4_gemv", "knobs": {}, "extra": 1})"}) {
    Result<Schedule> s = Schedule::parse(text);
    INFO(text);
    REQUIRE_FALSE(s.ok());
    CHECK(s.failure().kind == FailureKind::BadJson);
  }
}

TEST_CASE("illegal knobs are rejected with a typed reason", "[schedule]") {
  QMatMulWorkload w = workload(1, 512, 768);
  Schedule good = find_qmatmul_template("cpu_int4_gemv")->default_schedule(w, avx512());
  REQUIRE(check_qmatmul_schedule(w, good, avx512()).ok());

  Schedule s = good;
  s.template_name = "cpu_int4_gemmm";
  CHECK(rejection(w, s).kind == FailureKind::UnknownTemplate);

  s = good;
  s.knobs["tile_n"] = int64_t(24);
  CHECK(rejection(w, s).kind == FailureKind::KnobValue);
  CHECK(rejection(w, s).subject == "tile_n");

  s = good;
  s.knobs["tile_n"] = std::string("64");
  CHECK(rejection(w, s).kind == FailureKind::KnobType);

  s = good;
  s.knobs["parallel"] = std::string("k");
  CHECK(rejection(w, s).kind == FailureKind::KnobValue);

  s = good;
  s.knobs.erase("unroll_k");
  CHECK(rejection(w, s).kind == FailureKind::MissingKnob);

  s = good;
  s.knobs["tile_z"] = int64_t(4);
  CHECK(rejection(w, s).kind == FailureKind::UnknownKnob);

  s = good;
  s.knobs["gpu_threads"] = int64_t(256);
  CHECK(rejection(w, s).kind == FailureKind::WrongTarget);

  s = good;
  s.knobs["tile_n"] = int64_t(16);
  s.knobs["vector_width"] = int64_t(32);
  CHECK(rejection(w, s).kind == FailureKind::KnobConflict);

  // A CPU template on a GPU target, and knobs outside a small workload's space.
  CHECK(rejection(w, good, parse_target("hip:gfx90a").value()).kind == FailureKind::WrongTarget);
  s = good;
  s.knobs["tile_n"] = int64_t(256);
  CHECK(rejection(workload(1, 512, 40), s).kind == FailureKind::KnobValue);

  Schedule gemm = find_qmatmul_template("cpu_int4_gemm")->default_schedule(workload(64, 512, 768), avx512());
  gemm.knobs["w_stage"] = std::string("kblock");
  gemm.knobs["tile_k"] = int64_t(64);
  gemm.knobs["unroll_k"] = int64_t(4);
  CHECK(check_qmatmul_schedule(workload(64, 512, 768), gemm, avx512()).ok());
  gemm.knobs["w_stage"] = std::string("register");
  CHECK(rejection(workload(64, 512, 768), gemm).kind == FailureKind::KnobValue);
}

TEST_CASE("compiling an illegal schedule fails as data, not a crash", "[schedule]") {
  QMatMulWorkload w = workload(1, 64, 64);
  Schedule s = find_qmatmul_template("cpu_int4_gemv")->default_schedule(w, host_target());
  s.knobs["vector_width"] = int64_t(7);
  Result<QMatMulKernel> k = compile_qmatmul(w, s, host_target());
  REQUIRE_FALSE(k.ok());
  CHECK(k.failure().kind == FailureKind::KnobValue);
  CHECK_THROWS_AS(k.value(), tetra::Error);
}

TEST_CASE("the default template follows the number of rows", "[schedule]") {
  CHECK(default_qmatmul_schedule(workload(1, 4096, 4096), avx512()).value().template_name == "cpu_int4_gemv");
  CHECK(default_qmatmul_schedule(workload(128, 4096, 4096), avx512()).value().template_name == "cpu_int4_gemm");
  // A GPU: the decode GEMV for few rows, the GEMM for more (never a CPU schedule).
  CHECK(default_qmatmul_schedule(workload(1, 64, 64), parse_target("hip:gfx90a").value()).value().template_name ==
        "gpu_int4_gemv");
  CHECK(default_qmatmul_schedule(workload(64, 64, 64), parse_target("hip:gfx90a").value()).value().template_name ==
        "gpu_int4_gemm");
  // The GPU templates serve every GPU family: each emits them in its own dialect.
  for (const char* gpu : {"cuda:sm_80", "opencl-pthread-haswell-amd-epyc"}) {
    TargetSpec target = parse_target(gpu).value();
    CHECK(default_qmatmul_schedule(workload(1, 64, 64), target).value().template_name == "gpu_int4_gemv");
    CHECK(check_qmatmul_schedule(workload(1, 64, 64), default_qmatmul_schedule(workload(1, 64, 64), avx512()).value(),
                                 target)
              .failure()
              .kind == FailureKind::WrongTarget);
  }
  // Defaults are legal on every CPU tier and shape, including tiny ones.
  for (const char* t : {"x86-64-sse41", "x86-64-avx2", "x86-64-avx512", "x86-64-avx512-vnni"})
    for (int64_t N : {1, 5, 16, 100, 4096})
      for (int64_t M : {1, 3, 64}) {
        TargetSpec target = parse_target(t).value();
        QMatMulWorkload wl = workload(M, 64, N);
        Schedule s = default_qmatmul_schedule(wl, target).value();
        INFO(t << " " << wl.key() << " " << s.to_string());
        CHECK(check_qmatmul_schedule(wl, s, target).ok());
      }
}
