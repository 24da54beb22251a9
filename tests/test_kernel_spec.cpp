// The kernel spec and the workloads as JSON: keys, round trips, the one resolve of fall-backs, and
// malformed JSON as a Failure naming the field.
#include <catch2/catch.hpp>
#include <random>

#include "dsl/core/kernel_spec.h"
#include "dsl/spec_resolve.h"
#include "dsl/target.h"
#include "dsl/workload_json.h"
#include "tuner/measure.h"
#include "tuner/random_weights.h"

using namespace tetra;
using namespace tetra::dsl;

namespace {

// Every weight format a QMatMul can meet: float, per-tensor, per-n, per-k, blocked, uint4 with zero
// points, float16 scales.
std::vector<Int4Format> qmatmul_formats() {
  std::vector<Int4Format> formats;
  for (int float_bits : {32, 16}) {
    Int4Format f;
    f.float_bits = float_bits;
    formats.push_back(f);
  }
  for (bool is_signed : {true, false})
    for (bool zp : {false, true})
      for (bool f16 : {false, true})
        for (auto [k_group, per_n] : {std::pair<int64_t, bool>{0, false}, {0, true}, {1, false}, {32, true}, {16, true}}) {
          Int4Format f;
          f.is_signed = is_signed;
          f.has_zero_point = zp;
          f.f16_scale = f16;
          f.k_group = k_group;
          f.per_n = per_n;
          formats.push_back(f);
        }
  return formats;
}

QConvWorkload depthwise_conv() {
  QConvWorkload w;
  w.N = 1, w.C = 8, w.H = 9, w.W = 7, w.M = 8, w.group = 8, w.KH = 3, w.KW = 3;
  w.SH = 2, w.SW = 1, w.pad_top = 1, w.pad_left = 1, w.pad_bottom = 1, w.pad_right = 1;
  w.OH = 5, w.OW = 7;
  w.format.grid = ConvInt4Format::Grid::Blocked;
  w.format.axis = 1;
  w.format.has_zero_point = true;
  w.block = 2;
  w.has_bias = true;
  w.epilogue.residual = true;
  w.epilogue.activation = "Clip";
  w.epilogue.params = {0.0f, 6.0f};
  return w;
}

}  // namespace

TEST_CASE("a kernel spec has one key and one JSON form that round-trips", "[kernel_spec]") {
  std::set<std::string> keys;
  for (const Int4Format& f : qmatmul_formats()) {
    QMatMulWorkload w;
    w.K = 64, w.N = 24, w.format = f, w.has_bias = true, w.epilogue = OutputEpilogue::relu();
    KernelSpec spec = kernel_spec(w, "x86-64-avx2");
    Result<KernelSpec> back = KernelSpec::from_json(nlohmann::json::parse(spec.to_json().dump()));
    REQUIRE(back.ok());
    CHECK(back.value() == spec);
    CHECK(back.value().key() == spec.key());
    keys.insert(spec.key());

    Result<QMatMulWorkload> wl = qmatmul_workload_from_json(qmatmul_workload_to_json(w));
    REQUIRE(wl.ok());
    CHECK(wl.value().key() == w.key());
    CHECK(wl.value().format == w.format);
  }
  CHECK(keys.size() == qmatmul_formats().size());  // distinct formats, distinct keys

  QMatMulWorkload w;
  w.K = 64, w.N = 24;
  KernelSpec spec = kernel_spec(w, "x86-64-avx2");
  CHECK(spec.key() == "qmatmul int4 per-tensor f32 panel x86-64-avx2");
  w.has_bias = true, w.epilogue = OutputEpilogue::relu(), w.int8_activations = true, w.format.k_group = 32,
  w.format.per_n = true;
  CHECK(kernel_spec(w, "x86-64-avx512-vnni").key() ==
        "qmatmul int4 blocked(k,32) f32 bias Relu a8 vnni x86-64-avx512-vnni");
  w = QMatMulWorkload{};
  w.K = 64, w.N = 24;
  CHECK(kernel_spec(w, "x86-64-avx512").key() != spec.key());  // the target names the key
  w.M = 100;
  CHECK(kernel_spec(w, "x86-64-avx2") == spec);  // shapes are not part of the code

  QConvWorkload conv = depthwise_conv();
  Result<QConvWorkload> conv_back = qconv_workload_from_json(nlohmann::json::parse(qconv_workload_to_json(conv).dump()));
  REQUIRE(conv_back.ok());
  CHECK(conv_back.value().key() == conv.key());
  CHECK(kernel_spec(conv_back.value(), "x86-64-avx2") == kernel_spec(conv, "x86-64-avx2"));
}

