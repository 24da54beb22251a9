// Task extraction: the distinct kernel workloads of a model that the tuner can search, each with
// how often it occurs. An int4 MatMul/Gemm and a group-1 int4 conv (im2col) are both GEMMs.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "dsl/qmatmul.h"
#include "dsl/target.h"
#include "importer/graph.h"

namespace tetra::tuner {

struct TuningTask {
  std::string node;  // the first node with this workload
  dsl::QMatMulWorkload workload;
  std::shared_ptr<const QuantizedWeight> weight;  // as the kernel sees it ([N, K] when trans_b)
  bool trans_b = false;
  int occurrences = 1;

  double flops() const { return 2.0 * workload.M * workload.K * workload.N; }
};

// `graph` must have concrete shapes (load_model with every dynamic input dim bound). The workloads
// are those `target` runs (int8 activations only where it can: schedules::workload_for_target).
std::vector<TuningTask> extract_tasks(const Graph& graph, const dsl::TargetSpec& target);

}  // namespace tetra::tuner
