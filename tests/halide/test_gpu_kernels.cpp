// GPU kernels end to end, without a GPU: a GPU schedule template is lowered by Halide, its kernels are
// captured and emitted by tetra (dsl/gpu/), run on an OpenCL device (pocl here) by tetra-device in a
// process of its own, and checked against the plain-loop reference on fresh random data. The same
// kernels' HIP source is built for every AMD arch with 0 spills, and their CUDA source to PTX.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <sstream>

#include "dsl/gpu/capture_kernels.h"
#include "dsl/gpu/code_object.h"
#include "dsl/gpu/emit_kernel.h"
#include "dsl/gpu/launch_plan_of.h"
#include "dsl/process.h"
#include "schedules/gpu/build.h"
#include "schedules/gpu/int4_gemm.h"
#include "schedules/gpu/int4_gemv.h"
#include "schedules/gpu/templates.h"
#include "tests/halide/gpu_jobs.h"
#include "tests/halide/qmatmul_reference.h"
#include "tests/oclgrind.h"

using namespace tetra;
using namespace tetra::dsl;
using namespace tetra::dsl::gpu;
namespace fs = std::filesystem;
using namespace tetra::gpu_test;

namespace {

const TargetSpec& gfx942() {
  static const TargetSpec t = parse_target("hip:gfx942").value();
  return t;
}

CapturedPipeline capture(const QMatMulWorkload& w, const Schedule& s) { return capture_qmatmul(w, s, gfx942()); }

// How many times `what` occurs in `text`.
size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

QMatMulWorkload workload_of(const test::WeightSpec& spec, int64_t M, int64_t K, int64_t N, bool bias_relu = false) {
  return qmatmul_workload_of(spec, M, K, N, bias_relu);
}

// Runs a job of `s`'s kernels on the OpenCL device.
//
// The int8 GEMM is built with pocl's optimizer off: pocl 3.1's optimized build of it computes every output
// wrong at some points (on an AVX2-only host every point with signed int4 weights in k-blocks; on Zen 4
// split in two, and some with one row a thread), where the same source is right unoptimized and on
// Oclgrind, so the optimized build could not tell the template's faults from pocl's.
ProgramRun run_schedule_job(const nlohmann::json& job, const Schedule& s, const fs::path& dir) {
  const char* flags = "POCL_EXTRA_BUILD_FLAGS";
  const char* before = std::getenv(flags);
  const std::string kept = before ? before : "";  // the caller's flags, put back after the run
  const bool unoptimized = s.template_name == "gpu_int4_gemm_a8";
  if (unoptimized) ::setenv(flags, (kept + " -cl-opt-disable").c_str(), 1);
  ProgramRun run = run_job(job, dir);
  if (unoptimized && before) ::setenv(flags, kept.c_str(), 1);
  if (unoptimized && !before) ::unsetenv(flags);
  return run;
}

// Runs the OpenCL source of `captured` (after `edit`) on fresh random data of `spec` through
// tetra-device, with the reference as its check: exit 0 when it ran and matched.
ProgramRun run_on_device(const QMatMulWorkload& w, const Schedule& s, const CapturedPipeline& captured,
                         const test::WeightSpec& spec, uint64_t seed, const fs::path& dir,
                         const std::function<std::string(std::string)>& edit = nullptr) {
  return run_schedule_job(qmatmul_job(w, s, captured, spec, seed, dir, JobDialect{}, edit), s, dir);
}

}  // namespace

// The weight forms the float32 kernels are run on: int4 in the default blocks, uint4 per column with
// zero points, int4 in blocks of 16 with zero points, float16 scales.
std::vector<test::WeightSpec> float32_kernel_formats() {
  std::vector<test::WeightSpec> specs(4);
  specs[1].type = DType::UInt4, specs[1].zero_point = true, specs[1].granularity = test::Granularity::PerN;
  specs[2].granularity = test::Granularity::BlockedK, specs[2].block = 16, specs[2].zero_point = true;
  specs[3].f16_scale = true;
  return specs;
}

// The template's default and `samples` random legal knob points, on shapes x formats, each run on the
// OpenCL device against the reference; returns how many ran.
int run_random_points(const std::string& template_name,
                      const std::vector<std::tuple<int64_t, int64_t, int64_t>>& shapes, int samples, uint64_t seed) {
  ProgramRun info = run_program({std::string(TETRA_BINARY_DIR) + "/bin/tetra-device", "info"});
  INFO(info.output);
  REQUIRE(info.ok());  // pocl (scripts/setup.sh) gives every machine an OpenCL device
  const schedules::QMatMulTemplate* t = schedules::find_qmatmul_template(template_name);
  REQUIRE(t);
  fs::path dir = work_dir(template_name);
  std::mt19937_64 rng(seed);
  const std::vector<test::WeightSpec> specs = float32_kernel_formats();
  int runs = 0;
  for (const auto& [M, K, N] : shapes)
    for (size_t f = 0; f < specs.size(); ++f) {
      // The bias and ReLU epilogue on every other format.
      QMatMulWorkload w = workload_of(specs[f], M, K, N, /*bias_relu=*/f % 2 == 1);
      KnobSpace space = t->space(w, gfx942());
      for (int i = 0, tries = 0; i <= samples && tries < 100; ++tries) {
        Schedule s = i == 0 ? t->default_schedule(w, gfx942()) : space.sample(rng);
        if (!t->check_conflicts(w, s, gfx942()).ok()) continue;
        ++i;
        INFO(w.key() << " " << s.to_string());
        CapturedPipeline captured = capture(w, s);
        ProgramRun run = run_on_device(w, s, captured, specs[f], seed + runs, dir);
        INFO(run.output);
        CHECK(run.status == 0);  // ran, and matched the reference
        ++runs;
      }
    }
  fs::remove_all(dir);
  return runs;
}

TEST_CASE("GPU int4 GEMV: random knob points on random data match the reference on an OpenCL device", "[gpu]") {
  if (!opencl_runs_here()) return;
  CHECK(run_random_points("gpu_int4_gemv", {{1, 256, 200}, {3, 96, 130}, {2, 512, 64}}, 1, 20261204) == 24);
}

TEST_CASE("GPU int4 GEMM: random knob points on random data match the reference on an OpenCL device", "[gpu]") {
  if (!opencl_runs_here()) return;
  // Partial row and column tiles, K not a multiple of tile_k or of the blocks, M just past the GEMV's.
  CHECK(run_random_points("gpu_int4_gemm", {{9, 96, 72}, {40, 160, 100}, {67, 64, 33}}, 1, 20261205) == 24);
}

TEST_CASE("GPU int4 GEMM with split_k or the weight staged: A and W staged or not, every format, partial tiles",
          "[gpu]") {
  if (!opencl_runs_here()) return;
  fs::path dir = work_dir("gemm_split_k");
  const std::vector<test::WeightSpec> specs = float32_kernel_formats();
  int runs = 0;
  // Partial row and column tiles; K past a whole chunk, and past a whole step of split_k x unroll_k.
  for (const auto& [M, K, N] : {std::tuple<int64_t, int64_t, int64_t>{9, 200, 72}, {40, 100, 33}})
    for (size_t f = 0; f < specs.size(); ++f)
      for (const std::string stage : {"a", "none", "aw", "aw_dequant"}) {
        QMatMulWorkload w = workload_of(specs[f], M, K, N, /*bias_relu=*/f % 2 == 1);
        Schedule s = schedules::gpu_int4_gemm_default(w, gfx942());
        s.knobs["shared_stage"] = stage, s.knobs["split_k"] = int64_t(f % 2 ? 4 : 2);
        if (stage.rfind("aw", 0) == 0) s.knobs["split_k"] = int64_t(f % 2 ? 2 : 1);
        INFO(w.key() << " " << s.to_string());
        REQUIRE(schedules::gpu_int4_gemm_check(w, s, gfx942()).ok());
        CapturedPipeline captured = capture(w, s);
        // The weight is read from workgroup memory, through Halide's wrapper of it, only when staged.
        CHECK((emit_kernels(captured.kernels, Dialect::OpenCL).value().find("W_packed_im") != std::string::npos) ==
              (stage == "aw"));
        REQUIRE(captured.kernels.size() == 1);
        // Workgroup memory holds A's chunk of tile_m rows (each a word longer than tile_k) and the weight's of
        // tile_n columns, a float each when dequantized there, and the partial tiles (Halide may place them
        // over the chunks).
        const int64_t chunks = (s.get_int("tile_m") * (s.get_int("tile_k") + 1) +
                                s.get_int("tile_n") * s.get_int("tile_k")) *
                               4,
                      partials = s.get_int("tile_n") * s.get_int("tile_m") * s.get_int("split_k") * 4;
        if (stage == "aw_dequant") {
          CHECK(captured.kernels[0].shared_bytes >= chunks);
          CHECK(captured.kernels[0].shared_bytes <= chunks + (s.get_int("split_k") > 1 ? partials : 0));
        }
        // The block is split_k times the threads of the tile, and holds the partial tiles.
        CHECK(constant_threads_per_block(captured.kernels[0]) == s.get_int("tile_n") / s.get_int("thread_n") *
                                                                     s.get_int("tile_m") / s.get_int("thread_m") *
                                                                     s.get_int("split_k"));
        ProgramRun run = run_on_device(w, s, captured, specs[f], 60 + runs, dir);
        INFO(run.output);
        CHECK(run.status == 0);  // ran, and matched the reference
        ++runs;
      }
  CHECK(runs == 32);
  fs::remove_all(dir);
}

TEST_CASE("GPU int4 GEMV with word loads: 8 weights a load, K not a multiple of 8, columns per thread, every format",
          "[gpu]") {
  if (!opencl_runs_here()) return;
  fs::path dir = work_dir("gemv_words");
  const std::vector<test::WeightSpec> specs = float32_kernel_formats();
  int runs = 0;
  for (const auto& [M, K, N] : {std::tuple<int64_t, int64_t, int64_t>{1, 100, 70}, {2, 264, 130}})
    for (size_t f = 0; f < specs.size(); ++f)
      for (int64_t split : {1, 4}) {
        QMatMulWorkload w = workload_of(specs[f], M, K, N, /*bias_relu=*/f % 2 == 1);
        Schedule s = schedules::gpu_int4_gemv_default(w, gfx942());
        s.knobs["load_bytes"] = int64_t(4), s.knobs["split_k"] = split, s.knobs["unroll_k"] = int64_t(2);
        // Split k: 2, 4 or 8 adjacent columns a thread, the last panel partial.
        if (split > 1) s.knobs["thread_n"] = int64_t(f == 0 ? 8 : f % 2 == 0 ? 4 : 2);
        INFO(w.key() << " " << s.to_string());
        CapturedPipeline captured = capture(w, s);
        // The weight is read as 32-bit words.
        Result<std::string> source = emit_kernels(captured.kernels, Dialect::OpenCL);
        REQUIRE(source.ok());
        CHECK_THAT(source.value(), Catch::Contains("const uint32_t * restrict _W_packed"));
        // 4 or 8 adjacent columns: their words are read 4 at a time (dsl/gpu/vector_loads.h), and the
        // device ran that code.
        if (s.get_int("thread_n", 1) >= 4) CHECK_THAT(source.value(), Catch::Contains("vload4(0, _W_packed + "));
        ProgramRun run = run_on_device(w, s, captured, specs[f], 40 + runs, dir);
        INFO(run.output);
        CHECK(run.status == 0);  // ran, and matched the reference
        ++runs;
      }
  CHECK(runs == 16);
  fs::remove_all(dir);
}

