#include "tuner/task.h"

#include <map>

#include "runtime/halide_ops.h"
#include "schedules/qmatmul_templates.h"

namespace tetra::tuner {

std::vector<TuningTask> extract_tasks(const Graph& graph, const dsl::TargetSpec& target) {
  std::vector<TuningTask> tasks;
  std::map<std::string, size_t> by_key;
  for (const Node& n : graph.nodes) {
    std::optional<HalideGemm> gemm = halide_gemm_of(n, graph);
    if (!gemm) continue;
    gemm->workload = schedules::workload_for_target(gemm->workload, target);
    std::string key = gemm->workload.key();
    auto it = by_key.find(key);
    if (it != by_key.end()) {
      tasks[it->second].occurrences++;
      continue;
    }
    by_key[key] = tasks.size();
    tasks.push_back({n.name, gemm->workload, gemm->weight, gemm->trans_b, 1});
  }
  return tasks;
}

}  // namespace tetra::tuner
