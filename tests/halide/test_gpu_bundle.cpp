// The GPU check bundle: the GPU tests' jobs (test_gpu_kernels.cpp, test_gpu_conv.cpp) written to a folder
// for a GPU elsewhere, plus the int4 decode GEMV at bandwidth-bound sizes over a grid of knob points, and
// whole int4 models checked against the reference evaluator and timed.
// scripts/gpu-check.sh writes it here (where Halide is) and runs it with tetra-device on the GPU machine,
// which needs nothing else of tetra. Hidden: it runs only when asked for by its tag, with
//   TETRA_GPU_BUNDLE    the folder to write (required)
//   TETRA_GPU_DIALECT   cuda (PTX, the default) or opencl
//   TETRA_GPU_SM        the PTX arch, sm_90 by default
//   TETRA_GPU_GEMV      the GEMV sizes, "KxN,KxN" (default 16384x32768,8192x57344: about 300 MB of int4
//                       weights and float16 scales each, several times the last-level cache of today's GPUs)
//   TETRA_GPU_COPY_MB   the device-to-device copy the GEMV is measured against, 1024 MiB by default
// The GEMV's inputs are too large to ship: the jobs fill them from seeds on the device, and the reference
// made here from the same seeds (dsl/core/seeded_fill.h) is computed by the plain algorithm (no schedule)
// in float64 on the CPU.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>

#include "dsl/core/seeded_fill.h"
#include "dsl/qmatmul.h"
#include "examples/exported_models.h"
#include "runtime/aot/gpu_model_job.h"
#include "runtime/model.h"
#include "runtime/reference_evaluator.h"
#include "schedules/gpu/conv.h"
#include "schedules/gpu/int4_gemm.h"
#include "schedules/gpu/int4_gemv.h"
#include "schedules/qmatmul_kernel.h"
#include "tests/halide/gpu_jobs.h"

using namespace tetra;
using namespace tetra::dsl;
using namespace tetra::dsl::gpu;
using namespace tetra::gpu_test;

namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

struct Bundle {
  fs::path dir;
  JobDialect dialect;
  TargetSpec target;
  nlohmann::json jobs = nlohmann::json::array();

  // A fresh folder for the next job.
  fs::path next(const std::string& name) {
    jobs.push_back(name);
    fs::create_directories(dir / name);
    return dir / name;
  }
  void add(const fs::path& job_dir, nlohmann::json job, const std::string& title) {
    job["title"] = title;
    std::ofstream(job_dir / "job.json") << job.dump(1) << "\n";
  }
};

void add_qmatmul_jobs(Bundle& b, const std::string& template_name,
                      const std::vector<std::tuple<int64_t, int64_t, int64_t>>& shapes, uint64_t seed) {
  const schedules::QMatMulTemplate* t = schedules::find_qmatmul_template(template_name);
  REQUIRE(t);
  std::mt19937_64 rng(seed);
  std::vector<test::WeightSpec> specs(4);
  specs[1].type = DType::UInt4, specs[1].zero_point = true, specs[1].granularity = test::Granularity::PerN;
  specs[2].granularity = test::Granularity::BlockedK, specs[2].block = 16, specs[2].zero_point = true;
  specs[3].f16_scale = true;
  for (const auto& [M, K, N] : shapes)
    for (size_t f = 0; f < specs.size(); ++f) {
      QMatMulWorkload w = qmatmul_workload_of(specs[f], M, K, N, /*bias_relu=*/f % 2 == 1);
      if (t->int8()) w.int8_activations = true, w.format = int8_kernel_format(w.format);
      w.f16_activations = t->activations == ActivationMode::Float16;
      KnobSpace space = t->space(w, b.target);
      for (int i = 0, tries = 0; i < 2 && tries < 100; ++tries) {
        Schedule s = i == 0 ? t->default_schedule(w, b.target) : space.sample(rng);
        if (!t->check_conflicts(w, s, b.target).ok()) continue;
        std::ostringstream name;
        name << template_name << "_" << M << "x" << K << "x" << N << "_f" << f << "_" << i;
        fs::path dir = b.next(name.str());
        b.add(dir, qmatmul_job(w, s, capture_qmatmul(w, s, b.target), specs[f], seed + b.jobs.size(), dir, b.dialect),
              template_name + " " + std::to_string(M) + "x" + std::to_string(K) + "x" + std::to_string(N) + " " +
                  specs[f].describe() + " " + s.to_string());
        ++i;
      }
    }
}

void add_conv_jobs(Bundle& b, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<qconv_test::WeightSpec> specs = qconv_test::all_specs();
  const int64_t kernels[][4] = {{3, 3, 1, 1}, {3, 3, 2, 2}, {1, 1, 1, 1}, {5, 3, 1, 2}};
  for (size_t trial = 0; trial < 12; ++trial) {
    const int64_t* k = kernels[trial % 4];
    qconv_test::Case c = qconv_test::random_case(k[0], k[1], k[2], k[3], rng,
                                                 trial % 3 == 0   ? 2
                                                 : trial % 3 == 1 ? 1
                                                                  : 0);
    QuantizedWeight w = qconv_test::random_weight(c.weight_shape(), specs[trial % specs.size()], rng);
    QConvWorkload wl = qconv_test::workload_of(c, w);
    if (trial % 2) wl.epilogue = OutputEpilogue{false, "Relu", {}};
    Schedule s = schedules::gpu_conv_default(wl, b.target);
    for (int i = 0; i < 2; ++i) {
      if (i == 1) {
        KnobSpace space = schedules::gpu_conv_space(wl, b.target);
        do s = space.sample(rng);
        while (!schedules::gpu_conv_check(wl, s, b.target).ok());
      }
      fs::path dir = b.next("conv_" + std::to_string(trial) + "_" + std::to_string(i));
      b.add(dir, qconv_job(c, w, wl, s, b.target, rng, dir, b.dialect), "conv " + c.describe() + " " + s.to_string());
    }
  }
}