TEST_CASE("a conv's spec names what its code compiles in, and round-trips", "[kernel_spec]") {
  QConvWorkload conv = depthwise_conv();
  KernelSpec spec = kernel_spec(conv, "x86-64-avx2");
  CHECK(spec.key() == "qconv int4 blocked(1) zp f32 k3x3 s2x1 bias +residual Clip(0,6) panel x86-64-avx2");
  // Shapes, pads, dilations and the group (beyond dense or not) are run-time values: the same code.
  QConvWorkload other = conv;
  other.H = 30, other.OH = 15, other.C = other.M = other.group = 16, other.DH = 2, other.pad_top = 0;
  CHECK(kernel_spec(other, "x86-64-avx2") == spec);
  other.group = 1;  // a dense conv is other code
  CHECK(kernel_spec(other, "x86-64-avx2").key() ==
        "qconv int4 blocked(1) zp f32 k3x3 s2x1 dense bias +residual Clip(0,6) panel x86-64-avx2");
  // The tuning form drops the epilogue, not the bias.
  CHECK(spec.for_tuning().key() == "qconv int4 blocked(1) zp f32 k3x3 s2x1 bias panel x86-64-avx2");
  // The residual after the activation is other code, and its JSON says so (and only then).
  QConvWorkload after = conv;
  after.epilogue.activation_first = true;
  KernelSpec after_spec = kernel_spec(after, "x86-64-avx2");
  CHECK(after_spec.key() == "qconv int4 blocked(1) zp f32 k3x3 s2x1 bias Clip(0,6) +residual panel x86-64-avx2");
  CHECK(after_spec.to_json()["epilogue"]["activation_first"] == true);
  CHECK_FALSE(spec.to_json()["epilogue"].contains("activation_first"));
  Result<KernelSpec> after_back = KernelSpec::from_json(after_spec.to_json());
  REQUIRE(after_back.ok());
  CHECK(after_back.value() == after_spec);
  nlohmann::json bad = after_spec.to_json();
  bad["epilogue"]["activation_first"] = "yes";
  CHECK_THAT(KernelSpec::from_json(bad).failure().describe(), Catch::Contains("\"activation_first\" must be true"));

  std::set<std::string> keys;
  for (int type = 0; type < 4; ++type)
    for (int grid = 0; grid < 3; ++grid)
      for (bool zp : {false, true})
        for (bool f16 : {false, true}) {
          if (type >= 2 && (grid > 0 || zp || f16)) continue;  // a float weight has no grid
          QConvWorkload w = conv;
          w.format = ConvInt4Format{};
          if (type >= 2) w.format.float_bits = type == 2 ? 32 : 16;
          w.format.is_signed = type != 1;
          w.format.grid = ConvInt4Format::Grid(grid);
          w.format.axis = grid == 0 ? 0 : 1;
          w.format.has_zero_point = type < 2 && zp;
          w.format.f16_scale = type < 2 && f16;
          KernelSpec s = kernel_spec(w, "x86-64-avx2");
          Result<KernelSpec> back = KernelSpec::from_json(nlohmann::json::parse(s.to_json().dump()));
          REQUIRE(back.ok());
          CHECK(back.value() == s);
          CHECK(back.value().conv_weight == s.conv_weight);
          CHECK(back.value().window == s.window);
          keys.insert(s.key());
        }
  CHECK(keys.size() == 26);  // 2 float + 2 types x 3 grids x 2 x 2, each its own key
}

TEST_CASE("malformed kernel specs are failures naming the field", "[kernel_spec]") {
  QConvWorkload conv = depthwise_conv();
  nlohmann::json good = kernel_spec(conv, "x86-64-avx2").to_json();
  REQUIRE(KernelSpec::from_json(good).ok());
  auto message = [](const nlohmann::json& j) {
    Result<KernelSpec> r = KernelSpec::from_json(j);
    return r.ok() ? std::string("accepted") : r.failure().describe();
  };
  nlohmann::json j = good;
  j.erase("window");
  CHECK_THAT(message(j), Catch::Contains("\"window\" is missing"));
  j = good;
  j["window"]["kernel"] = {3, 0};
  CHECK_THAT(message(j), Catch::Contains("\"kernel\" must be two integers >= 1"));
  j = good;
  j["weight"]["grid"] = "per-row";
  CHECK_THAT(message(j), Catch::Contains("\"grid\" must be one of"));
  j = good;
  j["op"] = "conv";
  CHECK_THAT(message(j), Catch::Contains("\"op\" must be one of \"qmatmul\", \"qconv\""));
  j = good;
  j["layout"] = "vnni";  // the vnni layout is for int8 activations only
  CHECK_THAT(message(j), Catch::Contains("does not go with"));
  j = good;
  j["epilogue"]["params"] = {0, "6"};
  CHECK_THAT(message(j), Catch::Contains("\"params\" must be an array of numbers"));

  QMatMulWorkload w;
  w.K = 64, w.N = 24;
  nlohmann::json mm = kernel_spec(w, "x86-64-avx2").to_json();
  mm["epilogue"] = {{"residual", true}, {"activation", "Gelu:none"}, {"params", nlohmann::json::array()}};
  CHECK(message(mm) == "accepted");  // a fused MatMul's kernel adds the residual and applies the Gelu
  mm["epilogue"]["params"] = "none";
  CHECK_THAT(message(mm), Catch::Contains("\"params\" must be an array of numbers"));
  mm = kernel_spec(w, "x86-64-avx2").to_json();
  mm["weight"]["k_group"] = -1;
  CHECK_THAT(message(mm), Catch::Contains("\"k_group\" must be an integer in [0"));
}

