// The Halide pipelines behind the elementwise, row and pool node kernels (halide_elementwise.cpp) and
// the data-movement ones (halide_data_movement.cpp).
#pragma once
#include "dsl/jit_pipeline.h"
#include "dsl/target.h"
#include "runtime/kernel_source.h"

namespace tetra {

// The pipeline for an Elementwise, Softmax, LayerNorm, GlobalPool or Pool request, scheduled for
// `target`. Arguments: the input buffers, then the float parameters, then the int parameters, in the
// order the node kernels pass them.
dsl::Result<dsl::ScheduledPipeline> elementwise_pipeline(const KernelRequest& request, const dsl::TargetSpec& target);

// The pipeline for a Copy, Where, Gather, Resize or Reduce request (data_movement_pipelines.cpp).
dsl::Result<dsl::ScheduledPipeline> data_movement_pipeline(const KernelRequest& request, const dsl::TargetSpec& target);

// What these pipelines are compiled for: strict_float (IEEE semantics; no reassociation or
// contraction behind our back, so infinities and NaN behave as in the reference).
Halide::Target elementwise_target(const dsl::TargetSpec& target);

}  // namespace tetra