// A dense conv of C -> M channels, kernel 3x3, on an H x H map (pad 1, int4 per channel, a bias), timed at
// the default (the implicit GEMM) and at the direct conv of the same tiles, both checked against
// conv_reference; and the depthwise conv of M channels at its default.
void add_conv_timing_jobs(Bundle& b, int64_t C, int64_t M, int64_t H, uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (bool depthwise : {false, true}) {
    qconv_test::Case c{};
    c.N = 1, c.C = depthwise ? M : C, c.M = M, c.group = depthwise ? M : 1, c.H = c.W = H;
    c.KH = c.KW = 3, c.SH = c.SW = 1, c.DH = c.DW = 1;
    c.pads = {1, 1, 1, 1};
    c.bias = true;
    QuantizedWeight w = qconv_test::random_weight(c.weight_shape(), qconv_test::WeightSpec{}, rng);  // per channel
    QConvWorkload wl = qconv_test::workload_of(c, w);
    Schedule implicit = schedules::gpu_conv_default(wl, b.target);
    std::vector<Schedule> points = {implicit};
    if (!depthwise) {
      Schedule direct = implicit;
      direct.knobs["shared_stage"] = std::string("none");
      direct.knobs["threads_m"] = int64_t(1);
      points.push_back(direct);
    }
    for (const Schedule& s : points) {
      const std::string form = depthwise ? "depthwise" : s.get_string("shared_stage") == "w" ? "implicit" : "direct";
      fs::path dir =
          b.next("time_conv_" + form + "_" + std::to_string(C) + "x" + std::to_string(M) + "_" + std::to_string(H));
      nlohmann::json job = qconv_job(c, w, wl, s, b.target, rng, dir, b.dialect);
      const int64_t bytes = (c.C + M) * H * H * 4 + c.M * (c.C / c.group) * 9 / 2;  // input, output, weight
      job["timing"] = {{"runs", 50}, {"bytes", bytes}};
      b.add(dir, job, "conv " + form + " " + c.describe() + " " + s.to_string());
    }
  }
}

// Halide buffer `like` with its last dimension `extent` long.
Halide::Runtime::Buffer<> with_last_extent(const Halide::Runtime::Buffer<>& like, int extent) {
  std::vector<halide_dimension_t> dims(like.raw_buffer()->dim, like.raw_buffer()->dim + like.dimensions());
  dims.back().extent = extent;  // the strides stay: a padded weight's panels stay padded
  Halide::Runtime::Buffer<> b(like.type(), nullptr, int(dims.size()), dims.data());
  b.allocate();
  return b;
}

// A job entry whose contents tetra-device makes from `seed`; `host` gets the same values here.
// A strided buffer's fill covers the memory it spans, gaps included, as tetra-device's does.
template <class B>
nlohmann::json fill_entry(B& host, uint64_t seed, double lo, double hi) {
  int64_t bytes = 0;
  Result<nlohmann::json> entry = dsl::gpu::job_buffer_entry("fill", *host.raw_buffer(), &bytes);
  REQUIRE(entry.ok());
  nlohmann::json e = entry.value();
  REQUIRE(seeded_fill(host.data(), bytes / host.type().bytes(), e["type"].get<std::string>(), seed, lo, hi));
  e["fill"] = {{"seed", seed}, {"lo", lo}, {"hi", hi}};
  return e;
}

// A lanes' GEMV's bandwidth points: its default `d`, then every legal point of (`lanes` 16, 32) x `columns`
// x `thread_n` around it.
std::vector<Schedule> lanes_grid(const Schedule& d, const QMatMulWorkload& w, const TargetSpec& target,
                                 std::initializer_list<int64_t> columns, std::initializer_list<int64_t> thread_ns) {
  std::vector<Schedule> points = {d};
  for (int64_t lanes : {16, 32})
    for (int64_t c : columns)
      for (int64_t thread_n : thread_ns) {
        Schedule s = d;
        s.knobs["lanes"] = lanes, s.knobs["columns"] = c, s.knobs["thread_n"] = thread_n;
        if (s.to_string() != d.to_string() && schedules::check_qmatmul_schedule(w, s, target).ok()) points.push_back(s);
      }
  return points;
}

