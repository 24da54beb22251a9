// ONNX Runtime (node) as an independent oracle, through scripts/ort_run.js.
#pragma once
#include <string>
#include <vector>

#include "importer/tensor.h"
#include "runtime/aot/gpu_model_job.h"
#include "runtime/executor.h"

namespace tetra::test {

// node and <source>/node_modules/onnxruntime-node are both present.
bool ort_available();
// For tests that need ORT: true when it is there. Otherwise FAILs the test when the environment
// variable CI is set (CI must not pass silently without the oracle), else WARNs and returns false.
bool require_ort();
// Runs the model with ORT on `inputs` (bound by position) and returns its outputs in model order.
// Graph optimisations are off unless `optimize`. Throws std::runtime_error with ORT's message.
std::vector<Tensor> run_ort(const std::string& model_path, const std::vector<Tensor>& inputs, bool optimize = false);
// The same through tetra on `backend`, inputs bound by position. `quantized_nodes`, when given,
// receives how many fused int4 nodes the loaded graph holds.
std::vector<Tensor> run_tetra(const std::string& model_path, const std::vector<Tensor>& inputs,
                              size_t* quantized_nodes = nullptr, Backend backend = Backend::Reference);
// The model with its inputs' shapes bound to `inputs` (by position); `feeds` receives them by name.
Graph load_with_inputs(const std::string& model_path, const std::vector<Tensor>& inputs, TensorMap* feeds);
// The graph run as one whole-model GPU job on pocl's OpenCL device by tetra-device (REQUIREs that it
// builds and runs): its outputs by name. `job`, when given, receives what the job ran.
TensorMap run_on_opencl(const Graph& graph, const TensorMap& feeds, GpuModelJob* job = nullptr);

}  // namespace tetra::test