TEST_CASE("resolve decides the int8 fall-backs in one place, keeping float16 scales", "[kernel_spec]") {
  KernelSpec requested;
  requested.weight.k_group = 4;  // too short a k-block for the int8 kernels
  requested.weight.per_n = true;
  requested.weight.f16_scale = true;
  requested.activations = ActivationMode::Int8;
  TargetSpec vnni = parse_target("x86-64-avx512-vnni").value();
  TargetSpec avx2 = parse_target("x86-64-avx2").value();

  ResolvedSpec short_blocks = resolve(requested, vnni);
  CHECK(short_blocks.spec.activations == ActivationMode::Float32);
  CHECK(short_blocks.spec.layout == LayoutKind::Panel);
  CHECK(short_blocks.spec.weight.f16_scale);  // the weight's own scales
  CHECK(short_blocks.spec.target == "x86-64-avx512-vnni");
  CHECK_THAT(short_blocks.note, Catch::Contains("multiple of 8"));

  requested.weight.k_group = 32;
  ResolvedSpec runs = resolve(requested, vnni);
  CHECK(runs.spec.activations == ActivationMode::Int8);
  CHECK(runs.spec.layout == LayoutKind::Vnni);
  CHECK_FALSE(runs.spec.weight.f16_scale);  // the int8 kernels read float32 scales
  CHECK(runs.note.empty());
  CHECK(resolve(runs.spec, vnni).spec == runs.spec);  // resolving a resolved spec changes nothing

  ResolvedSpec no_dot = resolve(requested, avx2);
  CHECK(no_dot.spec.activations == ActivationMode::Float32);
  CHECK(no_dot.spec.weight.f16_scale);
  CHECK_THAT(no_dot.note, Catch::Contains("no int8 dot products"));
}

TEST_CASE("float16 activations stay on GPUs where the weight allows them, and are float32 elsewhere", "[kernel_spec]") {
  QMatMulWorkload w;
  w.M = 1, w.K = 4096, w.N = 512;
  w.format.k_group = 32;
  w.format.f16_scale = true;
  w.f16_activations = true;
  CHECK_THAT(w.key(), Catch::EndsWith(" a16"));
  KernelSpec requested = kernel_spec(w, "hip-gfx942");
  CHECK(requested.activations == ActivationMode::Float16);
  CHECK_THAT(requested.key(), Catch::Contains(" a16 panel"));
  CHECK(KernelSpec::from_json(requested.to_json()).value() == requested);
  CHECK(qmatmul_workload_from_json(qmatmul_workload_to_json(w)).value().key() == w.key());

  ResolvedSpec gpu = resolve(requested, parse_target("hip:gfx942").value());
  CHECK(gpu.spec.activations == ActivationMode::Float16);
  CHECK(gpu.spec.layout == LayoutKind::Panel);
  CHECK(gpu.spec.weight.f16_scale);
  CHECK(gpu.note.empty());
  CHECK(resolve(requested, parse_target("opencl").value()).spec.activations == ActivationMode::Float16);
  // The CPU kernels compute on the float16 values exactly in float32: nothing to note.
  ResolvedSpec cpu = resolve(requested, parse_target("x86-64-avx2").value());
  CHECK(cpu.spec.activations == ActivationMode::Float32);
  CHECK(cpu.note.empty());
  // k-blocks that split a word of 8 codes, and float weights, have no float16 kernel.
  requested.weight.k_group = 4;
  CHECK(resolve(requested, parse_target("hip:gfx942").value()).spec.activations == ActivationMode::Float32);
  requested.weight = Int4Format{};
  requested.weight.float_bits = 16;
  CHECK(resolve(requested, parse_target("hip:gfx942").value()).spec.activations == ActivationMode::Float32);
  // An unknown activation mode is refused.
  nlohmann::json other = kernel_spec(w, "hip-gfx942").to_json();
  other["activations"] = "bf16";
  CHECK_FALSE(KernelSpec::from_json(other).ok());
}