// The int4 decode GEMV (M = 1; int4 in k-blocks of 32 with float16 scales, the common LLM form, or
// float32 ones) of K x N at `s`, on seeded data, timed: 50 runs back to back. The float16-activation
// GEMVs (gpu_int4_gemv_h2, _h2_wave) read A as float16, and their reference rounds A so. With M > 1, the
// prefill GEMM of M rows.
void add_bandwidth_job(Bundle& b, int64_t M, int64_t K, int64_t N, const Schedule& s, bool f16_scale) {
  test::WeightSpec spec;
  spec.f16_scale = f16_scale;
  const schedules::QMatMulTemplate* t = schedules::find_qmatmul_template(s.template_name);
  const Int4Layout layout = t->layout(s);
  // The workload and packed shapes of one panel, then widened to N: only the panel count depends on N.
  QMatMulWorkload w = qmatmul_workload_of(spec, M, K, layout.panel);
  w.N = N, w.f16_activations = t->activations == ActivationMode::Float16;
  REQUIRE(schedules::check_qmatmul_schedule(w, s, b.target).ok());
  QuantizedWeight one_panel = test::random_weight(K, layout.panel, spec, 1);
  Result<PackedInt4Buffers> packed_panel = pack_int4_weight(one_panel, false, layout);
  REQUIRE(packed_panel.ok());
  const int panels = int(packed_panels(layout, N));
  PackedInt4Buffers packed = packed_panel.value();
  packed.N = N;
  packed.packed = with_last_extent(packed_panel.value().packed, panels);
  packed.scale = with_last_extent(packed_panel.value().scale, panels);
  REQUIRE(!packed.zero.data());

  std::ostringstream name;
  if (s.template_name == "gpu_int4_gemv_wave")
    name << "bandwidth_gemv_wave_" << K << "x" << N << "_" << s.get_int("lanes") << "_" << s.get_int("columns") << "_"
         << s.get_int("thread_n") << "_" << s.get_int("unroll_k") << (f16_scale ? "" : "_f32");
  else if (s.template_name == "gpu_int4_gemv_h2_wave")
    name << "bandwidth_gemv_h2_wave_" << K << "x" << N << "_" << s.get_int("lanes") << "_" << s.get_int("columns")
         << "_" << s.get_int("thread_n");
  else if (s.template_name == "gpu_int4_gemm" || s.template_name == "gpu_int4_gemm_h2")
    name << (w.f16_activations ? "time_gemm_h2_" : "time_gemm_") << M << "x" << K << "x" << N << "_"
         << s.get_string("shared_stage", "a") << "_" << s.get_int("thread_n") << "_" << s.get_int("split_k", 1)
         << (f16_scale ? "" : "_f32");
  else if (w.f16_activations)
    name << "bandwidth_gemv_h2_" << K << "x" << N << "_" << s.get_int("tile_n") << "_" << s.get_int("split_k") << "_"
         << s.get_int("thread_n");
  else
    name << "bandwidth_gemv_" << K << "x" << N << "_" << s.get_int("tile_n") << "_" << s.get_int("split_k") << "_"
         << s.get_int("unroll_k") << "_" << s.get_int("load_bytes", 1) << "_" << s.get_int("thread_n", 1)
         << (f16_scale ? "" : "_f32");
  fs::path dir = b.next(name.str());
  CapturedPipeline captured = capture_qmatmul(w, s, b.target);
  nlohmann::json job = kernel_job(captured.kernels, b.dialect, dir);
  Halide::Buffer<float> A(static_cast<int>(K), static_cast<int>(M));
  job["scalars"] = {{"alpha", 1.0}, {"beta", 1.0}};
  job["buffers"]["A"] = fill_entry(A, 101, -1.0, 1.0);
  job["buffers"]["W_packed"] = fill_entry(packed.packed, 102, 0, std::ldexp(1.0, packed.packed.type().bits) - 1);
  job["buffers"]["W_scale"] = fill_entry(packed.scale, 103, 0.002, 0.02);
  REQUIRE(job["buffers"]["W_scale"]["type"] == (f16_scale ? "f16" : "f32"));
  job["buffers"]["qmatmul"] = {{"type", "f32"}, {"extents", {N, M}}};

  // The reference: the algorithm over the same packed bytes, unscheduled, in float64.
  QMatMulDef q = define_qmatmul(w, layout);
  Halide::ParamMap params;
  REQUIRE(q.W.bind(params, packed).ok());
  params.set(q.A, A);
  Halide::Var n("n"), m("m"), no("no"), ni("ni");
  Halide::RDom k(0, int(K));
  // Each weight from its parts (the kernels' own dequantization is what is checked): the exact product of
  // code and scale, rounded to float16 where the scales are.
  const int P = layout.panel;
  Halide::Var kv("kv");
  Halide::Expr wv = Halide::cast<double>(q.W.code(n % P, kv, n / P)) *
                    Halide::cast<double>(q.W.scale(n % P, kv / int(w.format.k_group), n / P));
  if (f16_scale) wv = Halide::cast<double>(Halide::cast<Halide::float16_t>(wv));
  Halide::Expr a = w.f16_activations ? Halide::cast<double>(Halide::cast<Halide::float16_t>(q.A(k, m)))
                                     : Halide::cast<double>(q.A(k, m));
  Halide::Func weight("weight"), ref("ref"), mag("mag");
  weight(n, kv) = wv;
  ref(n, m) = Halide::sum(a * weight(n, k));
  mag(n, m) = Halide::sum(Halide::abs(a) * Halide::abs(weight(n, k)));
  if (M > 1) weight.compute_root().parallel(kv);  // once, not once a row
  for (Halide::Func* f : {&ref, &mag}) f->split(n, no, ni, 256, Halide::TailStrategy::GuardWithIf).parallel(no);
  Halide::Buffer<double> want(static_cast<int>(N), static_cast<int>(M)),
      abs_sum(static_cast<int>(N), static_cast<int>(M));
  Halide::Pipeline({ref, mag}).realize({want, abs_sum}, host_target().halide, params);
  test::Reference r;
  r.y.assign(want.data(), want.data() + N * M);
  r.abs_sum.assign(abs_sum.data(), abs_sum.data() + N * M);
  const std::vector<float> tolerance =
      w.f16_activations ? test::f16_activation_tolerances(r, K, f16_scale) : test::tolerances(r, K);
  job["check"] = {check_entry(dir, "qmatmul", std::vector<float>(r.y.begin(), r.y.end()), tolerance)};
  const int64_t bytes = packed.bytes() + (K + N) * M * 4;  // weights and scales, A, Y
  job["timing"] = {{"runs", 50}, {"bytes", bytes}};
  b.add(dir, job,
        std::string(M > 1 ? "GEMM " : "GEMV ") + std::to_string(M) + "x" + std::to_string(K) + "x" + std::to_string(N) +
            " int4/32 " + (f16_scale ? "f16" : "f32") + " (" + std::to_string(bytes >> 20) + " MiB) " + s.to_string());
}

