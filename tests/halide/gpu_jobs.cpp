#include "tests/halide/gpu_jobs.h"

#include "schedules/gpu/build.h"
#include "schedules/gpu/conv.h"
#include "schedules/qmatmul_kernel.h"

namespace tetra::gpu_test {

using namespace tetra::dsl;
using namespace tetra::dsl::gpu;

CapturedPipeline capture_qmatmul(const QMatMulWorkload& w, const Schedule& s, const TargetSpec& target) {
  const schedules::QMatMulTemplate* t = schedules::find_qmatmul_template(s.template_name);
  REQUIRE(t);
  REQUIRE(schedules::check_qmatmul_schedule(w, s, target).ok());
  QMatMulDef q = schedules::define_gpu_qmatmul(w, *t, s);
  REQUIRE(t->apply(q, s, target).ok());
  Result<CapturedPipeline> captured = capture_kernels({q.def.output}, q.def.arguments, "gemv", q.def.gpu);
  INFO(s.to_string() << ": " << (captured.ok() ? "" : captured.failure().describe()));
  REQUIRE(captured.ok());
  return captured.value();
}

QMatMulWorkload qmatmul_workload_of(const test::WeightSpec& spec, int64_t M, int64_t K, int64_t N, bool bias_relu) {
  QuantizedWeight probe = test::random_weight(K, N, spec, 1);
  Result<QMatMulWorkload> w = qmatmul_workload(probe, false, M, bias_relu);
  REQUIRE(w.ok());
  QMatMulWorkload out = w.value();
  if (bias_relu) out.epilogue = OutputEpilogue::relu();
  return out;
}

nlohmann::json qmatmul_job(const QMatMulWorkload& w, const Schedule& s, const CapturedPipeline& captured,
                           const test::WeightSpec& spec, uint64_t seed, const fs::path& dir, const JobDialect& dialect,
                           const std::function<std::string(std::string)>& edit) {
  nlohmann::json job = kernel_job(captured.kernels, dialect, dir, edit);
  QuantizedWeight weight = test::random_weight(w.K, w.N, spec, seed);
  Halide::Buffer<float> A = test::random_matrix(int(w.K), int(w.M), seed + 1);
  // Float16 activations: A holds float16 values, as in a float16 model.
  if (w.f16_activations) A.for_each_value([](float& a) { a = float(Halide::float16_t(a)); });
  Result<PackedInt4Buffers> packed =
      pack_int4_weight(weight, false, schedules::find_qmatmul_template(s.template_name)->layout(s));
  REQUIRE(packed.ok());
  // The epilogue, when the workload has one: Y = act(0.75 * A W + 1.25 * bias).
  const float alpha = 0.75f, beta = 1.25f;
  Halide::Buffer<float> bias = test::random_matrix(int(w.N), 1, seed + 2);
  std::vector<float> bias_values(bias.data(), bias.data() + w.N);
  test::Reference ref = w.has_bias ? test::reference_qmatmul(A, weight, false, &bias_values, alpha, beta)
                                   : test::reference_qmatmul(A, weight, false, nullptr, alpha, 1.0f);
  std::vector<float> tolerance = test::tolerances(ref, w.K);
  if (w.int8_activations) {
    // A quantized as the kernels do; the integer dot products are exact, the float terms round in float32.
    Int8ActivationReference int8(A.data(), w.M, w.K, w.activation_block());
    for (int64_t m = 0; m < w.M; ++m)
      for (int64_t n = 0; n < w.N; ++n) {
        double magnitude = 0;
        double y = alpha * int8.value(weight, false, m, n, &magnitude);
        if (w.has_bias) y += beta * bias_values[size_t(n)];
        ref.y[size_t(m * w.N + n)] = y;
        tolerance[size_t(m * w.N + n)] = float(1e-5 * (1 + magnitude));
      }
  }
  if (w.f16_activations) tolerance = test::f16_activation_tolerances(ref, w.K, w.format.f16_scale);
  if (w.epilogue.is_lone_relu())
    for (double& y : ref.y) y = std::max(y, 0.0);
  job["scalars"] = {{"alpha", alpha}, {"beta", beta}};
  std::string output;  // the output's name
  for (const nlohmann::json& plan : job["kernels"])
    for (const nlohmann::json& p : plan["params"])
      if (p["kind"] == "buffer" && p["write"].get<bool>()) output = p["name"];
  REQUIRE(output == "qmatmul");  // the output Func's name, however many others share it
  const PackedInt4Buffers& p = packed.value();
  job["buffers"]["A"] = buffer_entry(dir, "A", A);
  if (w.has_bias) {
    Halide::Buffer<float> bias_1d(bias.data(), int(w.N));
    job["buffers"]["bias"] = buffer_entry(dir, "bias", bias_1d);
  }
  job["buffers"]["W_packed"] = buffer_entry(dir, "W_packed", p.packed);
  if (p.scale.data()) job["buffers"]["W_scale"] = buffer_entry(dir, "W_scale", p.scale);
  if (p.zero.data()) job["buffers"]["W_zero"] = buffer_entry(dir, "W_zero", p.zero);
  job["buffers"][output] = {{"type", "f32"}, {"extents", {w.N, w.M}}, {"output", "Y.bin"}};
  std::vector<float> want(ref.y.begin(), ref.y.end());
  job["check"] = {check_entry(dir, output, want, tolerance)};
  return job;
}

nlohmann::json qconv_job(const qconv_test::Case& c, const QuantizedWeight& w, const QConvWorkload& wl,
                         const Schedule& s, const TargetSpec& target, std::mt19937_64& rng, const fs::path& dir,
                         const JobDialect& dialect, const std::function<std::string(std::string)>& edit) {
  INFO(c.describe() << "\nweight " << wl.format.describe() << " block " << wl.block << "\nschedule " << s.to_string()
                    << (wl.epilogue.empty() ? "" : " " + wl.epilogue.describe()));
  REQUIRE(schedules::check_qconv_schedule(wl, s, target).ok());
  QConvDef q = schedules::define_gpu_qconv(wl);
  REQUIRE(schedules::apply_gpu_conv(q, s, target).ok());
  Result<CapturedPipeline> captured = capture_kernels({q.def.output}, q.def.arguments, "conv");
  INFO((captured.ok() ? "" : captured.failure().describe()));
  REQUIRE(captured.ok());
  nlohmann::json job = kernel_job(captured.value().kernels, dialect, dir, edit);
  qconv_test::ConvBuffers b = qconv_test::random_buffers(c, wl, rng);
  Result<ConvInt4Buffers> packed = pack_conv_weight(w);
  REQUIRE(packed.ok());
  const ConvInt4Buffers& p = packed.value();
  job["scalars"] = {{"Cg", wl.Cg()},
                    {"Mg", wl.Mg()},
                    {"pad_top", wl.pad_top},
                    {"pad_left", wl.pad_left},
                    {"dil_h", wl.DH},
                    {"dil_w", wl.DW},
                    {"block", wl.block > 0 ? wl.block : 1}};
  job["buffers"]["X"] = buffer_entry(dir, "X", b.X);
  job["buffers"]["W_packed"] = buffer_entry(dir, "W_packed", p.packed);
  if (p.scale.data()) job["buffers"]["W_scale"] = buffer_entry(dir, "W_scale", p.scale);
  if (p.zero.data()) job["buffers"]["W_zero"] = buffer_entry(dir, "W_zero", p.zero);
  if (c.bias) job["buffers"]["bias"] = buffer_entry(dir, "bias", b.B);
  job["buffers"]["qconv"] = {{"type", "f32"}, {"extents", {wl.OW, wl.OH, wl.M, wl.N}}, {"output", "Y.bin"}};
  qconv_test::Expected e = qconv_test::expected_outputs(c, w, b, wl.epilogue);
  job["check"] = {check_entry(dir, "qconv", e.want, e.tolerance)};
  return job;
}

}  // namespace tetra::gpu_test
