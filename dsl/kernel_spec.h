// The kernel spec: what the code of an int4 QMatMul kernel depends on, target included, as one value
// with one key, one JSON form, and one place (resolve) that decides what a target runs for a request.
// Shapes are not part of it: K and N are read from the buffers at run time, M only keys the tuning
// database (dsl/core/qmatmul_workload.h holds them). No libHalide in this header.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "dsl/core/qmatmul_workload.h"
#include "dsl/core/result.h"

namespace tetra::dsl {

struct TargetSpec;  // dsl/target.h

// How the kernel reads its packed weight (dsl/core/int4_format.h): a kind, so that device layouts come in
// as more kinds rather than as flags.
enum class LayoutKind { Panel, Vnni };
std::string layout_kind_name(LayoutKind kind);  // "panel", "vnni"

// The arithmetic of the activations: float32, or quantized to int8 per k-block (see
// QMatMulWorkload::int8_activations).
enum class ActivationMode { Float32, Int8 };
std::string activation_mode_name(ActivationMode mode);  // "f32", "int8"

struct KernelSpec {
  Int4Format weight;  // weight type, scale type, zero points, the scale grid (k-block, per n)
  LayoutKind layout = LayoutKind::Panel;
  ActivationMode activations = ActivationMode::Float32;
  bool has_bias = false;  // the epilogue: + bias, then the activation
  Activation activation = Activation::None;
  std::string target;  // a canonical dsl::TargetSpec name: "x86-64-avx512-vnni"

  // "qmatmul int4 blocked(k,32) f32 bias relu a8 vnni x86-64-avx512-vnni": the part of every code key
  // (kernel cache, model-library table) that names the kernel.
  std::string key() const;
  nlohmann::json to_json() const;
  static Result<KernelSpec> from_json(const nlohmann::json& j);
  bool operator==(const KernelSpec& o) const {
    return weight == o.weight && layout == o.layout && activations == o.activations && has_bias == o.has_bias &&
           activation == o.activation && target == o.target;
  }
};

// The spec of a QMatMul workload's kernel on the target named `target` (as requested: int8
// activations asked for are not yet decided; see resolve).
KernelSpec kernel_spec(const QMatMulWorkload& workload, const std::string& target);

// What `target` runs for a requested spec: int8 activations where they were asked for, the target has
// int8 dot products and the weight's k-blocks allow them, with the scales in the int8 kernels'
// float32 (int8_kernel_format) and the vnni layout; otherwise float32 activations over the weight's
// own scales in panels, with the reason in `note`. The one place that decides these fall-backs.
struct ResolvedSpec {
  KernelSpec spec;
  std::string note;  // "float32 activations: ..." when int8 ones were asked for and cannot run; else empty
};
ResolvedSpec resolve(const KernelSpec& requested, const TargetSpec& target);

// The JSON of a weight format: {"type": "int4"|"uint4"|"f32"|"f16", "zero_point", "k_group", "per_n",
// "scale": "f32"|"f16"}; the reader checks every field and names the one at fault.
nlohmann::json int4_format_to_json(const Int4Format& format);
Result<Int4Format> int4_format_from_json(const nlohmann::json& j);

}  // namespace tetra::dsl