// The int8-activation GEMV (gpu_int4_gemv_a8; int4 in k-blocks of 32, float32 scales) of K x N at each of
// `points`, on seeded data, timed, and checked against the int8 arithmetic computed here in double: A
// quantized per block as the kernels do (Int8ActivationReference), the codes read from the seeded words.
void add_int8_bandwidth_jobs(Bundle& b, int64_t K, int64_t N, const std::vector<Schedule>& points) {
  test::WeightSpec spec;
  spec.granularity = test::Granularity::BlockedK, spec.block = 32;
  QMatMulWorkload w = qmatmul_workload_of(spec, 1, K, 64);
  w.N = N, w.int8_activations = true, w.format = int8_kernel_format(w.format);
  const int64_t block = w.activation_block(), groups = K / block;
  REQUIRE(K % block == 0);
  Halide::Buffer<float> A(static_cast<int>(K), 1);
  nlohmann::json a_entry = fill_entry(A, 101, -1.0, 1.0);
  const Int8ActivationReference a8(A.data(), 1, K, block);
  // The weight's words and scales for the widest panel; a narrower panel is the same values re-laid.
  std::vector<double> want, magnitude;
  int reference_panel = 0;
  for (const Schedule& s : points) {
    REQUIRE(schedules::check_qmatmul_schedule(w, s, b.target).ok());
    const Int4Layout layout = schedules::find_qmatmul_template(s.template_name)->layout(s);
    const int P = layout.panel, panels = int(packed_panels(layout, N));
    // The packed shapes of one panel, widened to N panels.
    Result<PackedInt4Buffers> one_panel = pack_int4_weight(test::random_weight(K, P, spec, 1), false, layout);
    REQUIRE(one_panel.ok());
    REQUIRE(!one_panel.value().zero.data());
    Halide::Runtime::Buffer<> packed = with_last_extent(one_panel.value().packed, panels);
    Halide::Runtime::Buffer<> scales = with_last_extent(one_panel.value().scale, panels);
    REQUIRE(packed.type() == halide_type_of<uint32_t>());
    REQUIRE(scales.type() == halide_type_of<float>());
    const bool per_n = scales.dim(0).extent() == P;
    nlohmann::json packed_entry = fill_entry(packed, 102, 0, std::ldexp(1.0, 32) - 1);
    nlohmann::json scale_entry = fill_entry(scales, 103, 0.002, 0.02);
    const Halide::Runtime::Buffer<uint32_t> words(packed);
    const Halide::Runtime::Buffer<float> scale(scales);
    if (P != reference_panel) {  // y[n] = sum over blocks of a_scale w_scale sum a_q (u - 8), in double
      reference_panel = P;
      want.assign(size_t(N), 0.0), magnitude.assign(size_t(N), 0.0);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t g = 0; g < groups; ++g) {
          int64_t dot = 0, size = 0;
          for (int64_t k = g * block; k < (g + 1) * block; ++k) {
            uint32_t word = words(int(n % P), int(k / 8), int(n / P));
            int code = int((word >> (8 * ((k % 8) / 2) + 4 * (k % 2))) & 15) - 8;
            dot += int64_t(a8.q(0, k)) * code, size += std::abs(int64_t(a8.q(0, k)) * code);
          }
          const double s = double(a8.scale(0, g)) * double(scale(per_n ? int(n % P) : 0, int(g), int(n / P)));
          want[size_t(n)] += double(dot) * s, magnitude[size_t(n)] += double(size) * s;
        }
    }
    std::ostringstream name;
    if (s.template_name == "gpu_int4_gemv_a8_wave")
      name << "bandwidth_gemv_a8_wave_" << K << "x" << N << "_" << s.get_int("lanes") << "_" << s.get_int("columns")
           << "_" << s.get_int("thread_n");
    else
      name << "bandwidth_gemv_a8_" << K << "x" << N << "_" << P << "_" << s.get_int("split_k") << "_"
           << s.get_int("thread_n");
    fs::path dir = b.next(name.str());
    CapturedPipeline captured = capture_qmatmul(w, s, b.target);
    nlohmann::json job = kernel_job(captured.kernels, b.dialect, dir);
    job["scalars"] = {{"alpha", 1.0}, {"beta", 1.0}};
    job["buffers"]["A"] = a_entry;
    job["buffers"]["W_packed"] = packed_entry;
    job["buffers"]["W_scale"] = scale_entry;
    job["buffers"]["qmatmul"] = {{"type", "f32"}, {"extents", {N, 1}}};
    std::vector<float> tolerance(static_cast<size_t>(N));
    for (int64_t n = 0; n < N; ++n) tolerance[size_t(n)] = float(1e-5 * (1 + magnitude[size_t(n)]));
    job["check"] = {check_entry(dir, "qmatmul", std::vector<float>(want.begin(), want.end()), tolerance)};
    const int64_t bytes = int64_t(packed.size_in_bytes() + scales.size_in_bytes()) + K * 4 + N * 4;  // W, A, Y
    job["timing"] = {{"runs", 50}, {"bytes", bytes}};
    b.add(dir, job,
          "GEMV 1x" + std::to_string(K) + "x" + std::to_string(N) + " int4/32 f32, int8 activations (" +
              std::to_string(bytes >> 20) + " MiB) " + s.to_string());
  }
}

