#include "tuner/task.h"

#include <map>

#include "runtime/halide_backend.h"
#include "schedules/cpu/conv.h"
#include "schedules/qmatmul_templates.h"

namespace tetra::tuner {

namespace {

// The conv as a GEMM, for the cost model's features.
dsl::QMatMulWorkload gemm_view(const dsl::QConvWorkload& c) {
  dsl::QMatMulWorkload w;
  w.M = c.N * c.OH * c.OW;
  w.K = c.Cg() * c.KH * c.KW;
  w.N = c.M;
  w.format.is_signed = c.format.is_signed;
  w.format.has_zero_point = c.format.has_zero_point;
  w.format.f16_scale = c.format.f16_scale;
  w.format.float_bits = c.format.float_bits;
  w.has_bias = c.has_bias;
  return w;
}

}  // namespace

std::vector<TuningTask> extract_tasks(const Graph& graph, const dsl::TargetSpec& target) {
  std::vector<TuningTask> tasks;
  std::map<std::string, size_t> by_key;
  auto add = [&](TuningTask task) {
    auto it = by_key.find(task.key());
    if (it != by_key.end()) {
      tasks[it->second].occurrences++;
      return;
    }
    by_key[task.key()] = tasks.size();
    tasks.push_back(std::move(task));
  };
  for (const Node& n : graph.nodes) {
    if (std::optional<HalideGemm> gemm = halide_gemm_of(n, graph)) {
      add({n.name, schedules::resolve_qmatmul(gemm->workload, target).workload, std::nullopt, gemm->weight,
           gemm->trans_b, 1});
    } else if (std::optional<HalideConv> conv = halide_conv_of(n, graph)) {
      add({n.name, gemm_view(conv->workload), conv->workload, conv->weight, false, 1});
    }
  }
  return tasks;
}

dsl::Schedule default_schedule(const TuningTask& task, const dsl::TargetSpec& target) {
  return task.conv ? schedules::default_qconv_schedule(*task.conv, target).value()
                   : schedules::default_qmatmul_schedule(task.workload, target).value();
}

}  // namespace tetra::tuner