TEST_CASE("GPU int4 GEMV: a thread's adjacent weight words, scales and activations are wide loads, where aligned",
          "[gpu]") {
  REQUIRE(device_compiler().ok());  // clang-19 (scripts/setup.sh)
  fs::path dir = work_dir("vector_loads");
  test::WeightSpec spec;
  spec.granularity = test::Granularity::BlockedK, spec.block = 32;
  // K a multiple of 4, so that A's rows start at multiples of 16 bytes; of 2 (8 bytes); odd.
  for (int64_t K : {4096, 4094, 4093})
    for (int64_t columns : {1, 2, 4}) {
      QMatMulWorkload w = workload_of(spec, 1, K, 4096);
      Schedule s = schedules::gpu_int4_gemv_default(w, gfx942());
      s.knobs["split_k"] = int64_t(8), s.knobs["thread_n"] = columns, s.knobs["load_bytes"] = int64_t(4);
      INFO("K " << K << " " << s.to_string());
      CapturedPipeline captured = capture(w, s);
      Result<std::string> opencl = emit_kernels(captured.kernels, Dialect::OpenCL);
      REQUIRE(opencl.ok());
      const std::string& text = opencl.value();
      // A word's 8 k: two 16-byte loads of A where its rows start at multiples of 16 bytes, four 8-byte
      // loads at multiples of 8, else 8 scalar loads.
      CHECK((count_of(text, "vload4(0, _A + ") > 0) == (K % 4 == 0));
      CHECK((count_of(text, "vload2(0, _A + ") > 0) == (K % 4 == 2));
      CHECK((count_of(text, "_A[") > 0) == (K % 2 == 1));
      // A thread's columns: 4 adjacent words (and scales) are one 16-byte load, 2 one 8-byte load; one
      // column has nothing adjacent to combine.
      const std::string wide = columns == 4 ? "vload4(0, _W_packed + " : "vload2(0, _W_packed + ";
      CHECK((count_of(text, wide) > 0) == (columns > 1));
      CHECK((count_of(text, "_W_packed[") > 0) == (columns == 1));
      CHECK((count_of(text, "vload" + std::to_string(columns) + "(0, _W_scale + ") > 0) == (columns > 1));
      if (columns != 4) continue;
      // The CUDA dialect's loads, as the PTX has them: every weight word a 16-byte load, in the main loop
      // and in the guarded tail.
      Result<std::string> cuda = emit_kernels(captured.kernels, Dialect::Cuda);
      REQUIRE(cuda.ok());
      std::string ptx = (dir / "k.ptx").string();
      REQUIRE(build_ptx(cuda.value(), "sm_90", ptx).ok());
      std::ifstream in(ptx);
      std::stringstream code;
      code << in.rdbuf();
      CHECK(count_of(code.str(), "ld.global.nc.v4.u32") > 0);
      CHECK(count_of(code.str(), "ld.global.nc.u32") == 0);
      CHECK(count_of(code.str(), "ld.global.nc.v4.f32") > 0);
      CHECK(count_of(code.str(), "ld.local") == 0);  // the accumulators in registers (dsl/gpu/private_arrays.h)
    }
  fs::remove_all(dir);
}

TEST_CASE("The words packing holds a column's 8 consecutive k in one uint32, first k in the low nibble", "[gpu]") {
  for (const test::WeightSpec& spec :
       {test::WeightSpec{}, test::WeightSpec{DType::UInt4, true, test::Granularity::PerN}}) {
    QuantizedWeight weight = test::random_weight(37, 21, spec, 5);
    PackedInt4Buffers bytes = pack_int4_weight(weight, false, Int4Layout{8, 8}).value();
    Int4Layout layout{8, 8};
    layout.words = true;
    PackedInt4Buffers words = pack_int4_weight(weight, false, layout).value();
    REQUIRE(words.packed.type() == halide_type_t(halide_type_uint, 32));
    REQUIRE(words.packed.dim(0).extent() == 8);
    REQUIRE(words.packed.dim(1).extent() == 5);  // 37 k padded to 40, 8 a word
    REQUIRE(words.packed.dim(2).extent() == 3);
    const uint8_t* b = static_cast<const uint8_t*>(bytes.packed.data());
    const uint32_t* u = static_cast<const uint32_t*>(words.packed.data());
    for (int p = 0; p < 3; ++p)
      for (int kw = 0; kw < 5; ++kw)
        for (int j = 0; j < 8; ++j)
          for (int nib = 0; nib < 8; ++nib) {
            const int kq = 4 * kw + nib / 2;
            const uint32_t want = (b[j + 8 * (kq + 20 * p)] >> (4 * (nib % 2))) & 15;
            CHECK(((u[j + 8 * (kw + 5 * p)] >> (4 * nib)) & 15) == want);
          }
    // Words with vnni (the int8 GEMV's): the vnni packing's bytes, a column's 4 as one uint32 (P, Ka/8, panels).
    Int4Layout vnni{8, 32, /*vnni=*/true};  // k_align whole k-blocks of 32
    PackedInt4Buffers vnni_bytes = pack_int4_weight(weight, false, vnni).value();
    vnni.words = true;
    PackedInt4Buffers vnni_words = pack_int4_weight(weight, false, vnni).value();
    REQUIRE(vnni_words.packed.type() == halide_type_t(halide_type_uint, 32));
    REQUIRE(vnni_words.packed.dim(0).extent() == 8);
    REQUIRE(vnni_words.packed.dim(1).extent() == 8);  // 37 k padded to 64
    REQUIRE(vnni_words.packed.dim(2).extent() == 3);
    REQUIRE(vnni_words.packed.size_in_bytes() == vnni_bytes.packed.size_in_bytes());
    CHECK(std::memcmp(vnni_words.packed.data(), vnni_bytes.packed.data(), vnni_bytes.packed.size_in_bytes()) == 0);
    CHECK(vnni_words.format == vnni_bytes.format);
    // Words with a k_align of 2 are refused.
    Int4Layout bad = Int4Layout{8, 2};
    bad.words = true;
    CHECK_FALSE(pack_int4_weight(weight, false, bad).ok());
  }
}

// `s` on `w` is right on the device, and wrong with its barriers removed.
void check_barriers_matter(const QMatMulWorkload& w, const Schedule& s, const std::string& tag) {
  INFO(tag << " " << s.to_string());
  fs::path dir = work_dir(tag);
  test::WeightSpec spec;
  CapturedPipeline captured = capture(w, s);
  REQUIRE(captured.kernels.front().shared_bytes > 0);  // something lives in workgroup memory
  ProgramRun good = run_on_device(w, s, captured, spec, 7, dir);
  INFO(good.output);
  REQUIRE(good.status == 0);

  int removed = 0;
  ProgramRun bad = run_on_device(w, s, captured, spec, 7, dir,
                                 [&](std::string text) { return remove_opencl_barriers(std::move(text), &removed); });
  REQUIRE(removed > 0);
  INFO(bad.output);
  CHECK(bad.status == 1);  // it ran, and the check failed
  CHECK_THAT(bad.output, Catch::Contains("outputs differ"));
  fs::remove_all(dir);
}

// The lanes of a column hold parts of its sum, and only their exchanges add them up: `s` (a lanes' GEMV)
// passes the check on the OpenCL device, and fails it with the butterfly's add removed, which leaves lane
// 0's part as the column's value.
void check_exchanges_matter(const QMatMulWorkload& w, const Schedule& s, const test::WeightSpec& spec,
                            const std::string& tag) {
  INFO(tag << " " << s.to_string());
  fs::path dir = work_dir(tag);
  CapturedPipeline captured = capture(w, s);
  ProgramRun good = run_on_device(w, s, captured, spec, 11, dir);
  INFO(good.output);
  CHECK(good.status == 0);
  const std::string exchange = "v += scratch[i ^ o];";
  ProgramRun bad = run_on_device(w, s, captured, spec, 11, dir, [&](std::string source) {
    REQUIRE(source.find(exchange) != std::string::npos);
    return source.replace(source.find(exchange), exchange.size(), "");
  });
  INFO(bad.output);
  CHECK(bad.status != 0);
  fs::remove_all(dir);
}

TEST_CASE("GPU kernels with their barriers removed fail the check: split-k GEMV, staged and split-k GEMMs", "[gpu]") {
  if (!opencl_runs_here()) return;
  test::WeightSpec spec;
  // The GEMV's partial sums live in workgroup memory.
  QMatMulWorkload gemv = workload_of(spec, 1, 256, 128);
  Schedule s = schedules::gpu_int4_gemv_default(gemv, gfx942());
  s.knobs["split_k"] = int64_t(4);
  check_barriers_matter(gemv, s, "barrier_gemv");
  // The GEMM's A chunks are staged there: without the barriers threads read a chunk before it is written,
  // or after the next one overwrote it.
  QMatMulWorkload gemm = workload_of(spec, 40, 256, 96);
  Schedule g = schedules::gpu_int4_gemm_default(gemm, gfx942());
  REQUIRE(g.get_string("shared_stage") == "a");
  check_barriers_matter(gemm, g, "barrier_gemm");
  // With the weight staged too.
  Schedule staged_w = g;
  staged_w.knobs["shared_stage"] = std::string("aw");
  check_barriers_matter(gemm, staged_w, "barrier_gemm_aw");
  // With the weight dequantized there.
  staged_w.knobs["shared_stage"] = std::string("aw_dequant");
  check_barriers_matter(gemm, staged_w, "barrier_gemm_aw_dequant");
  // With split_k and A read directly, the one barrier is between the partial tiles and their sum.
  Schedule split = g;
  split.knobs["shared_stage"] = std::string("none"), split.knobs["split_k"] = int64_t(2);
  check_barriers_matter(gemm, split, "barrier_gemm_split_k");
  // The int8 GEMM's quantized chunks of A are staged there: 16 k-blocks in chunks of 4.
  QMatMulWorkload gemm_a8 = workload_of(spec, 40, 512, 96);
  gemm_a8.int8_activations = true;
  Schedule a8 = schedules::gpu_int4_gemm_a8_default(gemm_a8, gfx942());
  REQUIRE(a8.get_int("tile_k") == 4);
  a8.knobs["split_k"] = int64_t(1);  // (split, its partial tiles too: the int8 GEMM's split_k test)
  check_barriers_matter(gemm_a8, a8, "barrier_gemm_a8");
  // The float16 GEMV's row of A in float16 pairs, and its partial sums.
  QMatMulWorkload gemv_h2 = workload_of(spec, 1, 256, 128);
  gemv_h2.f16_activations = true;
  Schedule h2 = schedules::gpu_int4_gemv_h2_default(gemv_h2, gfx942());
  h2.knobs["split_k"] = int64_t(2);
  check_barriers_matter(gemv_h2, h2, "barrier_gemv_h2");
  // The float16 GEMM's chunks of A in float16 pairs: 16 k-blocks in chunks of 4, each shared by 2 threads.
  QMatMulWorkload gemm_h2 = workload_of(spec, 40, 512, 96);
  gemm_h2.f16_activations = true;
  Schedule gh2 = schedules::gpu_int4_gemm_h2_default(gemm_h2, gfx942());
  REQUIRE(gh2.get_int("tile_k") == 4);
  check_barriers_matter(gemm_h2, gh2, "barrier_gemm_h2");
  // For so few tiles the default splits k, so its partial tiles were in workgroup memory too; unsplit:
  REQUIRE(gh2.get_int("split_k", 1) == 2);
  gh2.knobs["split_k"] = int64_t(1);
  check_barriers_matter(gemm_h2, gh2, "barrier_gemm_h2_unsplit");
  // And with the weight's code pairs staged beside A's chunk, unsplit.
  gh2.knobs["shared_stage"] = std::string("aw_dequant"), gh2.knobs["tile_k"] = int64_t(2);
  check_barriers_matter(gemm_h2, gh2, "barrier_gemm_h2_aw_dequant");
}