// A whole model for the bundle: one of the exported int4 networks (examples/exported_models.h) at an image size.
struct ModelCase {
  std::string name;  // "detector", "classifier", "recognizer"
  int64_t height, width;
};

// Whole models as `tetra run --target cuda|opencl` runs them (runtime/aot/gpu_model_job.h): every node's
// kernels in one program, every activation on the device. Each output is checked against the reference
// evaluator within 1e-4 x (1 + its largest magnitude), as the GPU model tests check them (float32 sums in
// another order), and the model is timed.
void add_model_jobs(Bundle& b, const std::vector<ModelCase>& models, const TargetSpec& target, uint64_t seed) {
  std::mt19937 gen{uint32_t(seed)};
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (const ModelCase& c : models) {
    const ExportedModel* m = nullptr;
    for (const ExportedModel& e : exported_models())
      if (e.name == c.name) m = &e;
    REQUIRE(m);
    ExportedModelOptions options;
    options.int4 = true, options.height = c.height, options.width = c.width;
    const std::string size = std::to_string(c.height) + "x" + std::to_string(c.width);
    const fs::path dir = b.next("model_" + c.name + "_" + size);
    const fs::path onnx = dir / "model.onnx";
    m->build(gen, options).save(onnx.string());
    Tensor x(DType::Float32, {1, 3, c.height, c.width});
    for (int64_t i = 0; i < x.size(); ++i) x.mutable_data<float>()[i] = u(gen);
    const Graph graph = load_model(onnx.string(), {{"x", x.shape()}});
    fs::remove(onnx);  // the job carries the weights it needs
    const TensorMap inputs = {{"x", x}};
    Result<GpuModelJob> written = write_gpu_model_job(graph, inputs, target, nullptr, dir.string(), /*timing_runs=*/20);
    INFO(c.name << " " << size);
    REQUIRE(written.ok());
    nlohmann::json job = nlohmann::json::parse(std::ifstream(written.value().job_file));
    job["check"] = nlohmann::json::array();
    for (const auto& [name, want] : run_reference(graph, inputs)) {
      REQUIRE(want.dtype() == DType::Float32);
      double scale = 0;
      for (int64_t i = 0; i < want.size(); ++i) scale = std::max(scale, std::fabs(want.get(i)));
      const std::vector<float> tolerance(size_t(want.size()), float(1e-4 * (1 + scale)));
      write_bytes(dir / (name + ".expect.bin"), want.bytes(), size_t(want.byte_size()));
      write_bytes(dir / (name + ".tolerance.bin"), tolerance.data(), tolerance.size() * 4);
      job["check"].push_back({{"buffer", job["model"]["outputs"][name]},
                              {"expect", name + ".expect.bin"},
                              {"tolerance", name + ".tolerance.bin"}});
    }
    b.add(dir, job,
          c.name + " int4 " + size + ", the whole model: " + std::to_string(written.value().launches) + " launches");
  }
}

struct BundleOptions {
  fs::path dir;
  std::string dialect = "cuda";  // or "opencl"
  std::string sm = "sm_90";
  bool kernel_jobs = true;  // the GPU tests' QMatMul and conv jobs
  std::vector<std::pair<int64_t, int64_t>> gemv = {{16384, 32768}, {8192, 57344}};  // K x N
  std::vector<std::tuple<int64_t, int64_t, int64_t>> gemms = {{128, 4096, 4096}};   // M x K x N, timed
  bool gemm_grid = true;  // each GEMM at its default and over (shared_stage, thread_n, split_k), or at 2 points
  // Timed convs: C -> M channels on an H x H map (add_conv_timing_jobs). ResNet's 3x3 64 -> 64 on 56x56.
  std::vector<std::tuple<int64_t, int64_t, int64_t>> convs = {{64, 64, 56}, {128, 128, 28}};
  // Whole models, at their real image sizes.
  std::vector<ModelCase> models = {{"detector", 640, 640}, {"classifier", 224, 224}, {"recognizer", 32, 320}};
  int64_t copy_bytes = int64_t(1) << 30;
};

