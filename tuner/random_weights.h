// Fresh random weights in a workload's format, so that a tuning worker checks a kernel without the
// model: codes, scales and zero points all random (never zeros), shaped as an ONNX model holds them.
#pragma once
#include <random>

#include "dsl/core/qconv_format.h"
#include "dsl/core/qmatmul_workload.h"
#include "dsl/core/result.h"
#include "importer/graph.h"

namespace tetra::tuner {

// A QMatMul weight of `workload`'s K, N and format, laid out [K, N] (trans_b 0), that packs as that
// format (dsl::check_packable); a format no weight has (k-groups without per-n scales) is a Failure.
dsl::Result<QuantizedWeight> random_qmatmul_weight(const dsl::QMatMulWorkload& workload, std::mt19937& rng);

// A conv weight [M, C/group, KH, KW] whose dsl::conv_int4_format_of is `workload`'s format.
dsl::Result<QuantizedWeight> random_qconv_weight(const dsl::QConvWorkload& workload, std::mt19937& rng);

}  // namespace tetra::tuner
