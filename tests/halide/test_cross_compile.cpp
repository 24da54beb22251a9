// Cross-compilation: the default QMatMul schedules compile for targets other than this machine's
// (aarch64 with NEON, x86-64 with AVX2 only). Nothing runs; the generated assembly is checked for
// the target's vector instructions.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "qmatmul_reference.h"
#include "schedules/qmatmul_templates.h"

using namespace tetra;
using namespace tetra::dsl;
using namespace tetra::schedules;

namespace {

std::string assembly_for(const QMatMulWorkload& wl, const TargetSpec& target) {
  Schedule s = default_qmatmul_schedule(wl, target).value();
  const QMatMulTemplate* t = find_qmatmul_template(s.template_name);
  REQUIRE(t != nullptr);
  QMatMulDef def = define_qmatmul(wl, t->layout(s));
  REQUIRE(t->apply(def, s, target).ok());
  std::string path = (std::filesystem::temp_directory_path() / ("tetra_cross_" + target.name + ".s")).string();
  Halide::Pipeline(def.def.output).compile_to_assembly(path, def.def.arguments, "qmatmul", target.halide);
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  std::filesystem::remove(path);
  return text.str();
}

}  // namespace

TEST_CASE("default QMatMul schedules cross-compile for aarch64 and AVX2", "[cross]") {
  test::WeightSpec spec;  // int4, blocked along K
  QuantizedWeight w = test::random_weight(256, 64, spec, 7);
  for (int64_t M : {1, 32}) {  // the GEMV and the GEMM template
    QMatMulWorkload wl = qmatmul_workload(w, spec.trans_b, M, true).value();
    std::string arm = assembly_for(wl, parse_target("arm-64-linux").value());
    INFO("M=" << M);
    CHECK(arm.find("fmla") != std::string::npos);  // NEON fused multiply-add
    CHECK(arm.find("vfmadd") == std::string::npos);
    std::string avx2 = assembly_for(wl, parse_target("x86-64-avx2").value());
    CHECK(avx2.find("ymm") != std::string::npos);
    CHECK(avx2.find("zmm") == std::string::npos);  // no AVX-512 when the target lacks it
  }
}