// Writes the bundle; returns how many jobs it holds.
size_t write_bundle(const BundleOptions& o) {
  Bundle b;
  b.dir = o.dir;
  REQUIRE((o.dialect == "cuda" || o.dialect == "opencl"));
  b.dialect.dialect = o.dialect == "cuda" ? Dialect::Cuda : Dialect::OpenCL;
  b.dialect.sm = o.sm;
  // The knob spaces and defaults of a GPU with 32-thread waves, as NVIDIA's warps are, for PTX (the GPU
  // templates are tuned per AMD arch); gfx942's for OpenCL, as the OpenCL tests use.
  Result<TargetSpec> target = parse_target(o.dialect == "cuda" ? "hip:gfx1100" : "hip:gfx942");
  REQUIRE(target.ok());
  b.target = target.value();
  fs::remove_all(b.dir);
  fs::create_directories(b.dir);

  if (o.kernel_jobs) {
    add_qmatmul_jobs(b, "gpu_int4_gemv", {{1, 256, 200}, {3, 96, 130}, {2, 512, 64}}, 20261204);
    add_qmatmul_jobs(b, "gpu_int4_gemv_wave", {{1, 512, 64}, {3, 200, 130}, {2, 1024, 33}}, 20261212);
    add_qmatmul_jobs(b, "gpu_int4_gemm", {{9, 96, 72}, {40, 160, 100}, {67, 64, 33}}, 20261205);
    add_qmatmul_jobs(b, "gpu_int4_gemv_a8", {{1, 256, 200}, {3, 96, 130}, {8, 512, 64}}, 20261207);
    add_qmatmul_jobs(b, "gpu_int4_gemv_a8_wave", {{1, 512, 64}, {3, 200, 130}, {8, 1024, 64}}, 20261214);
    add_qmatmul_jobs(b, "gpu_int4_gemm_a8", {{9, 96, 72}, {40, 512, 100}}, 20261208);
    add_qmatmul_jobs(b, "gpu_int4_gemv_h2", {{1, 256, 200}, {3, 96, 130}, {8, 512, 64}}, 20261210);
    add_qmatmul_jobs(b, "gpu_int4_gemv_h2_wave", {{1, 512, 64}, {3, 200, 130}, {8, 1024, 64}}, 20261213);
    add_qmatmul_jobs(b, "gpu_int4_gemm_h2", {{9, 96, 72}, {40, 512, 100}}, 20261211);
    add_conv_jobs(b, 20261206);
  }
  // The bandwidth grid: the default, and every legal (tile_n, split_k, thread_n) with word loads (byte
  // loads were slower at every point measured, and unroll_k 8 no faster than 4: docs/gpu.md).
  for (const auto& [K, N] : o.gemv) {
    test::WeightSpec spec;
    spec.f16_scale = true;
    QMatMulWorkload w = qmatmul_workload_of(spec, 1, K, 64);
    w.N = N;
    Schedule d = schedules::gpu_int4_gemv_default(w, b.target);
    d.knobs.emplace("load_bytes", int64_t(1));  // as a schedule without it means, so the grid skips it
    std::vector<Schedule> points = {d};
    for (int64_t tile_n : {32, 64, 128})
      for (int64_t split_k : {8, 16, 32, 64})
        for (int64_t thread_n : {1, 2, 4, 8}) {
          Schedule s = d;
          s.knobs["tile_n"] = tile_n, s.knobs["split_k"] = split_k, s.knobs["unroll_k"] = int64_t(4);
          s.knobs["load_bytes"] = int64_t(4), s.knobs["thread_n"] = thread_n;
          if (s.to_string() != d.to_string() && schedules::check_qmatmul_schedule(w, s, b.target).ok())
            points.push_back(s);
        }
    // A column's k across a warp's lanes (gpu_int4_gemv_wave): the default, and (lanes, columns, thread_n)
    // around it, 16-byte loads.
    Schedule dw = schedules::gpu_int4_gemv_wave_default(w, b.target);
    dw.knobs.emplace("thread_n", int64_t(1));  // as a schedule without it means, so the grid skips it
    for (Schedule& s : lanes_grid(dw, w, b.target, {4, 16}, {1, 2, 4})) points.push_back(std::move(s));
    // Float16 and float32 scales: float16's rounding of each weight costs conversions.
    for (bool f16_scale : {true, false})
      for (const Schedule& s : points) add_bandwidth_job(b, 1, K, N, s, f16_scale);
    // int8 activations: the default, and (tile_n, split_k, thread_n) around the float GEMV's best points.
    test::WeightSpec blocked;
    blocked.granularity = test::Granularity::BlockedK, blocked.block = 32;
    QMatMulWorkload w8 = qmatmul_workload_of(blocked, 1, K, 64);
    w8.N = N, w8.int8_activations = true, w8.format = int8_kernel_format(w8.format);
    Schedule d8 = schedules::gpu_int4_gemv_a8_default(w8, b.target);
    std::vector<Schedule> points8 = {d8};
    for (int64_t tile_n : {64, 128})
      for (int64_t split_k : {8, 16, 32})
        for (int64_t thread_n : {1, 2, 4}) {
          Schedule s = d8;
          s.knobs["tile_n"] = tile_n, s.knobs["split_k"] = split_k, s.knobs["thread_n"] = thread_n;
          if (s.to_string() != d8.to_string() && schedules::check_qmatmul_schedule(w8, s, b.target).ok())
            points8.push_back(s);
        }
    // And a column's k-blocks across a warp's lanes (gpu_int4_gemv_a8_wave): the default and (lanes,
    // columns, thread_n) around it.
    for (Schedule& s :
         lanes_grid(schedules::gpu_int4_gemv_a8_wave_default(w8, b.target), w8, b.target, {8, 16}, {1, 2}))
      points8.push_back(std::move(s));
    // Points of one panel width together: they share the reference.
    auto panel = [](const Schedule& x) { return schedules::find_qmatmul_template(x.template_name)->layout(x).panel; };
    std::stable_sort(points8.begin(), points8.end(),
                     [&](const Schedule& x, const Schedule& y) { return panel(x) < panel(y); });
    add_int8_bandwidth_jobs(b, K, N, points8);
    // float16 activations (float16 scales, the form of a float16 LLM): the default and the same grid.
    QMatMulWorkload w16 = qmatmul_workload_of(spec, 1, K, 64);
    w16.N = N, w16.f16_activations = true;
    Schedule d16 = schedules::gpu_int4_gemv_h2_default(w16, b.target);
    std::vector<Schedule> points16 = {d16};
    for (const Schedule& p8 : points8) {
      if (p8.template_name != d8.template_name) continue;
      Schedule s = d16;
      for (const char* knob : {"tile_n", "split_k", "thread_n"}) s.knobs[knob] = p8.get_int(knob);
      if (s.to_string() != d16.to_string() && schedules::check_qmatmul_schedule(w16, s, b.target).ok())
        points16.push_back(s);
    }
    // And a column's k-blocks across a warp's lanes (gpu_int4_gemv_h2_wave): the default and (lanes,
    // columns, thread_n) around it.
    for (Schedule& s :
         lanes_grid(schedules::gpu_int4_gemv_h2_wave_default(w16, b.target), w16, b.target, {8, 16}, {1, 2}))
      points16.push_back(std::move(s));
    for (const Schedule& s : points16) add_bandwidth_job(b, 1, K, N, s, /*f16_scale=*/true);
  }
  // The prefill GEMM, float32 scales: the default (from 128 rows the block dequantizes its weight chunk once,
  // into workgroup memory) against each thread row dequantizing its columns (the default for fewer rows) and
  // against the weight staged packed.
  for (const auto& [M, K, N] : o.gemms) {
    test::WeightSpec spec;
    QMatMulWorkload w = qmatmul_workload_of(spec, M, K, 64);
    w.N = N;
    const Schedule d = schedules::gpu_int4_gemm_default(w, b.target);
    std::vector<Schedule> points = {d};
    for (const char* stage : {"a", "aw", "aw_dequant"})
      for (int64_t thread_n : {2, 4})
        for (int64_t split_k : {1, 2}) {
          if (!o.gemm_grid && (stage != std::string("a") || thread_n != 2 || split_k != 1)) continue;
          Schedule s = d;
          s.knobs["shared_stage"] = std::string(stage), s.knobs["thread_n"] = thread_n, s.knobs["split_k"] = split_k;
          if (s.to_string() != d.to_string() && schedules::check_qmatmul_schedule(w, s, b.target).ok())
            points.push_back(s);
        }
    for (const Schedule& s : points) add_bandwidth_job(b, M, K, N, s, /*f16_scale=*/false);
    // The same GEMM over float16 activations (float16 scales, a float16 model's prefill): the default, and
    // each thread row making its columns' code pairs against the block making them once, at 2 and 4 columns
    // a thread.
    QMatMulWorkload w16 = w;
    w16.f16_activations = true;
    const Schedule d16 = schedules::gpu_int4_gemm_h2_default(w16, b.target);
    std::vector<Schedule> points16 = {d16};
    for (const char* stage : {"a", "aw_dequant"})
      for (int64_t thread_n : {2, 4}) {
        if (!o.gemm_grid && thread_n != 2) continue;
        Schedule s = d16;
        s.knobs["shared_stage"] = std::string(stage), s.knobs["thread_n"] = thread_n;
        if (s.to_string() != d16.to_string() && schedules::check_qmatmul_schedule(w16, s, b.target).ok())
          points16.push_back(s);
      }
    for (const Schedule& s : points16) add_bandwidth_job(b, M, K, N, s, /*f16_scale=*/true);
  }
  for (const auto& [C, M, H] : o.convs) add_conv_timing_jobs(b, C, M, H, 20261209);
  Result<TargetSpec> model_target = parse_target(o.dialect == "cuda" ? "cuda:" + o.sm : "opencl");
  REQUIRE(model_target.ok());
  add_model_jobs(b, o.models, model_target.value(), 20261208);
  std::ofstream(b.dir / "bundle.json")
      << nlohmann::json{{"dialect", o.dialect}, {"copy_bytes", o.copy_bytes}, {"jobs", b.jobs}}.dump(1) << "\n";
  return b.jobs.size();
}

}  // namespace