TEST_CASE("GPU int4 GEMV and GEMM: HIP code objects for every AMD arch with no spills, and PTX", "[gpu]") {
  REQUIRE(device_compiler().ok());  // clang-19 (scripts/setup.sh)
  fs::path dir = work_dir("archs");
  // The GEMV: int4 blocks of 32 with float32 scales, split_k 1; with float16 scales (float16
  // arithmetic), split_k 4; word loads, split_k 8, 4 columns a thread (whose block-wide accumulators
  // dsl/gpu/private_arrays.h must bring down to the thread's 4, guarded tail included). The GEMM (A staged
  // in workgroup memory, accumulators in registers), with split_k 2 (a partial tile in each thread's
  // registers too), with the weight staged as well, and dequantized there.
  for (int variant = 0; variant < 7; ++variant) {
    const bool gemm = variant >= 3;
    test::WeightSpec spec;
    spec.f16_scale = variant == 1;
    QMatMulWorkload w = workload_of(spec, gemm ? 64 : 1, 4096, 4096);
    Schedule s = gemm ? schedules::gpu_int4_gemm_default(w, gfx942()) : schedules::gpu_int4_gemv_default(w, gfx942());
    if (!gemm) s.knobs["split_k"] = int64_t(variant == 0 ? 1 : variant == 1 ? 4 : 8);
    if (variant == 2) s.knobs["thread_n"] = int64_t(4), s.knobs["load_bytes"] = int64_t(4);
    if (variant == 4) s.knobs["split_k"] = int64_t(2);
    if (variant == 5) s.knobs["shared_stage"] = std::string("aw");
    if (variant == 6) s.knobs["shared_stage"] = std::string("aw_dequant");
    const int64_t threads = gemm ? (s.get_int("tile_n") / s.get_int("thread_n")) *
                                       (s.get_int("tile_m") / s.get_int("thread_m")) * s.get_int("split_k", 1)
                                 : s.get_int("tile_n") / s.get_int("thread_n", 1) * s.get_int("split_k");
    CapturedPipeline captured = capture(w, s);
    Result<std::string> hip = emit_kernels(captured.kernels, Dialect::Hip);
    REQUIRE(hip.ok());
    for (const std::string& arch : amd_archs()) {
      INFO(arch << " " << s.to_string());
      std::string object = (dir / (arch + ".co")).string();
      Status built = build_hip_code_object(hip.value(), arch, object);
      INFO((built.ok() ? "" : built.failure().describe()));
      REQUIRE(built.ok());
      Result<std::vector<KernelResources>> resources = read_kernel_resources(object);
      INFO((resources.ok() ? "" : resources.failure().describe()));
      REQUIRE(resources.ok());
      REQUIRE(resources.value().size() == captured.kernels.size());
      for (const KernelResources& k : resources.value()) {
        CHECK(k.name == captured.kernels.front().name);
        CHECK(k.vgpr_spills == 0);
        CHECK(k.sgpr_spills == 0);
        CHECK(k.scratch_bytes == 0);
        CHECK(k.vgprs > 0);
        CHECK(k.lds_bytes == captured.kernels.front().shared_bytes);
        CHECK(k.wavefront == (arch.rfind("gfx9", 0) == 0 ? 64 : 32));
        // Compiled for the schedule's block, not the default 1024 threads: the register budget.
        CHECK(k.max_threads_per_block == threads);
      }
    }
    Result<std::string> cuda = emit_kernels(captured.kernels, Dialect::Cuda);
    REQUIRE(cuda.ok());
    std::string ptx = (dir / "k.ptx").string();
    Status built = build_ptx(cuda.value(), "sm_80", ptx);
    INFO((built.ok() ? "" : built.failure().describe()));
    REQUIRE(built.ok());
    std::ifstream in(ptx);
    std::stringstream text;
    text << in.rdbuf();
    CHECK_THAT(text.str(), Catch::Contains(".entry " + captured.kernels.front().name));
    CHECK_THAT(text.str(), Catch::Contains(".maxntid " + std::to_string(threads)));
    // sm_80's own PTX ISA, whether or not a CUDA toolkit is installed (clang would take its version).
    CHECK_THAT(text.str(), Catch::Contains(".version 7.0"));
  }
  fs::remove_all(dir);
}

TEST_CASE("tetra-device refuses a malformed job by name, without crashing", "[gpu]") {
  if (!opencl_runs_here()) return;
  fs::path dir = work_dir("jobs");
  std::ofstream(dir / "k.cl") << "__kernel void k(__global float* y) { y[get_global_id(0)] = 1.0f; }\n";
  const std::string plan =
      R"({"kernel": "k", "shared_bytes": 0, "params": [{"name": "y", "kind": "buffer", "type": "f32", "read": false,
          "write": true}], "blocks": [["/", "y.extent.0", 4], 1, 1], "threads": [4, 1, 1]})";
  auto run = [&](const std::string& job) {
    std::ofstream(dir / "job.json") << job;
    return run_program({std::string(TETRA_BINARY_DIR) + "/bin/tetra-device", "run", (dir / "job.json").string()});
  };
  const std::string source = "\"source\": \"" + (dir / "k.cl").string() + "\"";
  // The job of kernel k with these buffers (a JSON object's text) and `more` top-level fields.
  auto job_with = [&](const std::string& buffers, const std::string& more = "") {
    return "{" + source + ", \"kernels\": [" + plan + "], \"scalars\": {}, \"buffers\": " + buffers + more + "}";
  };
  ProgramRun good =
      run(job_with(R"({"y": {"type": "f32", "extents": [8], "output": ")" + (dir / "y.bin").string() + R"("}})"));
  INFO(good.output);
  REQUIRE(good.ok());
  std::vector<float> y(8, 0.0f);
  std::ifstream(dir / "y.bin", std::ios::binary).read(reinterpret_cast<char*>(y.data()), 32);
  CHECK(y == std::vector<float>(8, 1.0f));

  struct Case {
    std::string job, message;
  };
  const std::string y8 = R"({"y": {"type": "f32", "extents": [8]}})";
  for (const Case& c : {
           Case{job_with(R"({"y": {"type": "f32", "extents": ["8"]}})"), "\"extents\" must be integers"},
           Case{job_with(R"({"y": {"type": "f32", "extents": [8], "strides": [1, 8]}})"),
                "\"strides\" must be as many integers"},
           Case{job_with(R"({"y": {"type": "f32", "extents": [8], "strides": [-2]}})"),
                "\"strides\" must be as many integers"},
           Case{job_with(R"({"y": {"type": "f32", "extents": [8]},
                             "v": {"type": "f32", "extents": [4], "strides": [3], "alias": "y"}})"),
                "views more than y holds"},
           Case{job_with(R"({"y": {"type": "f64", "extents": [8]}})"), "\"type\" must be one of"},
           Case{job_with("{}"), "no device buffer y"},
           Case{"{" + source + ", \"kernels\": {}, \"scalars\": {}, \"buffers\": {}}", "\"kernels\" is an array"},
           Case{"{\"source\": \"/nonexistent.cl\", \"kernels\": [], \"scalars\": {}, \"buffers\": {}}", "cannot read"},
           Case{"{" + source + ", \"kernels\": [" + plan + "], \"scalars\": {\"n\": \"x\"}, \"buffers\": {}}",
                "a scalar input is a number"},
           Case{"{\"source\": ", "not a readable JSON job"},
           Case{job_with(R"({"y": {"type": "f32", "extents": [8], "fill": {"seed": -1, "lo": 0, "hi": 1}}})"),
                "\"fill\" is {\"seed\""},
           Case{job_with(y8, R"(, "check": [{"buffer": "y", "expect": "none.bin", "tolerance": "none.bin"}])"),
                "does not hold 8 float32 values for y"},
           Case{job_with(y8, R"(, "timing": {"runs": 0, "bytes": 32})"), "\"runs\" must be"},
       }) {
    ProgramRun r = run(c.job);
    INFO(c.job << "\n" << r.output);
    CHECK(r.status == 1);
    CHECK_THAT(r.output, Catch::Contains(c.message));
  }
  fs::remove_all(dir);
}

TEST_CASE("tetra-device times a GEMV over copies of its weight, the last copy checked too", "[gpu]") {
  if (!opencl_runs_here()) return;
  const test::WeightSpec spec;  // int4 in blocks of 32 along k, float32 scales
  QMatMulWorkload w = workload_of(spec, 1, 256, 96);
  Schedule s = schedules::gpu_int4_gemv_default(w, gfx942());
  fs::path dir = work_dir("rotate");
  nlohmann::json job = qmatmul_job(w, s, capture(w, s), spec, 7, dir, JobDialect{});
  int64_t set_bytes = 0;
  for (const char* name : {"W_packed", "W_scale"}) {
    REQUIRE(job["buffers"].contains(name));
    set_bytes += int64_t(fs::file_size(dir / job["buffers"][name]["file"].get<std::string>()));
  }
  // Enough bytes for 9.5 sets: ten, the original among them.
  job["timing"] = {
      {"runs", 12}, {"bytes", 1}, {"rotate", {{"buffers", {"W_packed", "W_scale"}}, {"bytes", set_bytes * 19 / 2}}}};
  ProgramRun run = run_job(job, dir);
  INFO(run.output);
  REQUIRE(run.ok());
  nlohmann::json answer = nlohmann::json::parse(run.output.substr(run.output.rfind("{\"device\"")));
  CHECK(answer["timing"]["copies"] == 10);

  // Far more bytes than 256 sets hold: 256 sets.
  job["timing"]["rotate"]["bytes"] = set_bytes * 1000;
  run = run_job(job, dir);
  REQUIRE(run.ok());
  CHECK(nlohmann::json::parse(run.output.substr(run.output.rfind("{\"device\"")))["timing"]["copies"] == 256);

  // Only the job's own buffers rotate.
  job["timing"]["rotate"]["buffers"] = {"W_packed", "nope"};
  run = run_job(job, dir);
  CHECK(run.status == 1);
  CHECK_THAT(run.output, Catch::Contains("rotates only the job's buffers, not \"nope\""));
  fs::remove_all(dir);
}

TEST_CASE("tetra-device names the driver a dialect needs when it is missing", "[gpu]") {
  const std::string device = std::string(TETRA_BINARY_DIR) + "/bin/tetra-device";
  // CUDA: an NVIDIA GPU and its driver where there is one, else exit 2 naming libcuda.
  ProgramRun cuda = run_program({device, "info", "--dialect", "cuda"});
  INFO(cuda.output);
  if (cuda.status == 0) {
    CHECK_THAT(cuda.output, Catch::Contains("sm_"));
  } else {
    CHECK(cuda.status == 2);
    CHECK_THAT(cuda.output, Catch::Contains("CUDA"));
  }
  // HIP: an AMD GPU and its runtime where there are both, else exit 2 saying which was missing.
  ProgramRun hip = run_program({device, "info", "--dialect", "hip"});
  INFO(hip.output);
  if (hip.status == 0) {
    CHECK_THAT(hip.output, Catch::Contains("(gfx"));
  } else {
    CHECK(hip.status == 2);
    CHECK_THAT(hip.output, Catch::Contains("no HIP runtime (libamdhip64.so") || Catch::Contains("no HIP device"));
  }
  ProgramRun other = run_program({device, "info", "--dialect", "vulkan"});
  CHECK(other.status == 2);
  CHECK_THAT(other.output, Catch::Contains("no device runs the \"vulkan\" dialect"));
  ProgramRun usage = run_program({device, "check"});
  CHECK(usage.status == 2);
  CHECK_THAT(usage.output, Catch::Contains("usage"));
}

