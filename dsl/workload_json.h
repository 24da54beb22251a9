// The workloads as JSON: what crosses to a tuning worker, which builds, checks and times a kernel from
// this alone (no model). The readers check every field, and that the shapes agree with each other, so
// a malformed workload is a Failure naming the field, never a crash in the worker.
#pragma once
#include <nlohmann/json.hpp>

#include "dsl/core/qconv_format.h"
#include "dsl/core/qmatmul_workload.h"
#include "dsl/core/result.h"

namespace tetra::dsl {

// {"op": "qmatmul", "M", "K", "N", "weight": int4_format_to_json, "bias", "epilogue": {"residual",
//  "activation", "params"}, "int8_activations", "f16_activations"}
nlohmann::json qmatmul_workload_to_json(const QMatMulWorkload& workload);
Result<QMatMulWorkload> qmatmul_workload_from_json(const nlohmann::json& j);

// {"op": "qconv", the shapes and attributes of QConvWorkload, "weight": {"type", "zero_point", "scale",
//  "grid", "axis"}, "block", "bias", "epilogue": {"residual", "activation", "params"}}
nlohmann::json qconv_workload_to_json(const QConvWorkload& workload);
Result<QConvWorkload> qconv_workload_from_json(const nlohmann::json& j);

}  // namespace tetra::dsl