TEST_CASE("GPU check bundle: the GPU jobs and the GEMV bandwidth grid, written for a GPU elsewhere", "[.gpu-bundle]") {
  BundleOptions o;
  o.dir = env_or("TETRA_GPU_BUNDLE", "");
  INFO("TETRA_GPU_BUNDLE names the folder to write");
  REQUIRE(!o.dir.empty());
  o.dialect = env_or("TETRA_GPU_DIALECT", o.dialect);
  o.sm = env_or("TETRA_GPU_SM", o.sm);
  o.copy_bytes = std::stoll(env_or("TETRA_GPU_COPY_MB", "1024")) << 20;
  if (std::getenv("TETRA_GPU_GEMV")) {
    o.gemv.clear();
    std::istringstream sizes(env_or("TETRA_GPU_GEMV", ""));
    for (std::string size; std::getline(sizes, size, ',');) {
      int64_t K = 0, N = 0;
      char x = 0;
      std::istringstream(size) >> K >> x >> N;
      INFO("TETRA_GPU_GEMV: " << size);
      REQUIRE((K > 0 && N > 0 && x == 'x'));
      o.gemv.push_back({K, N});
    }
  }
  // 8 QMatMul jobs a shape of each template (200), 24 conv jobs, the GEMV grids, then 6 timed convs.
  CHECK(write_bundle(o) > (o.kernel_jobs ? 200u : 0u));
}

