// The kernel spec: what the code of a QMatMul or QConv kernel depends on, target included, as one value
// with one key and one JSON form. The kernel cache and the model-library table name code by its key();
// tuning database records and model-library tables carry its JSON. Shapes are not part of it: they are
// read from the buffers at run time, and key the tuning database beside the spec
// (dsl/core/qmatmul_workload.h, qconv_format.h). What a target runs for a request is decided by
// dsl::resolve (dsl/spec_resolve.h). No libHalide here: model libraries read specs too.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "dsl/core/qconv_format.h"
#include "dsl/core/qmatmul_workload.h"
#include "dsl/core/result.h"

namespace tetra::dsl {

enum class KernelOp { QMatMul, QConv };
std::string kernel_op_name(KernelOp op);  // "qmatmul", "qconv"

// How the kernel reads its packed weight (dsl/core/int4_format.h): a kind, so that device layouts come in
// as more kinds rather than as flags.
enum class LayoutKind { Panel, Vnni };
std::string layout_kind_name(LayoutKind kind);  // "panel", "vnni"

// The arithmetic of the activations: float32; quantized to int8 per k-block (see
// QMatMulWorkload::int8_activations); or float16 (QMatMulWorkload::f16_activations: the model's
// activations are float16, and the kernel multiplies them as float16 with float32 sums).
enum class ActivationMode { Float32, Int8, Float16 };
std::string activation_mode_name(ActivationMode mode);  // "f32", "int8", "f16"
// A QMatMul workload's: int8 where asked for, else float16 where A is, else float32.
ActivationMode activation_mode(const QMatMulWorkload& workload);

// What a conv kernel compiles in besides its weight: the window's size and strides, and whether every
// output channel reads every input channel (group 1). Dilations, pads, groups and shapes are run-time values.
struct ConvWindow {
  int64_t kh = 1, kw = 1, sh = 1, sw = 1;
  bool dense = false;
  bool operator==(const ConvWindow& o) const {
    return kh == o.kh && kw == o.kw && sh == o.sh && sw == o.sw && dense == o.dense;
  }
};

struct KernelSpec {
  KernelOp op = KernelOp::QMatMul;
  Int4Format weight;           // QMatMul: weight type, scale type, zero points, the (k, n) scale grid
  ConvInt4Format conv_weight;  // QConv: the same for a 4-D weight, with the axis of its grid
  ConvWindow window;           // QConv
  LayoutKind layout = LayoutKind::Panel;
  ActivationMode activations = ActivationMode::Float32;
  bool has_bias = false;
  // The output stage after the bias: y = activation(acc + bias [+ residual]). A QMatMul has no
  // residual and no activation but "Relu".
  OutputEpilogue epilogue;
  std::string target;  // a canonical dsl::TargetSpec name: "x86-64-avx512-vnni"

  // "qmatmul int4 blocked(k,32) f32 bias Relu a8 vnni x86-64-avx512-vnni",
  // "qconv int4 per-axis(0) f32 k3x3 s1x1 dense bias Clip(0,6) panel x86-64-avx2": the part of every
  // code key (kernel cache, model-library table) that names the kernel.
  std::string key() const;
  nlohmann::json to_json() const;
  // Checks every field; a QMatMul's JSON has no window, a QConv's no k-grid.
  static Result<KernelSpec> from_json(const nlohmann::json& j);

  // The spec as the tuning database keys records: the epilogue does not change which tiling is best,
  // so it is dropped (but a QMatMul's lone Relu: OutputEpilogue) and records serve kernels with any
  // epilogue. The bias stays.
  KernelSpec for_tuning() const;

  bool operator==(const KernelSpec& o) const { return key() == o.key(); }
  bool operator!=(const KernelSpec& o) const { return !(*this == o); }
};

// The spec of a workload's kernel on the target named `target`. For a QMatMul, as requested: int8
// activations asked for are not yet decided (see dsl::resolve).
KernelSpec kernel_spec(const QMatMulWorkload& workload, const std::string& target);
KernelSpec kernel_spec(const QConvWorkload& workload, const std::string& target);

// The JSON of weight formats. QMatMul: {"type": "int4"|"uint4"|"f32"|"f16", "zero_point", "k_group",
// "per_n", "scale": "f32"|"f16"}; QConv: {"type", "zero_point", "scale", "grid", "axis"}. The readers
// check every field and name the one at fault.
nlohmann::json int4_format_to_json(const Int4Format& format);
Result<Int4Format> int4_format_from_json(const nlohmann::json& j);
nlohmann::json conv_format_to_json(const ConvInt4Format& format);
Result<ConvInt4Format> conv_format_from_json(const nlohmann::json& j);
// An epilogue: {"residual": bool, "activation": op key or "", "params": [numbers]}, and
// "activation_first": true where the residual comes after the activation.
nlohmann::json epilogue_to_json(const OutputEpilogue& epilogue);
Result<OutputEpilogue> epilogue_from_json(const nlohmann::json& j);

}  // namespace tetra::dsl