TEST_CASE("GPU capture refuses an intermediate left in device global memory, by name", "[gpu]") {
  // acc computed in a kernel of its own, into a buffer no launch allocates.
  test::WeightSpec spec;
  QMatMulWorkload w = workload_of(spec, 4, 64, 64);
  QMatMulDef q = define_qmatmul(w, 64);
  Halide::Var n = q.def.var("n"), j = q.def.var("j");
  Halide::Var no("no"), ni("ni"), jo("jo"), ji("ji");
  q.def.output.gpu_tile(n, no, ni, 64);
  q.def.stage("acc").compute_root().gpu_tile(j, jo, ji, 64);
  q.def.stage("acc").update().gpu_tile(j, jo, ji, 64);
  Result<CapturedPipeline> captured = capture_kernels({q.def.output}, q.def.arguments, "split");
  REQUIRE_FALSE(captured.ok());
  CHECK_THAT(captured.failure().describe(), Catch::Contains("the intermediate acc"));
  CHECK_THAT(captured.failure().describe(), Catch::Contains("device global memory"));
}

TEST_CASE("GPU emitter refuses a schedule that vectorizes a GPU loop, by kernel", "[gpu]") {
  // Device code is scalar per lane but for the wide loads of dsl/gpu/vector_loads.h.
  Halide::ImageParam in(Halide::Float(32), 1, "in");
  Halide::Func out("out");
  Halide::Var x("x"), xo("xo"), xi("xi"), xv("xv");
  out(x) = in(x)*2.0f + 1.0f;
  out.split(x, xo, xi, 256).split(xi, xi, xv, 4).gpu_blocks(xo).gpu_threads(xi).vectorize(xv);
  Result<CapturedPipeline> captured = capture_kernels({out}, {in}, "vec");
  REQUIRE(captured.ok());
  for (Dialect d : {Dialect::Hip, Dialect::OpenCL, Dialect::Cuda}) {
    Result<std::string> source = emit_kernels(captured.value().kernels, d);
    INFO(dialect_name(d) << (source.ok() ? "\n" + source.value() : ""));
    REQUIRE_FALSE(source.ok());
    CHECK_THAT(source.failure().describe(), Catch::Contains("vec_k0"));
    CHECK_THAT(source.failure().describe(), Catch::Contains("scalar per lane"));
  }
}

