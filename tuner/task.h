// Task extraction: the distinct kernel workloads of a model that the tuner can search, each with
// how often it occurs: the int4 GEMMs (tetra.QMatMul, and 1-D convs through im2col) and the direct
// 2-D convs.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dsl/core/qconv_format.h"
#include "dsl/qmatmul.h"
#include "dsl/schedule.h"
#include "dsl/target.h"
#include "importer/graph.h"
#include "tuner/database.h"

namespace tetra::tuner {

struct TuningTask {
  std::string node;  // the first node with this workload
  // The GEMM; for a conv task, the conv seen as a GEMM (M = output pixels, K = Cg*KH*KW, N = output
  // channels), which is what the cost model's workload features read.
  dsl::QMatMulWorkload workload;
  std::optional<dsl::QConvWorkload> conv;         // a direct conv task
  std::shared_ptr<const QuantizedWeight> weight;  // as the kernel sees it ([N, K] when trans_b)
  bool trans_b = false;
  int occurrences = 1;

  std::string key() const { return conv ? conv->key() : workload.key(); }
  WorkloadDesc desc(const std::string& target) const {
    return conv ? workload_desc(*conv, target) : workload_desc(workload, target);
  }
  double flops() const { return 2.0 * workload.M * workload.K * workload.N; }
};

// `graph` must have concrete shapes (load_model with every dynamic input dim bound). The workloads
// are those `target` runs (int8 activations only where it can: schedules::resolve_qmatmul).
std::vector<TuningTask> extract_tasks(const Graph& graph, const dsl::TargetSpec& target);

// The template default of a task's workload: the baseline of its speed-ups.
dsl::Schedule default_schedule(const TuningTask& task, const dsl::TargetSpec& target);

}  // namespace tetra::tuner
