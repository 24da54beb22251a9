#include "dsl/spec_resolve.h"

namespace tetra::dsl {

ResolvedSpec resolve(const KernelSpec& requested, const TargetSpec& target) {
  ResolvedSpec resolved{requested, ""};
  KernelSpec& spec = resolved.spec;
  spec.target = target.name;
  QMatMulWorkload blocks;  // the *_activations_supported checks read only the format's k-blocks
  blocks.format = requested.weight;
  if (requested.activations == ActivationMode::Int8) {
    std::string why;
    if (requested.op != KernelOp::QMatMul)
      why = "only QMatMul kernels take int8 activations";
    else if (!target.has_int8_dot())
      why = target.name + " has no int8 dot products (AVX512-VNNI)";
    else if (Status st = int8_activations_supported(blocks); !st)
      why = st.failure().message;
    if (why.empty()) {
      spec.weight = int8_kernel_format(requested.weight);
    } else {
      spec.activations = ActivationMode::Float32;  // the weight's own scales, float16 ones included
      resolved.note = "float32 activations: " + why;
    }
  }
  // Float16 activations have their own kernels on GPUs, for int4 weights whose k-blocks hold whole words
  // of 8 codes (f16_activations_supported). Elsewhere the float32 kernels compute on the same float16
  // values exactly, so nothing is lost and there is nothing to note.
  if (requested.activations == ActivationMode::Float16) {
    if (requested.op != KernelOp::QMatMul || target.family == TargetFamily::Cpu || !f16_activations_supported(blocks))
      spec.activations = ActivationMode::Float32;
  }
  spec.layout = spec.activations == ActivationMode::Int8 ? LayoutKind::Vnni : LayoutKind::Panel;
  return resolved;
}

}  // namespace tetra::dsl
