#include "dsl/core/kernel_spec.h"

#include <algorithm>

#include "dsl/core/json_reader.h"

namespace tetra::dsl {

std::string kernel_op_name(KernelOp op) { return op == KernelOp::QConv ? "qconv" : "qmatmul"; }

std::string layout_kind_name(LayoutKind kind) { return kind == LayoutKind::Vnni ? "vnni" : "panel"; }

std::string activation_mode_name(ActivationMode mode) {
  switch (mode) {
    case ActivationMode::Int8:
      return "int8";
    case ActivationMode::Float16:
      return "f16";
    default:
      return "f32";
  }
}

ActivationMode activation_mode(const QMatMulWorkload& w) {
  return w.int8_activations  ? ActivationMode::Int8
         : w.f16_activations ? ActivationMode::Float16
                             : ActivationMode::Float32;
}

std::string KernelSpec::key() const {
  auto x = [](int64_t a, int64_t b) { return std::to_string(a) + "x" + std::to_string(b); };
  std::string s = kernel_op_name(op) + " ";
  if (op == KernelOp::QConv)
    s += conv_weight.describe() + " k" + x(window.kh, window.kw) + " s" + x(window.sh, window.sw) +
         (window.dense ? " dense" : "");
  else
    s += weight.describe();
  if (has_bias) s += " bias";
  if (!epilogue.empty()) s += " " + epilogue.describe();
  if (activations == ActivationMode::Int8) s += " a8";
  if (activations == ActivationMode::Float16) s += " a16";
  return s + " " + layout_kind_name(layout) + " " + target;
}

KernelSpec KernelSpec::for_tuning() const {
  KernelSpec s = *this;
  if (op == KernelOp::QConv || !epilogue.is_lone_relu()) s.epilogue = OutputEpilogue{};
  return s;
}

nlohmann::json int4_format_to_json(const Int4Format& f) {
  if (f.is_float()) return {{"type", f.float_bits == 32 ? "f32" : "f16"}};
  return {{"type", f.is_signed ? "int4" : "uint4"},
          {"zero_point", f.has_zero_point},
          {"k_group", f.k_group},
          {"per_n", f.per_n},
          {"scale", f.f16_scale ? "f16" : "f32"}};
}

namespace {

// The fields both weight formats share: the type (a float weight has no others), zero points and the
// scale type. False for a float weight.
bool read_quantized(JsonReader& r, int* float_bits, bool* is_signed, bool* zero_point, bool* f16_scale) {
  int type = r.choice("type", {"int4", "uint4", "f32", "f16"});
  if (type >= 2) {
    *float_bits = type == 2 ? 32 : 16;
    return false;
  }
  *is_signed = type == 0;
  *zero_point = r.flag("zero_point");
  *f16_scale = r.choice("scale", {"f32", "f16"}) == 1;
  return true;
}

}  // namespace

Result<Int4Format> int4_format_from_json(const nlohmann::json& j) {
  JsonReader r(j, "weight format");
  Int4Format f;
  if (read_quantized(r, &f.float_bits, &f.is_signed, &f.has_zero_point, &f.f16_scale)) {
    f.k_group = r.integer("k_group", 0, int64_t(1) << 31);
    f.per_n = r.flag("per_n");
  }
  if (!r.ok()) return r.failure();
  return f;
}

namespace {
const std::vector<std::string> kConvGrids = {"per-tensor", "per-axis", "blocked"};
}  // namespace

nlohmann::json conv_format_to_json(const ConvInt4Format& f) {
  if (f.is_float()) return {{"type", f.float_bits == 32 ? "f32" : "f16"}};
  return {{"type", f.is_signed ? "int4" : "uint4"},
          {"zero_point", f.has_zero_point},
          {"scale", f.f16_scale ? "f16" : "f32"},
          {"grid", kConvGrids[size_t(f.grid)]},
          {"axis", f.axis}};
}

Result<ConvInt4Format> conv_format_from_json(const nlohmann::json& j) {
  JsonReader r(j, "conv weight format");
  ConvInt4Format f;
  if (read_quantized(r, &f.float_bits, &f.is_signed, &f.has_zero_point, &f.f16_scale)) {
    f.grid = ConvInt4Format::Grid(r.choice("grid", kConvGrids));
    f.axis = int(r.integer("axis", 0, 3));
  }
  if (!r.ok()) return r.failure();
  return f;
}

nlohmann::json epilogue_to_json(const OutputEpilogue& e) {
  nlohmann::json j = {{"residual", e.residual}, {"activation", e.activation}, {"params", e.params}};
  if (e.activation_first) j["activation_first"] = true;  // absent otherwise: older records read the same
  return j;
}

Result<OutputEpilogue> epilogue_from_json(const nlohmann::json& j) {
  JsonReader r(j, "epilogue");
  OutputEpilogue e;
  e.residual = r.flag("residual");
  e.activation = r.text("activation");
  const nlohmann::json* params = r.field("params");
  if (params && !(params->is_array() && std::all_of(params->begin(), params->end(), [](const auto& p) { return p.is_number(); })))
    r.fail_with("\"params\" must be an array of numbers, not " + params->dump());
  if (j.is_object() && j.contains("activation_first")) {
    if (!j.at("activation_first").is_boolean())
      r.fail_with("\"activation_first\" must be true or false, not " + j.at("activation_first").dump());
    else
      e.activation_first = j.at("activation_first").get<bool>();
  }
  if (!r.ok()) return r.failure();
  for (const nlohmann::json& p : *params) e.params.push_back(p.get<float>());
  return e;
}

nlohmann::json KernelSpec::to_json() const {
  nlohmann::json j = {{"op", kernel_op_name(op)}};
  if (op == KernelOp::QConv) {
    j["weight"] = conv_format_to_json(conv_weight);
    j["window"] = {{"kernel", {window.kh, window.kw}}, {"strides", {window.sh, window.sw}}, {"dense", window.dense}};
  } else {
    j["weight"] = int4_format_to_json(weight);
  }
  j["layout"] = layout_kind_name(layout);
  j["activations"] = activation_mode_name(activations);
  j["bias"] = has_bias;
  j["epilogue"] = epilogue_to_json(epilogue);
  j["target"] = target;
  return j;
}

namespace {

// [a, b] with both integers in [1, 2^31): a window's kernel or strides.
bool read_pair(JsonReader& r, const std::string& key, int64_t& a, int64_t& b) {
  const nlohmann::json* v = r.field(key);
  if (!v) return false;
  auto good = [](const nlohmann::json& e) {
    return e.is_number_integer() && e.get<int64_t>() >= 1 && e.get<int64_t>() < (int64_t(1) << 31);
  };
  if (!(v->is_array() && v->size() == 2 && good((*v)[0]) && good((*v)[1]))) {
    r.fail_with("\"" + key + "\" must be two integers >= 1, not " + v->dump());
    return false;
  }
  a = (*v)[0].get<int64_t>();
  b = (*v)[1].get<int64_t>();
  return true;
}

}  // namespace

Result<KernelSpec> KernelSpec::from_json(const nlohmann::json& j) {
  JsonReader r(j, "kernel spec");
  KernelSpec s;
  s.op = r.choice("op", {"qmatmul", "qconv"}) == 1 ? KernelOp::QConv : KernelOp::QMatMul;
  const nlohmann::json* weight = r.field("weight");
  const nlohmann::json* window = s.op == KernelOp::QConv ? r.field("window") : nullptr;
  s.layout = r.choice("layout", {"panel", "vnni"}) == 1 ? LayoutKind::Vnni : LayoutKind::Panel;
  s.activations = ActivationMode(r.choice("activations", {"f32", "int8", "f16"}));
  s.has_bias = r.flag("bias");
  const nlohmann::json* epilogue = r.field("epilogue");
  s.target = r.text("target");
  if (!r.ok()) return r.failure();

  if (s.op == KernelOp::QConv) {
    Result<ConvInt4Format> format = conv_format_from_json(*weight);
    if (!format) return format.failure();
    s.conv_weight = format.value();
    JsonReader w(*window, "conv window");
    read_pair(w, "kernel", s.window.kh, s.window.kw);
    read_pair(w, "strides", s.window.sh, s.window.sw);
    s.window.dense = w.flag("dense");
    if (!w.ok()) return w.failure();
  } else {
    Result<Int4Format> format = int4_format_from_json(*weight);
    if (!format) return format.failure();
    s.weight = format.value();
  }

  Result<OutputEpilogue> read = epilogue_from_json(*epilogue);
  if (!read) return read.failure();
  s.epilogue = read.value();

  // The int8 kernels read only the vnni packing, and the float32 ones only panels.
  if ((s.activations == ActivationMode::Int8) != (s.layout == LayoutKind::Vnni))
    return Failure{FailureKind::BadJson, "kernel spec",
                   "\"layout\" \"" + layout_kind_name(s.layout) + "\" does not go with \"activations\" \"" +
                       activation_mode_name(s.activations) + "\""};
  if (s.op == KernelOp::QConv && s.activations != ActivationMode::Float32)
    return Failure{FailureKind::BadJson, "kernel spec", "a qconv has float32 activations only"};
  return s;
}

KernelSpec kernel_spec(const QMatMulWorkload& w, const std::string& target) {
  KernelSpec s;
  s.op = KernelOp::QMatMul;
  s.weight = w.format;
  s.activations = activation_mode(w);
  s.layout = w.int8_activations ? LayoutKind::Vnni : LayoutKind::Panel;
  s.has_bias = w.has_bias;
  s.epilogue = w.epilogue;
  s.target = target;
  return s;
}

KernelSpec kernel_spec(const QConvWorkload& w, const std::string& target) {
  KernelSpec s;
  s.op = KernelOp::QConv;
  s.conv_weight = w.format;
  s.window = ConvWindow{w.KH, w.KW, w.SH, w.SW, w.group == 1};
  s.has_bias = w.has_bias;
  s.epilogue = w.epilogue;
  s.target = target;
  return s;
}

}  // namespace tetra::dsl
