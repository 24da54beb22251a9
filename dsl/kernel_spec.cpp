#include "dsl/kernel_spec.h"

#include "dsl/json_reader.h"
#include "dsl/target.h"

namespace tetra::dsl {

std::string layout_kind_name(LayoutKind kind) { return kind == LayoutKind::Vnni ? "vnni" : "panel"; }

std::string activation_mode_name(ActivationMode mode) { return mode == ActivationMode::Int8 ? "int8" : "f32"; }

std::string KernelSpec::key() const {
  std::string s = "qmatmul " + weight.describe();
  if (has_bias) s += " bias";
  if (activation != Activation::None) s += " " + activation_name(activation);
  if (activations == ActivationMode::Int8) s += " a8";
  return s + " " + layout_kind_name(layout) + " " + target;
}

nlohmann::json int4_format_to_json(const Int4Format& f) {
  if (f.is_float()) return {{"type", f.float_bits == 32 ? "f32" : "f16"}};
  return {{"type", f.is_signed ? "int4" : "uint4"},
          {"zero_point", f.has_zero_point},
          {"k_group", f.k_group},
          {"per_n", f.per_n},
          {"scale", f.f16_scale ? "f16" : "f32"}};
}

Result<Int4Format> int4_format_from_json(const nlohmann::json& j) {
  JsonReader r(j, "weight format");
  Int4Format f;
  int type = r.choice("type", {"int4", "uint4", "f32", "f16"});
  if (type >= 2) {
    f.float_bits = type == 2 ? 32 : 16;
  } else {
    f.is_signed = type == 0;
    f.has_zero_point = r.flag("zero_point");
    f.k_group = r.integer("k_group", 0, int64_t(1) << 31);
    f.per_n = r.flag("per_n");
    f.f16_scale = r.choice("scale", {"f32", "f16"}) == 1;
  }
  if (!r.ok()) return r.failure();
  return f;
}

nlohmann::json KernelSpec::to_json() const {
  return {{"weight", int4_format_to_json(weight)},
          {"layout", layout_kind_name(layout)},
          {"activations", activation_mode_name(activations)},
          {"bias", has_bias},
          {"activation", activation_name(activation)},
          {"target", target}};
}

Result<KernelSpec> KernelSpec::from_json(const nlohmann::json& j) {
  JsonReader r(j, "kernel spec");
  KernelSpec s;
  const nlohmann::json* weight = r.field("weight");
  s.layout = r.choice("layout", {"panel", "vnni"}) == 1 ? LayoutKind::Vnni : LayoutKind::Panel;
  s.activations = r.choice("activations", {"f32", "int8"}) == 1 ? ActivationMode::Int8 : ActivationMode::Float32;
  s.has_bias = r.flag("bias");
  s.activation = r.choice("activation", {"none", "relu"}) == 1 ? Activation::Relu : Activation::None;
  s.target = r.text("target");
  if (!r.ok()) return r.failure();
  Result<Int4Format> format = int4_format_from_json(*weight);
  if (!format) return format.failure();
  s.weight = format.value();
  return s;
}

KernelSpec kernel_spec(const QMatMulWorkload& w, const std::string& target) {
  KernelSpec s;
  s.weight = w.format;
  s.activations = w.int8_activations ? ActivationMode::Int8 : ActivationMode::Float32;
  s.layout = w.int8_activations ? LayoutKind::Vnni : LayoutKind::Panel;
  s.has_bias = w.has_bias;
  s.activation = w.activation;
  s.target = target;
  return s;
}

ResolvedSpec resolve(const KernelSpec& requested, const TargetSpec& target) {
  ResolvedSpec resolved{requested, ""};
  KernelSpec& spec = resolved.spec;
  spec.target = target.name;
  if (requested.activations == ActivationMode::Int8) {
    QMatMulWorkload blocks;  // int8_activations_supported reads only the format's k-blocks
    blocks.format = requested.weight;
    std::string why;
    if (!target.has_int8_dot()) why = target.name + " has no int8 dot products (AVX512-VNNI)";
    else if (Status st = int8_activations_supported(blocks); !st) why = st.failure().message;
    if (why.empty()) {
      spec.weight = int8_kernel_format(requested.weight);
    } else {
      spec.activations = ActivationMode::Float32;  // the weight's own scales, float16 ones included
      resolved.note = "float32 activations: " + why;
    }
  }
  spec.layout = spec.activations == ActivationMode::Int8 ? LayoutKind::Vnni : LayoutKind::Panel;
  return resolved;
}

}  // namespace tetra::dsl