// The bundle's path end to end on pocl: seeded inputs made by tetra-device, the reference made here from
// the same seeds, timing, the table and results.json; and a wrong expected output fails its job by name.
TEST_CASE("GPU check bundle: an OpenCL bundle runs with tetra-device check, and a wrong reference fails it", "[gpu]") {
  if (!opencl_runs_here()) return;
  BundleOptions o;
  o.dir = work_dir("bundle");
  o.dialect = "opencl";
  o.kernel_jobs = false;
  o.gemv = {{256, 320}};  // N not a multiple of any panel width
  o.gemms = {{130, 96, 72}};  // the default dequantizes once a block from 128 rows; a partial row tile
  o.gemm_grid = false;        // and each thread row dequantizing (the kernels' own tests run the grid)
  o.convs = {{12, 20, 9}};  // the timed convs' path, small
  o.models = {{"recognizer", 32, 64}};  // a whole model's path, small
  o.copy_bytes = 1 << 20;
  const size_t jobs = write_bundle(o);
  REQUIRE(jobs >= 12);  // the default and the legal grid points for K = 256, 3 timed convs and a model
  const std::string device = std::string(TETRA_BINARY_DIR) + "/bin/tetra-device";
  ProgramRun good = run_program({device, "check", o.dir.string()});
  INFO(good.output);
  REQUIRE(good.status == 0);
  CHECK_THAT(good.output, Catch::Contains("copy bandwidth:"));
  CHECK_THAT(good.output, Catch::Contains(std::to_string(jobs) + " jobs, 0 failed"));
  std::ifstream in(o.dir / "results.json");
  nlohmann::json results = nlohmann::json::parse(in);
  REQUIRE(results["jobs"].size() == jobs);
  int int8_jobs = 0, int8_lanes_jobs = 0, f16_jobs = 0, conv_jobs = 0, gemm_jobs = 0, gemm_h2_jobs = 0, models = 0;
  for (const nlohmann::json& row : results["jobs"]) {
    CHECK_FALSE(row.contains("error"));
    CHECK(row["gb_per_s"].get<double>() > 0);
    int8_jobs += row["job"].get<std::string>().find("gemv_a8") != std::string::npos;
    int8_lanes_jobs += row["job"].get<std::string>().find("gemv_a8_wave") != std::string::npos;
    f16_jobs += row["job"].get<std::string>().find("gemv_h2") != std::string::npos;
    conv_jobs += row["job"].get<std::string>().find("time_conv") != std::string::npos;
    gemm_jobs += row["job"].get<std::string>().find("time_gemm_130x96x72_") != std::string::npos;
    gemm_h2_jobs += row["job"].get<std::string>().find("time_gemm_h2_130x96x72_") != std::string::npos;
    models += row["job"] == "model_recognizer_32x64";
  }
  CHECK(int8_jobs >= 4);  // the int8-activation GEMV's default and grid, checked against the int8 arithmetic
  CHECK(int8_lanes_jobs >= 2);  // among them the int8 lanes' GEMV's
  CHECK(f16_jobs >= 4);   // the float16-activation GEMV's, against A rounded to float16
  CHECK(conv_jobs == 3);  // implicit GEMM, direct and depthwise, timed
  CHECK(gemm_jobs == 2);  // the GEMM's default and the per-row form, checked against the reference
  // The float16 GEMM's default (the code pairs made once a block, 2 columns a thread for so few tiles) and the
  // per-row form, against A rounded to float16.
  CHECK(gemm_h2_jobs == 2);
  CHECK(models == 1);  // the whole recognizer, checked against the reference evaluator

  // One output of the first job's reference moved past its tolerance.
  const std::string first = results["jobs"][0]["job"];
  const fs::path expect = o.dir / first / "qmatmul.expect.bin";
  std::vector<float> want(320);
  std::ifstream(expect, std::ios::binary).read(reinterpret_cast<char*>(want.data()), 320 * 4);
  want[77] += 1.0f;
  write_bytes(expect, want.data(), want.size() * 4);
  // And one of the whole model's outputs.
  const fs::path model_expect = o.dir / "model_recognizer_32x64" / "probs.expect.bin";
  std::vector<float> probs(fs::file_size(model_expect) / 4);
  std::ifstream(model_expect, std::ios::binary).read(reinterpret_cast<char*>(probs.data()), probs.size() * 4);
  probs[3] += 0.5f;
  write_bytes(model_expect, probs.data(), probs.size() * 4);
  ProgramRun bad = run_program({device, "check", o.dir.string()});
  INFO(bad.output);
  CHECK(bad.status == 1);
  CHECK_THAT(bad.output, Catch::Contains("FAIL"));
  CHECK_THAT(bad.output, Catch::Contains("1 of 320 outputs differ"));
  CHECK_THAT(bad.output, Catch::Contains("qmatmul[77]"));
  CHECK_THAT(bad.output, Catch::Contains("1 of " + std::to_string(probs.size()) + " outputs differ"));
  CHECK_THAT(bad.output, Catch::Contains(std::to_string(jobs) + " jobs, 2 failed"));
  fs::remove_all(o.dir);
}
