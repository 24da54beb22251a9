// What a target runs for a requested kernel spec (dsl/core/kernel_spec.h): the one place that decides
// the fall-backs.
#pragma once
#include <string>

#include "dsl/core/kernel_spec.h"
#include "dsl/target.h"

namespace tetra::dsl {

// Int8 activations where they were asked for, the target has int8 dot products and the weight's
// k-blocks allow them, with the scales in the int8 kernels' float32 (int8_kernel_format) and the vnni
// layout; otherwise float32 activations over the weight's own scales in panels, with the reason in
// `note`. Float16 activations stay on GPU targets where the weight allows them, and become float32
// elsewhere (exact on float16 values: no note). The spec's target becomes `target`'s name.
struct ResolvedSpec {
  KernelSpec spec;
  std::string note;  // "float32 activations: ..." when int8 ones were asked for and cannot run; else empty
};
ResolvedSpec resolve(const KernelSpec& requested, const TargetSpec& target);

}  // namespace tetra::dsl
