// `tetra run|bench --target opencl|cuda[:sm_NN]|hip[:ARCH]`: the whole model on this machine's GPU, as one
// device job (runtime/aot/gpu_model_job.h) that tetra-device runs in a process of its own (pocl's LLVM
// and libHalide's cannot share one).
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "importer/graph.h"
#include "runtime/executor.h"

namespace tetra::cli {

// Whether `target` names a GPU family (opencl..., cuda..., hip...).
bool is_gpu_target(const std::string& target);

// The target a run uses: `target`, or "" (this machine's CPU) when `fallback` is "cpu" and the GPU
// target's device or runtime is missing here, which it says on stderr. "" and "cpu" are the only fallbacks.
std::string target_or_fallback(const std::string& target, const std::string& fallback);

struct GpuRun {
  std::string device, target;  // the device's name; the target, canonical
  Graph graph;                 // the model with the inputs' shapes bound
  std::map<std::string, Tensor> outputs;
  std::vector<std::pair<std::string, std::string>> kernels;  // per node: what ran it
  int launches = 0;
  double first_ms = 0;  // the first run, uploads and downloads included
  double timed_ms = 0;  // per timed run (timing_runs > 0): the kernels alone, weights and activations resident
  double median_ms = 0;  // per run, the median over batches of the timed runs
};

// Runs `model` on `inputs` on the target's device, then `timing_runs` more times, timed. `db`: the tuning
// database folder ("" for the one beside the model, if any). `activations`: the opt-in of its int4 MatMuls
// (apply_activation_opt_in).
GpuRun run_on_gpu(const std::string& model, const std::map<std::string, Tensor>& inputs, const std::string& target,
                  const std::string& db, int timing_runs, ActivationOptIn activations);

}  // namespace tetra::cli