TEST_CASE("malformed specs, workloads and jobs are failures naming the field", "[kernel_spec]") {
  QMatMulWorkload w;
  w.M = 2, w.K = 64, w.N = 24;
  nlohmann::json good = qmatmul_workload_to_json(w);
  struct Case {
    std::string field;
    nlohmann::json value;  // null: the field is removed
    std::string message;
  };
  for (const Case& c : {Case{"M", nullptr, "\"M\" is missing"}, Case{"K", 0, "\"K\" must be an integer in [1"},
                        Case{"N", "24", "\"N\" must be an integer"}, Case{"epilogue", "relu", "epilogue"},
                        Case{"op", "qconv", "\"op\" must be \"qmatmul\""}, Case{"weight", 3, "weight format"}}) {
    INFO(c.field);
    nlohmann::json j = good;
    if (c.value.is_null()) j.erase(c.field);
    else j[c.field] = c.value;
    Result<QMatMulWorkload> r = qmatmul_workload_from_json(j);
    REQUIRE_FALSE(r.ok());
    CHECK(r.failure().kind == FailureKind::BadJson);
    CHECK_THAT(r.failure().describe(), Catch::Contains(c.message));
  }
  nlohmann::json bad_format = good;
  bad_format["weight"]["scale"] = "bf16";
  CHECK_THAT(qmatmul_workload_from_json(bad_format).failure().describe(), Catch::Contains("\"scale\" must be one of"));

  // A conv whose output does not follow from its input would make the worker read out of bounds.
  nlohmann::json conv = qconv_workload_to_json(depthwise_conv());
  conv["OH"] = 9;
  CHECK_THAT(qconv_workload_from_json(conv).failure().describe(), Catch::Contains("does not follow"));
  conv = qconv_workload_to_json(depthwise_conv());
  conv["C"] = 7;
  CHECK_THAT(qconv_workload_from_json(conv).failure().describe(), Catch::Contains("multiples of group"));
  conv = qconv_workload_to_json(depthwise_conv());
  conv["pads"] = {1, 1, -1, 1};
  CHECK_THAT(qconv_workload_from_json(conv).failure().describe(), Catch::Contains("\"pads\" must be 4 integers"));

  // A job: the workload's op decides which workload it holds; every field is checked.
  tuner::MeasureJob job;
  job.qmatmul = w;
  job.schedule.template_name = "cpu_int4_gemv";
  nlohmann::json j = job.to_json();
  REQUIRE(tuner::MeasureJob::from_json(j).ok());
  CHECK(tuner::MeasureJob::from_json(j).value().qmatmul->key() == w.key());
  CHECK_FALSE(j.contains("model"));
  j["workload"]["op"] = "softmax";
  CHECK_THAT(tuner::MeasureJob::from_json(j).failure().describe(), Catch::Contains("one of \"qmatmul\", \"qconv\""));
  j = job.to_json();
  j["repeats"] = -1;
  CHECK_THAT(tuner::MeasureJob::from_json(j).failure().describe(), Catch::Contains("\"repeats\""));
  j = job.to_json();
  j.erase("schedule");
  CHECK_THAT(tuner::MeasureJob::from_json(j).failure().describe(), Catch::Contains("\"schedule\" is missing"));
  CHECK_THAT(tuner::MeasureJob::from_json(nlohmann::json::array()).failure().describe(), Catch::Contains("JSON object"));
}

TEST_CASE("random weights have the workload's format, whatever it is", "[kernel_spec][tuner]") {
  std::mt19937 rng(7);
  for (const Int4Format& f : qmatmul_formats()) {
    INFO(f.describe());
    QMatMulWorkload w;
    w.K = 72, w.N = 24, w.format = f;  // K not a multiple of the blocks: a partial last block
    Result<QuantizedWeight> q = tuner::random_qmatmul_weight(w, rng);
    REQUIRE(q.ok());
    CHECK(int4_format_of(q.value(), false).value() == f);
    // Random, never zeros: the codes span their range and the scales are not all alike.
    std::set<double> values;
    for (int64_t i = 0; i < q.value().data.size(); ++i) values.insert(q.value().value(i));
    CHECK(values.size() > 8);
  }
  QMatMulWorkload k_groups;
  k_groups.K = 64, k_groups.N = 8, k_groups.format.k_group = 32;  // scales in k-groups that ignore n
  CHECK_FALSE(tuner::random_qmatmul_weight(k_groups, rng).ok());

  QConvWorkload conv = depthwise_conv();
  for (auto grid : {ConvInt4Format::Grid::PerTensor, ConvInt4Format::Grid::PerAxis, ConvInt4Format::Grid::Blocked})
    for (int axis : {0, 2}) {
      conv.format.grid = grid;
      conv.format.axis = grid == ConvInt4Format::Grid::PerTensor ? 0 : axis;
      Result<QuantizedWeight> q = tuner::random_qconv_weight(conv, rng);
      REQUIRE(q.ok());
      CHECK(conv_int4_format_of(q.value()).value() == conv.format);
    }
}