namespace {

// What resolving an int8-activation request gives for a weight of `spec` (k-blocked scales, or per n or
// per tensor): the vnni kernel format, float16 scales widened.
QMatMulWorkload int8_workload_of(const test::WeightSpec& spec, int64_t M, int64_t K, int64_t N, bool bias_relu) {
  QMatMulWorkload w = workload_of(spec, M, K, N, bias_relu);
  w.int8_activations = true;
  w.format = int8_kernel_format(w.format);
  REQUIRE(int8_activations_supported(w).ok());
  return w;
}

// A float16-activation workload (a float16 model's MatMul).
QMatMulWorkload f16_workload_of(const test::WeightSpec& spec, int64_t M, int64_t K, int64_t N, bool bias_relu) {
  QMatMulWorkload w = workload_of(spec, M, K, N, bias_relu);
  w.f16_activations = true;
  REQUIRE(f16_activations_supported(w).ok());
  return w;
}

// `kernels` built into a code object for every AMD arch of `archs`, each with no spills or scratch; returns
// each arch's disassembly, and in *resources, when given, each arch's kernel resources.
std::map<std::string, std::string> disassembly_per_arch(
    const std::vector<DeviceKernel>& kernels, const fs::path& dir, const std::vector<std::string>& archs = amd_archs(),
    std::map<std::string, std::vector<KernelResources>>* resources_per_arch = nullptr) {
  Result<std::string> clang = device_compiler();
  REQUIRE(clang.ok());  // clang-19 (scripts/setup.sh)
  const std::string objdump = "llvm-objdump" + clang.value().substr(clang.value().find("clang") + 5);
  std::map<std::string, std::string> code;
  for (const std::string& arch : archs) {
    INFO(arch);
    std::string object = (dir / (arch + ".co")).string();
    Result<std::vector<KernelResources>> resources =
        schedules::build_gpu_code_object(kernels, parse_target("hip:" + arch).value(), object);
    INFO((resources.ok() ? "" : resources.failure().describe()));
    REQUIRE(resources.ok());
    for (const KernelResources& k : resources.value()) {
      CHECK(k.vgpr_spills == 0);
      CHECK(k.sgpr_spills == 0);
      CHECK(k.scratch_bytes == 0);
    }
    ProgramRun disassembly = run_program({objdump, "-d", object});
    REQUIRE(disassembly.ok());
    code[arch] = disassembly.output;
    if (resources_per_arch) (*resources_per_arch)[arch] = resources.value();
  }
  return code;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// `kernels` in the CUDA dialect built to PTX for sm_90 and for sm_52 (before dp4a); returns each one's PTX.
std::map<std::string, std::string> ptx_per_sm(const std::vector<DeviceKernel>& kernels, const fs::path& dir) {
  Result<std::string> cuda = emit_kernels(kernels, Dialect::Cuda);
  REQUIRE(cuda.ok());
  std::map<std::string, std::string> ptx;
  for (const std::string sm : {"sm_90", "sm_52"}) {
    std::string path = (dir / (sm + ".ptx")).string();
    Status built = build_ptx(cuda.value(), sm, path);
    INFO(sm << " " << (built.ok() ? "" : built.failure().describe()));
    REQUIRE(built.ok());
    ptx[sm] = read_text(path);
  }
  return ptx;
}

}  // namespace

namespace {

// Every int8 form at the default and a random knob point of the int8 template `name`, on each shape, on
// pocl against the int8 reference; the number of runs.
// The runs of template `name` at its default and a random knob point on 5 weight forms of `shapes`, each
// workload made by `workload_of` (int8 or float16 activations), checked on the OpenCL device.
int check_activation_template(const std::string& name, const std::vector<std::tuple<int64_t, int64_t, int64_t>>& shapes,
                              QMatMulWorkload (*workload_of)(const test::WeightSpec&, int64_t, int64_t, int64_t,
                                                             bool)) {
  const schedules::QMatMulTemplate* t = schedules::find_qmatmul_template(name);
  REQUIRE(t);
  REQUIRE(t->activations != ActivationMode::Float32);
  fs::path dir = work_dir(name);
  std::vector<test::WeightSpec> specs(5);
  specs[0].granularity = test::Granularity::BlockedK, specs[0].block = 32;
  specs[1].type = DType::UInt4, specs[1].zero_point = true;  // MatMulNBits' form
  specs[1].granularity = test::Granularity::BlockedK, specs[1].block = 16;
  specs[2].granularity = test::Granularity::PerN;  // blocks of 32 activations, one scale per column
  specs[3].type = DType::UInt4, specs[3].granularity = test::Granularity::PerTensor;
  specs[4].granularity = test::Granularity::BlockedK, specs[4].block = 64, specs[4].f16_scale = true;
  std::mt19937_64 rng(20261205);
  int runs = 0;
  for (const auto& [M, K, N] : shapes)
    for (size_t f = 0; f < specs.size(); ++f) {
      QMatMulWorkload w = workload_of(specs[f], M, K, N, /*bias_relu=*/f % 2 == 1);
      // A workload of the template's activations.
      REQUIRE(schedules::find_qmatmul_template(schedules::gpu_default_qmatmul_template(w))->activations ==
              t->activations);
      KnobSpace space = t->space(w, gfx942());
      for (int i = 0, tries = 0; i <= 1 && tries < 100; ++tries) {
        Schedule s = i == 0 ? t->default_schedule(w, gfx942()) : space.sample(rng);
        if (!t->check_conflicts(w, s, gfx942()).ok()) continue;
        ++i;
        INFO(w.key() << " " << s.to_string());
        CapturedPipeline captured = capture(w, s);
        ProgramRun run = run_on_device(w, s, captured, specs[f], 7 + runs, dir);
        INFO(run.output);
        CHECK(run.status == 0);  // ran, and matched the reference of its activations
        ++runs;
      }
    }
  fs::remove_all(dir);
  return runs;
}

}  // namespace

TEST_CASE(
    "GPU int8-activation GEMV: every int8 form and random knob points match the int8 reference on an OpenCL "
    "device",
    "[gpu][int8]") {
  if (!opencl_runs_here()) return;
  // K past a whole number of blocks and of split_k; N past a whole panel; up to 8 rows.
  CHECK(check_activation_template("gpu_int4_gemv_a8", {{1, 512, 200}, {3, 200, 130}, {8, 1024, 64}},
                                  int8_workload_of) == 30);
}

TEST_CASE("GPU GEMVs with weight panels padded off the channel period match the reference on an OpenCL device",
          "[gpu]") {
  if (!opencl_runs_here()) return;
  fs::path dir = work_dir("gemv_panel_pad");
  test::WeightSpec spec;
  spec.granularity = test::Granularity::BlockedK, spec.block = 32;
  const std::vector<std::pair<std::string, std::function<QMatMulWorkload(int64_t K)>>> gemvs = {
      {"gpu_int4_gemv", [&](int64_t K) { return workload_of(spec, 2, K, 200, true); }},
      {"gpu_int4_gemv_a8", [&](int64_t K) { return int8_workload_of(spec, 2, K, 200, true); }},
      {"gpu_int4_gemv_h2", [&](int64_t K) { return f16_workload_of(spec, 2, K, 200, true); }}};
  int runs = 0;
  for (const auto& [name, workload] : gemvs) {
    const schedules::QMatMulTemplate* t = schedules::find_qmatmul_template(name);
    // 64 columns a panel on gfx942: 512 values of k make panels of 16 KiB, a multiple of 512 bytes, which the
    // default pads. The float32 GEMV's panels over 200 are 6400 bytes, which it leaves dense (the others pad
    // K to whole blocks of 32, so their panels are always whole KiB).
    if (name == "gpu_int4_gemv") CHECK(t->default_schedule(workload(200), gfx942()).get_int("panel_pad") == 0);
    const QMatMulWorkload w = workload(512);
    for (int64_t split_k : {1, 4}) {
      Schedule s = t->default_schedule(w, gfx942());
      CHECK(s.get_int("panel_pad") == 256);
      s.knobs["split_k"] = split_k;
      INFO(w.key() << " " << s.to_string());
      REQUIRE(t->check_conflicts(w, s, gfx942()).ok());
      CHECK(t->layout(s).panel_pad_bytes == 256);
      nlohmann::json job = qmatmul_job(w, s, capture(w, s), spec, 90 + runs, dir, JobDialect{}, nullptr);
      // The job holds the weight as packed: panels of 64 x 512/8 words, each followed by 64 words of zeros.
      CHECK(job["buffers"]["W_packed"]["strides"] == nlohmann::json({1, 64, 64 * 64 + 64}));
      ProgramRun run = run_job(job, dir);
      INFO(run.output);
      CHECK(run.status == 0);  // every panel past the first is read at its padded place
      ++runs;
    }
  }
  CHECK(runs == 6);
  fs::remove_all(dir);
}

TEST_CASE(
    "GPU int8-activation GEMM: every int8 form and random knob points match the int8 reference on an OpenCL "
    "device",
    "[gpu][int8]") {
  if (!opencl_runs_here()) return;
  // Rows past a whole row tile, K past a whole chunk of k-blocks, N past a whole panel.
  CHECK(check_activation_template("gpu_int4_gemm_a8", {{9, 200, 130}, {40, 512, 96}}, int8_workload_of) == 20);
}

TEST_CASE(
    "GPU float16-activation GEMV: every form and random knob points match the reference on float16 values on an "
    "OpenCL device",
    "[gpu][f16]") {
  if (!opencl_runs_here()) return;
  // K past a whole number of blocks and of split_k; N past a whole panel; up to 8 rows.
  CHECK(check_activation_template("gpu_int4_gemv_h2", {{1, 512, 200}, {3, 200, 130}, {8, 1024, 64}}, f16_workload_of) ==
        30);
  // Where it is not the default: many rows (the float16 GEMM), k-blocks of 4, a row of A past workgroup
  // memory (the float32 GEMV).
  test::WeightSpec spec;
  CHECK(schedules::gpu_default_qmatmul_template(f16_workload_of(spec, 9, 512, 64, false)) == "gpu_int4_gemm_h2");
  CHECK(schedules::gpu_default_qmatmul_template(f16_workload_of(spec, 1, 32768, 64, false)) == "gpu_int4_gemv");
  test::WeightSpec small_blocks;
  small_blocks.granularity = test::Granularity::BlockedK, small_blocks.block = 4;
  QMatMulWorkload w4 = workload_of(small_blocks, 1, 64, 64, false);
  w4.f16_activations = true;
  CHECK_FALSE(f16_activations_supported(w4).ok());
  CHECK(schedules::gpu_default_qmatmul_template(w4) == "gpu_int4_gemv");
  // Nor on CPUs: there float16 activations resolve to float32 (exact on float16 values).
  CHECK_FALSE(
      schedules::resolve_qmatmul(f16_workload_of(spec, 1, 512, 64, false), parse_target("x86-64-avx512").value())
          .workload.f16_activations);
  CHECK(schedules::resolve_qmatmul(f16_workload_of(spec, 1, 512, 64, false), gfx942()).workload.f16_activations);
}

TEST_CASE(
    "GPU float16-activation GEMM: every form and random knob points match the reference on float16 values on an "
    "OpenCL device",
    "[gpu][f16]") {
  if (!opencl_runs_here()) return;
  // Rows past a whole row tile, K past a whole chunk of k-blocks, N past a whole panel.
  CHECK(check_activation_template("gpu_int4_gemm_h2", {{9, 200, 130}, {40, 512, 96}}, f16_workload_of) == 20);
  // Where it is not the default: k-blocks so long that the default's chunk of 32 rows is past workgroup
  // memory (the float32 GEMM).
  test::WeightSpec long_blocks;
  long_blocks.granularity = test::Granularity::BlockedK, long_blocks.block = 1024;
  CHECK(schedules::gpu_default_qmatmul_template(f16_workload_of(long_blocks, 9, 2048, 64, false)) ==
        "gpu_int4_gemm_h2");
  CHECK(schedules::gpu_default_qmatmul_template(f16_workload_of(long_blocks, 40, 2048, 64, false)) == "gpu_int4_gemm");
}

TEST_CASE("GPU GEMMs: the columns past N read the weight's padding, and a weight without it is refused by name",
          "[gpu]") {
  if (!opencl_runs_here()) return;
  fs::path dir = work_dir("gemm_touched");
  test::WeightSpec spec;
  spec.granularity = test::Granularity::BlockedK, spec.block = 32;
  // 130 columns in tiles of 64, 2 a thread: the block of columns 128..191 reads 32 panels, of which the
  // weight's 65 hold one. Packed in whole tiles, the weight has 96, the last 31 zero.
  const QMatMulWorkload float32 = workload_of(spec, 9, 96, 130), int8 = int8_workload_of(spec, 9, 96, 130, false),
                        float16 = f16_workload_of(spec, 9, 96, 130, false);
  for (const auto& [w, name] : {std::pair{float32, "gpu_int4_gemm"}, std::pair{int8, "gpu_int4_gemm_a8"},
                                std::pair{float16, "gpu_int4_gemm_h2"}}) {
    const schedules::QMatMulTemplate* t = schedules::find_qmatmul_template(name);
    Schedule s = t->default_schedule(w, gfx942());
    s.knobs["tile_n"] = int64_t(64), s.knobs["thread_n"] = int64_t(2);
    INFO(w.key() << " " << s.to_string());
    REQUIRE(t->check_conflicts(w, s, gfx942()).ok());
    CHECK(t->layout(s).panel_multiple == 32);
    CHECK(packed_panels(t->layout(s), w.N) == 96);
    nlohmann::json job = qmatmul_job(w, s, capture(w, s), spec, 5, dir, JobDialect{}, nullptr);
    CHECK(job["buffers"]["W_packed"]["extents"][2] == 96);
    ProgramRun run = run_schedule_job(job, s, dir);
    INFO(run.output);
    CHECK(run.status == 0);
    // The same job with the weight cut to the panels that hold columns: the launch is refused before it
    // reads past the weight, naming the kernel, the buffer and the panels.
    const nlohmann::json& packed = job["buffers"]["W_packed"];
    const int64_t panel_bytes =
        (packed.contains("strides") ? packed["strides"][2].get<int64_t>()
                                    : packed["extents"][0].get<int64_t>() * packed["extents"][1].get<int64_t>()) *
        (packed["type"] == "u32" ? 4 : 1);
    job["buffers"]["W_packed"]["extents"][2] = 65;
    fs::resize_file(dir / packed["file"].get<std::string>(), uintmax_t(65 * panel_bytes));
    ProgramRun cut = run_schedule_job(job, s, dir);
    INFO(cut.output);
    CHECK(cut.status != 0);
    CHECK_THAT(cut.output, Catch::Contains("touches W_packed beyond the buffer: dimension 2 over [0, 95], and it "
                                           "holds [0, 64]"));
  }
  fs::remove_all(dir);
}

TEST_CASE("GPU int8-activation GEMM split in k, or one row a thread: every form of k-blocks, partial tiles", "[gpu]") {
  if (!opencl_runs_here()) return;
  fs::path dir = work_dir("gemm_a8_split_k");
  test::WeightSpec blocked, per_column;
  blocked.granularity = test::Granularity::BlockedK, blocked.block = 32, blocked.zero_point = true;
  per_column.granularity = test::Granularity::PerN;
  int runs = 0;
  for (const test::WeightSpec& spec : {blocked, per_column})
    for (int64_t blocks : {13, 16})  // K past a whole chunk of 4 k-blocks, and whole chunks
      for (int64_t split : {1, 2, 4}) {
        // Rows past a whole row tile, N past a whole panel; unsplit, one row a thread.
        QMatMulWorkload w = int8_workload_of(spec, 40, blocks * 32, 72, false);
        Schedule s = schedules::gpu_int4_gemm_a8_default(w, gfx942());
        s.knobs["tile_k"] = int64_t(4), s.knobs["split_k"] = split;
        if (split == 1) s.knobs["thread_m"] = int64_t(1);
        INFO(w.key() << " " << s.to_string());
        REQUIRE(schedules::gpu_int4_gemm_a8_check(w, s, gfx942()).ok());
        CapturedPipeline captured = capture(w, s);
        REQUIRE(captured.kernels.size() == 1);
        CHECK(constant_threads_per_block(captured.kernels[0]) ==
              s.get_int("tile_n") / s.get_int("thread_n") * s.get_int("tile_m") / s.get_int("thread_m") * split);
        ProgramRun run = run_on_device(w, s, captured, spec, 120 + runs, dir);
        INFO(run.output);
        CHECK(run.status == 0);  // ran, and matched the int8 reference
        ++runs;
      }
  CHECK(runs == 12);
  // Split, the block's partial tiles are summed in workgroup memory: without its barriers the sum is wrong.
  QMatMulWorkload w = int8_workload_of(test::WeightSpec{}, 40, 512, 96, false);
  Schedule s = schedules::gpu_int4_gemm_a8_default(w, gfx942());
  s.knobs["split_k"] = int64_t(2);
  check_barriers_matter(w, s, "barrier_gemm_a8_split_k");
  fs::remove_all(dir);
}

TEST_CASE("GPU float16-activation GEMM with split_k or the weight's code pairs staged: every form of k-blocks",
          "[gpu][f16]") {
  if (!opencl_runs_here()) return;
  fs::path dir = work_dir("gemm_h2_split_k");
  test::WeightSpec blocked, nbits;
  blocked.granularity = test::Granularity::BlockedK, blocked.block = 32;
  nbits.type = DType::UInt4, nbits.zero_point = true;  // MatMulNBits' form
  nbits.granularity = test::Granularity::BlockedK, nbits.block = 16;
  int runs = 0;
  for (const test::WeightSpec& spec : {blocked, nbits})
    for (int64_t blocks : {13, 16})  // K past a whole chunk of 4 k-blocks, and whole chunks
      for (int64_t split : {2, 4}) {
        // Rows past a whole row tile, N past a whole panel.
        QMatMulWorkload w = f16_workload_of(spec, 40, blocks * spec.block, 72, split == 4);
        Schedule s = schedules::gpu_int4_gemm_h2_default(w, gfx942());
        s.knobs["tile_k"] = int64_t(4), s.knobs["split_k"] = split;
        INFO(w.key() << " " << s.to_string());
        REQUIRE(schedules::gpu_int4_gemm_h2_check(w, s, gfx942()).ok());
        CapturedPipeline captured = capture(w, s);
        CHECK(constant_threads_per_block(captured.kernels[0]) ==
              s.get_int("tile_n") / s.get_int("thread_n") * s.get_int("tile_m") / s.get_int("thread_m") * split);
        ProgramRun run = run_on_device(w, s, captured, spec, 80 + runs, dir);
        INFO(run.output);
        CHECK(run.status == 0);  // ran, and matched the reference of its activations
        ++runs;
      }
  CHECK(runs == 8);
  // The weight's code pairs made once a block in workgroup memory (shared_stage "aw_dequant"), at 4 x 4
  // outputs a thread, split and not: K past a whole chunk of 2 (or split, 4) k-blocks, and whole chunks.
  // Split, the chunk's pairs are bounded whole: else Halide's bounds of the weight grow past its end.
  for (const test::WeightSpec& spec : {blocked, nbits})
    for (int64_t blocks : {13, 16})
      for (int64_t split : {1, 2}) {
        QMatMulWorkload w = f16_workload_of(spec, 40, blocks * spec.block, 72, split == 2);
        Schedule s = schedules::gpu_int4_gemm_h2_default(w, gfx942());
        const int64_t KC = split == 2 ? 4 : 2;
        s.knobs["shared_stage"] = std::string("aw_dequant"), s.knobs["tile_k"] = KC;
        s.knobs["thread_n"] = int64_t(4), s.knobs["split_k"] = split;
        INFO(w.key() << " " << s.to_string());
        REQUIRE(schedules::gpu_int4_gemm_h2_check(w, s, gfx942()).ok());
        CapturedPipeline captured = capture(w, s);
        REQUIRE(captured.kernels.size() == 1);
        // Workgroup memory holds A's chunk (tile_m rows of KC k-blocks in float16, and their sums) and the
        // weight's, a float16 code a value, and the partial tiles (Halide may place them over the chunks).
        const int64_t B = spec.block, TM = s.get_int("tile_m"), P = s.get_int("tile_n");
        const int64_t chunks = TM * KC * (B * 2 + 4) + P * KC * B * 2, partials = P * TM * split * 4;
        CHECK(captured.kernels[0].shared_bytes >= chunks);
        CHECK(captured.kernels[0].shared_bytes <= chunks + (split > 1 ? partials : 0));
        ProgramRun run = run_on_device(w, s, captured, spec, 80 + runs, dir);
        INFO(run.output);
        CHECK(run.status == 0);  // ran, and matched the reference of its activations
        ++runs;
      }
  CHECK(runs == 16);
  fs::remove_all(dir);
}

TEST_CASE("GPU float16-activation GEMVs and GEMM: v_dot2_f32_f16 on every AMD arch with no spills, and PTX",
          "[gpu][f16]") {
  fs::path dir = work_dir("gemv_h2_archs");
  test::WeightSpec spec;
  spec.granularity = test::Granularity::BlockedK, spec.block = 32;
  QMatMulWorkload w = f16_workload_of(spec, 1, 4096, 4096, false);
  Schedule s = schedules::gpu_int4_gemv_h2_default(w, gfx942());
  s.knobs["split_k"] = int64_t(4), s.knobs["thread_n"] = int64_t(2);
  CapturedPipeline captured = capture(w, s);
  // The GEMM at its default on MI300X (2 columns x 4 rows a thread, the weight's code pairs made once a
  // block) and on MI210 (4 x 4).
  QMatMulWorkload gemm = f16_workload_of(spec, 128, 4096, 4096, false);
  Schedule g = schedules::gpu_int4_gemm_h2_default(gemm, gfx942()),
           g4 = schedules::gpu_int4_gemm_h2_default(gemm, parse_target("hip:gfx90a").value());
  REQUIRE(g.get_int("thread_n") * g.get_int("thread_m") == 8);
  REQUIRE(g4.get_int("thread_n") * g4.get_int("thread_m") == 16);
  // The lanes' GEMV at a wave of 32 (which every arch's wave holds), 2 columns a lane.
  Schedule lanes = schedules::gpu_int4_gemv_h2_wave_default(w, parse_target("hip:gfx1100").value());
  lanes.knobs["thread_n"] = int64_t(2);
  // v_dot2_f32_f16, or its accumulating forms (v_dot2c_f32_f16 on gfx9 and gfx10, v_dot2acc_f32_f16 on
  // gfx11, also dual-issued), unrolled over a k-block's 4 words of 4 pairs: 2 columns make 32, and the
  // GEMM's 8 outputs 128 (16: 256).
  for (const auto& [kernels, schedule, least] :
       {std::tuple{captured.kernels, s, size_t(32)}, std::tuple{capture(gemm, g).kernels, g, size_t(128)},
        std::tuple{capture(gemm, g4).kernels, g4, size_t(256)},
        std::tuple{capture(w, lanes).kernels, lanes, size_t(32)}}) {
    INFO(schedule.to_string());
    for (const auto& [arch, code] : disassembly_per_arch(kernels, dir)) {
      INFO(arch);
      size_t dots = 0;
      for (const std::string op : {"_dot2_f32_f16", "_dot2c_f32_f16", "_dot2acc_f32_f16"})
        for (size_t at = code.find(op); at != std::string::npos; at = code.find(op, at + 1)) ++dots;
      CHECK(dots >= least);
      // The lanes' sums meet through cross-lane reads.
      if (schedule.template_name == lanes.template_name) CHECK(code.find("ds_bpermute_b32") != std::string::npos);
    }
  }
  // The lanes' GEMV: a lane's k-block of each of its columns is 4 adjacent words, one 16-byte load.
  Result<std::string> opencl = emit_kernels(capture(w, lanes).kernels, Dialect::OpenCL);
  REQUIRE(opencl.ok());
  CHECK_THAT(opencl.value(), Catch::Contains("vload4(0, _W_packed + "));
  CHECK_THAT(opencl.value(), !Catch::Contains("_W_packed["));
  CHECK(ptx_per_sm(captured.kernels, dir).size() == 2);
  fs::remove_all(dir);
}

TEST_CASE("GPU GEMVs: streamed weights load nontemporally on every AMD arch, and only they", "[gpu]") {
  fs::path dir = work_dir("gemv_streaming"), cached_dir = work_dir("gemv_cached");
  test::WeightSpec spec;
  spec.granularity = test::Granularity::BlockedK, spec.block = 32;
  // The three GEMVs, the float32 one at 2 columns a thread (8-byte weight loads).
  Schedule f32 = schedules::gpu_int4_gemv_default(workload_of(spec, 1, 4096, 4096), gfx942());
  f32.knobs["split_k"] = int64_t(4), f32.knobs["thread_n"] = int64_t(2);
  const std::vector<std::pair<QMatMulWorkload, Schedule>> gemvs = {
      {workload_of(spec, 1, 4096, 4096), f32},
      {int8_workload_of(spec, 1, 4096, 4096, false),
       schedules::gpu_int4_gemv_a8_default(int8_workload_of(spec, 1, 4096, 4096, false), gfx942())},
      {f16_workload_of(spec, 1, 4096, 4096, false),
       schedules::gpu_int4_gemv_h2_default(f16_workload_of(spec, 1, 4096, 4096, false), gfx942())}};
  // A global load with the arch's streaming bits: slc (gfx9 to gfx11), nt (gfx942), TH_LOAD_NT (gfx12).
  auto loads = [](const std::string& code, bool streaming) {
    size_t count = 0;
    std::istringstream lines(code);
    for (std::string line; std::getline(lines, line);) {
      if (line.find("global_load") == std::string::npos) continue;
      const bool marked = line.find(" slc") != std::string::npos || line.find(" nt ") != std::string::npos ||
                          line.find("TH_LOAD_NT") != std::string::npos;
      count += marked == streaming;
    }
    return count;
  };
  for (const auto& [w, cached] : gemvs) {
    Schedule streaming = cached;
    streaming.knobs["weight_loads"] = std::string("streaming");
    INFO(streaming.to_string());
    CapturedPipeline plain = capture(w, cached), streamed = capture(w, streaming);
    REQUIRE(streamed.kernels.size() == 1);
    // The weight's buffers, not A nor the output.
    CHECK(streamed.kernels[0].streamed_buffers.count("W_packed"));
    CHECK(streamed.kernels[0].streamed_buffers.count("W_scale"));
    CHECK_FALSE(streamed.kernels[0].streamed_buffers.count("A"));
    CHECK(plain.kernels[0].streamed_buffers.empty());
    // HIP and CUDA say so in the source; OpenCL C has no way to.
    const std::string nontemporal = "__builtin_nontemporal_load(";
    CHECK(emit_kernels(streamed.kernels, Dialect::Hip).value().find(nontemporal) != std::string::npos);
    CHECK(emit_kernels(streamed.kernels, Dialect::Cuda).value().find(nontemporal) != std::string::npos);
    CHECK(emit_kernels(plain.kernels, Dialect::Hip).value().find(nontemporal) == std::string::npos);
    CHECK(emit_kernels(streamed.kernels, Dialect::OpenCL).value().find("nontemporal") == std::string::npos);
    CHECK(ptx_per_sm(streamed.kernels, dir).size() == 2);  // and CUDA builds it
    std::map<std::string, std::string> cached_code = disassembly_per_arch(plain.kernels, cached_dir);
    for (const auto& [arch, code] : disassembly_per_arch(streamed.kernels, dir)) {
      INFO(arch);
      CHECK(loads(cached_code[arch], true) == 0);
      // Some loads stream (the weight's) and some do not (A's), and there are as many loads as in the
      // cached kernel: streaming loads are combined as wide.
      CHECK(loads(code, true) > 0);
      CHECK(loads(code, false) > 0);
      CHECK(loads(code, true) + loads(code, false) == loads(cached_code[arch], false));
    }
  }
  fs::remove_all(dir);
  fs::remove_all(cached_dir);
}

TEST_CASE("GPU int8-activation GEMV and GEMM: each AMD arch's own 4-way dot instruction, no spills, dp4a in PTX",
          "[gpu][int8]") {
  fs::path dir = work_dir("gemv_a8_archs");
  test::WeightSpec spec;
  spec.granularity = test::Granularity::BlockedK, spec.block = 32;
  // The GEMV at 4 threads a column and 2 columns a thread; the GEMM at its default.
  QMatMulWorkload w = int8_workload_of(spec, 1, 4096, 4096, false);
  Schedule s = schedules::gpu_int4_gemv_a8_default(w, gfx942());
  s.knobs["split_k"] = int64_t(4), s.knobs["thread_n"] = int64_t(2);
  CapturedPipeline captured = capture(w, s);
  QMatMulWorkload gemm = int8_workload_of(spec, 128, 4096, 4096, false);
  Schedule g = schedules::gpu_int4_gemm_a8_default(gemm, gfx942());
  // The lanes' GEMV at a wave of 32 (which every arch's wave holds), 2 columns a lane.
  Schedule lanes = schedules::gpu_int4_gemv_a8_wave_default(w, parse_target("hip:gfx1100").value());
  lanes.knobs["thread_n"] = int64_t(2);
  for (const auto& [kernels, schedule] : {std::pair{captured.kernels, s}, std::pair{capture(gemm, g).kernels, g},
                                          std::pair{capture(w, lanes).kernels, lanes}}) {
    INFO(schedule.to_string());
    for (const auto& [arch, code] : disassembly_per_arch(kernels, dir)) {
      INFO(arch);
      // The instruction the arch's facts name (dsl/core/amd_arch.h), and never the other: a wrong fact
      // either fails to build or shows here.
      const bool mixed = find_amd_arch(arch)->int8_dot4 == Int8Dot4::Mixed;
      CHECK((code.find("v_dot4_i32_iu8") != std::string::npos) == mixed);
      CHECK((code.find("_i32_i8") != std::string::npos) == !mixed);  // v_dot4_i32_i8 or v_dot4c_i32_i8
      // The lanes' sums meet through cross-lane reads.
      if (schedule.template_name == lanes.template_name) CHECK_THAT(code, Catch::Contains("ds_bpermute_b32"));
    }
  }
  // The lanes' GEMV: a lane's k-block of each of its columns is 4 adjacent words, one 16-byte load.
  Result<std::string> opencl = emit_kernels(capture(w, lanes).kernels, Dialect::OpenCL);
  REQUIRE(opencl.ok());
  CHECK_THAT(opencl.value(), Catch::Contains("vload4(0, _W_packed + "));
  CHECK_THAT(opencl.value(), !Catch::Contains("_W_packed["));
  for (const auto& [sm, ptx] : ptx_per_sm(captured.kernels, dir)) {
    INFO(sm);
    // dp4a from sm_61 on; before it, the plain arithmetic.
    CHECK((ptx.find("dp4a.s32.s32") != std::string::npos) == (sm == "sm_90"));
  }
  fs::remove_all(dir);
}

TEST_CASE(
    "GPU int4 GEMV with a column's k across a wave's lanes: random knob points match the reference on an "
    "OpenCL device, and fail it without the lanes' exchanges",
    "[gpu]") {
  if (!opencl_runs_here()) return;
  // K a multiple of the lanes' words, past them, and odd; N past a whole block of columns.
  CHECK(run_random_points("gpu_int4_gemv_wave", {{1, 512, 64}, {3, 200, 130}, {2, 1024, 33}}, 2, 20261206) == 36);
  test::WeightSpec spec;
  QMatMulWorkload w = workload_of(spec, 1, 2048, 96);
  check_exchanges_matter(w, schedules::gpu_int4_gemv_wave_default(w, gfx942()), spec, "gemv_wave_exchanges");
}

TEST_CASE(
    "GPU int4 GEMV with a column's k across a wave's lanes: cross-lane reads and no workgroup memory on every "
    "AMD arch, 16-byte weight loads, shfl.bfly in PTX",
    "[gpu]") {
  fs::path dir = work_dir("gemv_wave_archs");
  test::WeightSpec spec;
  spec.granularity = test::Granularity::BlockedK, spec.block = 32;
  QMatMulWorkload w = workload_of(spec, 1, 4096, 4096);
  // The default for a wave of 64 (gfx9) and of 32 (gfx10 and later): a wave a column; and a wave of 32 for
  // 2 columns a lane (2 lane sums a thread).
  for (const auto& [wave_target, columns_a_lane] :
       {std::pair{"hip:gfx942", 1}, {"hip:gfx1100", 1}, {"hip:gfx1100", 2}}) {
    const TargetSpec target = parse_target(wave_target).value();
    Schedule s = schedules::gpu_int4_gemv_wave_default(w, target);
    CHECK(s.get_int("lanes") == target.wavefront);
    s.knobs["thread_n"] = int64_t(columns_a_lane);
    CapturedPipeline captured = capture_qmatmul(w, s, target);
    REQUIRE(captured.kernels.size() == 1);
    CHECK(captured.kernels[0].shared_bytes == 0);
    Result<std::string> opencl = emit_kernels(captured.kernels, Dialect::OpenCL);
    REQUIRE(opencl.ok());
    // A lane's 4 adjacent words of each of its columns: one 16-byte load each.
    CHECK_THAT(opencl.value(), Catch::Contains("vload4(0, _W_packed + "));
    CHECK_THAT(opencl.value(), !Catch::Contains("_W_packed["));
    // Built for the archs whose wave holds a column's lanes; refused for the others (64 lanes in a wave of
    // 32), not summed wrong.
    // (The 2 columns a lane: on its own arch only, the exchanges' code being the same.)
    std::vector<std::string> fits;
    for (const std::string& arch : amd_archs()) {
      if (columns_a_lane > 1 && "hip:" + arch != wave_target) continue;
      if (parse_target("hip:" + arch).value().wavefront >= s.get_int("lanes")) {
        fits.push_back(arch);
        continue;
      }
      INFO(wave_target << " built for " << arch);
      Result<std::vector<KernelResources>> refused = schedules::build_gpu_code_object(
          captured.kernels, parse_target("hip:" + arch).value(), (dir / (arch + ".co")).string());
      REQUIRE_FALSE(refused.ok());
      CHECK_THAT(refused.failure().describe(), Catch::Contains("wider than this arch's wave"));
    }
    std::map<std::string, std::vector<KernelResources>> resources;
    for (const auto& [arch, code] : disassembly_per_arch(captured.kernels, dir, fits, &resources)) {
      INFO(wave_target << " built for " << arch);
      CHECK_THAT(code, Catch::Contains("ds_bpermute_b32"));
      for (const KernelResources& k : resources.at(arch)) CHECK(k.lds_bytes == 0);  // no workgroup memory
    }
    if (target.wavefront == 32)
      for (const auto& [sm, ptx] : ptx_per_sm(captured.kernels, dir)) {
        INFO(sm);
        CHECK_THAT(ptx, Catch::Contains("shfl.sync.bfly.b32"));
      }
  }
  fs::remove_all(dir);
}

namespace {
// A lanes' GEMV over k-blocks (gpu_int4_gemv_h2_wave or _a8_wave, its workloads made by `workload_of`):
// every form at its default and a random knob point on the OpenCL device, then its default with and
// without the lanes' exchanges.
void check_kblock_lanes_template(const std::string& name,
                                 QMatMulWorkload (*workload_of)(const test::WeightSpec&, int64_t, int64_t, int64_t,
                                                                bool)) {
  // K past a whole number of blocks and of lanes; N past a whole block of columns; up to 8 rows.
  CHECK(check_activation_template(name, {{1, 512, 200}, {3, 200, 130}, {8, 1024, 64}}, workload_of) == 30);
  test::WeightSpec spec;
  spec.granularity = test::Granularity::BlockedK, spec.block = 32;
  QMatMulWorkload w = workload_of(spec, 1, 2048, 96, false);
  const schedules::QMatMulTemplate* t = schedules::find_qmatmul_template(name);
  REQUIRE(t);
  check_exchanges_matter(w, t->default_schedule(w, gfx942()), spec, name + "_exchanges");
}
}  // namespace

TEST_CASE(
    "GPU float16-activation GEMV with a column's k-blocks across a wave's lanes: every form and random knob points "
    "match the reference on float16 values on an OpenCL device, and fail it without the lanes' exchanges",
    "[gpu][f16]") {
  if (!opencl_runs_here()) return;
  check_kblock_lanes_template("gpu_int4_gemv_h2_wave", f16_workload_of);
}

TEST_CASE(
    "GPU int8-activation GEMV with a column's k-blocks across a wave's lanes: every int8 form and random knob "
    "points match the int8 reference on an OpenCL device, and fail it without the lanes' exchanges",
    "[gpu][int8]") {
  if (!opencl_runs_here()) return;
  check_kblock_lanes_template("gpu_int4_gemv_a8_wave", int8_workload_of);
}

TEST_CASE("GPU capture refuses a lane sum of an array that is not one lane's write and its column's reads, by name",
          "[gpu]") {
  test::WeightSpec spec;
  QMatMulWorkload w = workload_of(spec, 1, 512, 64);
  Schedule s = schedules::gpu_int4_gemv_wave_default(w, gfx942());
  const schedules::QMatMulTemplate* t = schedules::find_qmatmul_template(s.template_name);
  REQUIRE(t);
  QMatMulDef q = schedules::define_gpu_qmatmul(w, *t, s);
  REQUIRE(t->apply(q, s, gfx942()).ok());
  // The accumulators: lane 0's, set to 0 and then summed into, not each lane's one value of a column.
  GpuKernelHints marked = q.def.gpu;
  marked.lane_sums.insert(q.def.stage("acc").name());
  Result<CapturedPipeline> captured = capture_kernels({q.def.output}, q.def.arguments, "gemv", marked);
  REQUIRE_FALSE(captured.ok());
  CHECK_THAT(captured.failure().describe(), Catch::Contains("the lane sum acc"));
}

namespace {
// The barriers a chunk of the GEMM in `hip` meets: those inside its loop over chunks (RVar "kc").
size_t barriers_per_chunk(const std::string& hip) {
  std::smatch loop;
  REQUIRE(std::regex_search(hip, loop, std::regex(R"(for \(int (\w+_kc) = )")));
  const size_t begin = size_t(loop.position(0)), end = hip.find("} // for " + loop[1].str(), begin);
  REQUIRE(end != std::string::npos);
  return count_of(hip.substr(begin, end - begin), "__builtin_amdgcn_s_barrier()");
}
}  // namespace

TEST_CASE(
    "GPU GEMMs double-buffered: one barrier a chunk fewer in twice the workgroup memory, right on an OpenCL "
    "device, wrong without their barriers, and without spills on AMD archs",
    "[gpu]") {
  const bool runs_here = opencl_runs_here();
  fs::path dir = work_dir("double_buffer");
  test::WeightSpec blocked, nbits;
  nbits.type = DType::UInt4, nbits.zero_point = true;  // MatMulNBits' form
  nbits.granularity = test::Granularity::BlockedK, nbits.block = 16;
  struct Case {
    QMatMulWorkload w;
    Schedule s;
    test::WeightSpec spec;
  };
  std::vector<Case> cases;
  // The float32 GEMM with A staged: 7 whole chunks of 32 and a part (the last chunk prefetched is an even
  // one), and 8 whole chunks.
  for (int64_t K : {232, 256}) {
    QMatMulWorkload w = workload_of(nbits, 40, K, 72, /*bias_relu=*/K == 232);
    cases.push_back({w, schedules::gpu_int4_gemm_default(w, gfx942()), nbits});
  }
  {  // A and the weight staged, split_k 2, a partial row and column tile.
    QMatMulWorkload w = workload_of(blocked, 9, 200, 130);
    Schedule s = schedules::gpu_int4_gemm_default(w, gfx942());
    s.knobs["shared_stage"] = std::string("aw"), s.knobs["split_k"] = int64_t(2), s.knobs["tile_k"] = int64_t(16);
    cases.push_back({w, s, blocked});
    // The weight dequantized in workgroup memory (MatMulNBits' form): the fetch into registers dequantizes;
    // 5 chunks of 16 and a part.
    QMatMulWorkload dq = workload_of(nbits, 40, 88, 72);
    s = schedules::gpu_int4_gemm_default(dq, gfx942());
    s.knobs["shared_stage"] = std::string("aw_dequant"), s.knobs["tile_k"] = int64_t(16);
    cases.push_back({dq, s, nbits});
  }
  {  // The float16 GEMM with split_k 2: 16 k-blocks in chunks of 4.
    QMatMulWorkload w = f16_workload_of(nbits, 40, 16 * 16, 72, true);
    Schedule s = schedules::gpu_int4_gemm_h2_default(w, gfx942());
    s.knobs["tile_k"] = int64_t(4), s.knobs["split_k"] = int64_t(2);
    cases.push_back({w, s, nbits});
    // With the weight's code pairs staged too, 4 x 4 outputs a thread: 13 k-blocks in chunks of 2.
    QMatMulWorkload pairs = f16_workload_of(nbits, 40, 13 * 16, 72, false);
    s.knobs["shared_stage"] = std::string("aw_dequant"), s.knobs["tile_k"] = int64_t(2);
    s.knobs["thread_n"] = int64_t(4);
    cases.push_back({pairs, s, nbits});
  }
  {  // The int8 GEMM: 16 k-blocks in chunks of 4 (the default: split in two); and unsplit, 4 rows a thread in
     // chunks of 8 k-blocks, a column's scale, 128 columns a block.
    test::WeightSpec per_column;
    per_column.granularity = test::Granularity::PerN;
    QMatMulWorkload w = int8_workload_of(blocked, 40, 512, 96, false);
    cases.push_back({w, schedules::gpu_int4_gemm_a8_default(w, gfx942()), blocked});
    QMatMulWorkload wide = int8_workload_of(per_column, 40, 512, 130, false);
    Schedule s = schedules::gpu_int4_gemm_a8_default(wide, gfx942());
    s.knobs["thread_m"] = int64_t(4), s.knobs["tile_m"] = int64_t(32), s.knobs["tile_k"] = int64_t(8);
    s.knobs["tile_n"] = int64_t(128), s.knobs["split_k"] = int64_t(1);
    cases.push_back({wide, s, per_column});
  }
  int runs = 0;
  for (const Case& c : cases) {
    Schedule once = c.s, twice = c.s;
    once.knobs["double_buffer"] = int64_t(0), twice.knobs["double_buffer"] = int64_t(1);
    INFO(c.w.key() << " " << twice.to_string());
    REQUIRE(schedules::check_qmatmul_schedule(c.w, twice, gfx942()).ok());
    CapturedPipeline plain = capture(c.w, once), buffered = capture(c.w, twice);
    REQUIRE(buffered.kernels.size() == 1);
    CHECK(buffered.kernels[0].shared_bytes == 2 * plain.kernels[0].shared_bytes);
    // The float32 GEMM's staging copies: the next chunk is held in registers across the arithmetic, and a
    // chunk meets one barrier. The float16 GEMM's rounds A and sums its k-blocks, and the int8 GEMM's
    // quantizes them, between barriers of their own; the float32 GEMM's dequantizing staging has loops that
    // end at K, which registers cannot hold.
    const std::string hip = emit_kernels(buffered.kernels, Dialect::Hip).value();
    const size_t barriers = barriers_per_chunk(emit_kernels(plain.kernels, Dialect::Hip).value());
    const bool copies = c.s.template_name == "gpu_int4_gemm" && c.s.get_string("shared_stage") != "aw_dequant";
    CHECK(barriers_per_chunk(hip) == (copies ? 1 : barriers - 1));
    CHECK((hip.find("_kc_next_") != std::string::npos) == copies);
    std::map<std::string, std::vector<KernelResources>> resources;
    disassembly_per_arch(buffered.kernels, dir, {"gfx90a", "gfx1201"}, &resources);  // no spills or scratch
    for (const auto& [arch, kernels] : resources) CHECK(kernels.at(0).lds_bytes == buffered.kernels[0].shared_bytes);
    if (!runs_here) continue;
    ProgramRun run = run_on_device(c.w, twice, buffered, c.spec, 90 + runs, dir);
    INFO(run.output);
    CHECK(run.status == 0);  // ran, and matched the reference of its activations
    ++runs;
  }
  if (runs_here) {
    CHECK(runs == 8);
    // The one barrier a chunk is what keeps a chunk from being read before it is written, or overwritten
    // while it is read.
    QMatMulWorkload w = workload_of(blocked, 40, 256, 96);
    Schedule s = schedules::gpu_int4_gemm_default(w, gfx942());
    s.knobs["double_buffer"] = int64_t(1);
    check_barriers_matter(w, s, "barrier_gemm_double_buffer");
  }
  fs::remove_all(dir);
}

TEST_CASE("GPU capture refuses to double-buffer a loop that stages no chunk, or that no kernel has, by name", "[gpu]") {
  test::WeightSpec spec;
  QMatMulWorkload w = workload_of(spec, 40, 256, 96);
  Schedule s = schedules::gpu_int4_gemm_default(w, gfx942());
  REQUIRE(s.get_string("shared_stage") == "a");
  const schedules::QMatMulTemplate* t = schedules::find_qmatmul_template(s.template_name);
  REQUIRE(t);
  QMatMulDef q = schedules::define_gpu_qmatmul(w, *t, s);
  REQUIRE(t->apply(q, s, gfx942()).ok());
  // The loop over a chunk's k (inside the chunk loop) has no barrier of its own.
  GpuKernelHints hints = q.def.gpu;
  hints.double_buffered = {"ko"};
  Result<CapturedPipeline> inner = capture_kernels({q.def.output}, q.def.arguments, "gemm", hints);
  REQUIRE_FALSE(inner.ok());
  CHECK_THAT(inner.failure().describe(), Catch::Contains(".kr.ko cannot be double-buffered"));
  CHECK_THAT(inner.failure().describe(), Catch::Contains("does not end in a barrier"));
  hints.double_buffered = {"kz"};
  Result<CapturedPipeline> missing = capture_kernels({q.def.output}, q.def.arguments, "gemm", hints);
  REQUIRE_FALSE(missing.ok());
  CHECK_THAT(missing.failure().describe(), Catch::Contains("no kernel has the chunk loop kz"));
  // The int8 and float16 GEMMs count k in k-blocks: 4 of them are one chunk of 4.
  for (bool int8 : {true, false}) {
    QMatMulWorkload one =
        int8 ? int8_workload_of(spec, 40, 4 * 32, 96, false) : f16_workload_of(spec, 40, 4 * 32, 96, false);
    Schedule one_s =
        int8 ? schedules::gpu_int4_gemm_a8_default(one, gfx942()) : schedules::gpu_int4_gemm_h2_default(one, gfx942());
    one_s.knobs["tile_k"] = int64_t(4), one_s.knobs["double_buffer"] = int64_t(1);
    if (!int8) one_s.knobs["split_k"] = int64_t(1);
    INFO(one_s.to_string());
    CHECK_THAT(schedules::check_qmatmul_schedule(one, one_s, gfx942()).failure().describe(),
               Catch::Contains("no next chunk"));
    one = int8 ? int8_workload_of(spec, 40, 5 * 32, 96, false) : f16_workload_of(spec, 40, 5 * 32, 96, false);
    CHECK(schedules::check_qmatmul_schedule(one, one_s, gfx942()).ok());
  }
  // Nor does the template offer it where nothing is staged, or k is one chunk (Halide then drops the loop).
  s.knobs["double_buffer"] = int64_t(1);
  CHECK(schedules::gpu_int4_gemm_check(w, s, gfx942()).ok());
  QMatMulWorkload one_chunk = workload_of(spec, 40, s.get_int("tile_k"), 96);
  Status single = schedules::gpu_int4_gemm_check(one_chunk, s, gfx942());
  REQUIRE_FALSE(single.ok());
  CHECK_THAT(single.failure().describe(), Catch::Contains("no next chunk"));
  s.knobs["shared_stage"] = std::string("none");
  CHECK_FALSE(schedules::gpu_int4_gemm_check(w, s, gfx942()).ok());
}

TEST_CASE(
    "GPU GEMVs and GEMMs on Oclgrind: no access past a buffer, no data race, no barrier left to part of a block, and "
    "the reference matched",
    "[gpu][oclgrind]") {
  if (!opencl_runs_here()) return;
  REQUIRE_FALSE(test::oclgrind_icd().empty());  // scripts/setup.sh installs oclgrind
  fs::path dir = work_dir("oclgrind_qmatmul");
  // Blocks of 32 with zero points: the scales and zero points are read too. Partial row and column tiles,
  // K past a whole chunk of every tile_k.
  test::WeightSpec spec;
  spec.granularity = test::Granularity::BlockedK, spec.block = 32, spec.zero_point = true;
  const QMatMulWorkload gemv = workload_of(spec, 3, 160, 130, true), gemm = workload_of(spec, 40, 160, 130, true);
  const QMatMulWorkload gemv_a8 = int8_workload_of(spec, 3, 160, 130, false),
                        gemm_a8 = int8_workload_of(spec, 40, 160, 130, false);
  const QMatMulWorkload gemv_h2 = f16_workload_of(spec, 3, 160, 130, true),
                        gemm_h2 = f16_workload_of(spec, 40, 160, 130, true);
  struct Point {
    const QMatMulWorkload& w;
    std::string template_name;
    std::map<std::string, KnobValue> knobs;  // over the default
  };
  const std::vector<Point> points = {
      {gemv, "gpu_int4_gemv", {}},
      {gemv, "gpu_int4_gemv", {{"split_k", int64_t(4)}}},
      {gemv, "gpu_int4_gemv_wave", {}},
      {gemm, "gpu_int4_gemm", {{"shared_stage", std::string("a")}}},
      {gemm, "gpu_int4_gemm", {{"shared_stage", std::string("aw")}, {"split_k", int64_t(2)}}},
      {gemm, "gpu_int4_gemm", {{"shared_stage", std::string("aw_dequant")}, {"split_k", int64_t(2)}}},
      {gemm, "gpu_int4_gemm", {{"shared_stage", std::string("none")}, {"split_k", int64_t(2)}}},
      {gemv_a8, "gpu_int4_gemv_a8", {}},
      {gemv_a8, "gpu_int4_gemv_a8_wave", {}},
      {gemm_a8, "gpu_int4_gemm_a8", {}},
      {gemm_a8, "gpu_int4_gemm_a8", {{"thread_m", int64_t(1)}, {"split_k", int64_t(1)}}},
      {gemm_a8, "gpu_int4_gemm_a8", {{"double_buffer", int64_t(1)}, {"split_k", int64_t(2)}}},
      {gemv_h2, "gpu_int4_gemv_h2", {{"split_k", int64_t(2)}}},
      {gemv_h2, "gpu_int4_gemv_h2_wave", {}},
      {gemm_h2, "gpu_int4_gemm_h2", {}},
      {gemm_h2, "gpu_int4_gemm_h2", {{"shared_stage", std::string("aw_dequant")}, {"tile_k", int64_t(2)}}},
  };
  int runs = 0;
  for (const Point& p : points) {
    const schedules::QMatMulTemplate* t = schedules::find_qmatmul_template(p.template_name);
    REQUIRE(t);
    Schedule s = t->default_schedule(p.w, gfx942());
    for (const auto& [knob, value] : p.knobs) s.knobs[knob] = value;
    INFO(p.w.key() << " " << s.to_string());
    REQUIRE(t->check_conflicts(p.w, s, gfx942()).ok());
    ProgramRun run = run_job_on_oclgrind(qmatmul_job(p.w, s, capture(p.w, s), spec, 70 + runs, dir, JobDialect{}), dir);
    INFO(run.output);
    CHECK(test::oclgrind_faults(run.output).empty());
    CHECK(run.status == 0);                                         // ran, and matched the reference
    CHECK_THAT(run.output, Catch::Contains("Oclgrind Simulator"));  // the device it ran on
    ++runs;
  }
  CHECK(runs == 16);
  // The simulator sees what pocl cannot: the staged GEMM without its barriers races on its chunks, and with
  // its weight cut (the launch plan's ranges dropped, so nothing refuses it first) reads past it.
  Schedule staged = schedules::gpu_int4_gemm_default(gemm, gfx942());
  staged.knobs["shared_stage"] = std::string("aw");
  int removed = 0;
  auto strip = [&](std::string text) { return remove_opencl_barriers(std::move(text), &removed); };
  ProgramRun racing =
      run_job_on_oclgrind(qmatmul_job(gemm, staged, capture(gemm, staged), spec, 90, dir, JobDialect{}, strip), dir);
  REQUIRE(removed > 0);
  CHECK_THAT(test::oclgrind_faults(racing.output), Catch::Contains("data race"));
  nlohmann::json cut = qmatmul_job(gemm, staged, capture(gemm, staged), spec, 91, dir, JobDialect{});
  for (nlohmann::json& k : cut["kernels"]) k.erase("touched");
  nlohmann::json& packed = cut["buffers"]["W_packed"];
  const int64_t panels = packed["extents"][2].get<int64_t>(),
                panel_bytes = (packed.contains("strides")
                                   ? packed["strides"][2].get<int64_t>()
                                   : packed["extents"][0].get<int64_t>() * packed["extents"][1].get<int64_t>()) *
                              (packed["type"] == "u32" ? 4 : 1);
  packed["extents"][2] = panels - 1;
  fs::resize_file(dir / packed["file"].get<std::string>(), uintmax_t((panels - 1) * panel_bytes));
  ProgramRun past = run_job_on_oclgrind(cut, dir);
  CHECK_THAT(test::oclgrind_faults(past.output), Catch::Contains("Invalid read"));
  fs::remove_all(dir);
}
