// A whole model on a GPU, as one device job (tools/device_main.cpp) that tetra-device runs: every node's
// kernels lowered for the target and emitted into one program in its dialect, the weights packed as the
// kernels read them, and the graph's values as device buffers. tetra-device uploads the weights and the
// inputs once, runs the kernels in graph order with every activation resident on the device, and reads
// back only the outputs. `tetra run|bench --target opencl|cuda:sm_NN|hip:ARCH` go through here.
//
// Each graph value is a storage buffer; a kernel reads it through a view (a job buffer with "alias"),
// which gives it the extents that kernel was written for: a broadcast operand padded to the output's
// rank, a GEMM's input as rows, a reshaped value unchanged in memory. Reshapes cost nothing.
//
// The kernels: tetra.QMatMul on the GPU GEMV/GEMM templates (a tuning record for the target, else the
// default) and its epilogue on elementwise kernels; elementwise ops with broadcasting, Softmax and
// LayerNormalization, and the data movement (Pad, Gather, Transpose, Slice, ...) on the fixed kernels of
// schedules/gpu/elementwise.h; Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout and Casts to
// float32 as views. A node with no GPU kernel yet is a Failure naming it:
// the model does not silently leave the device.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "dsl/core/result.h"
#include "dsl/target.h"
#include "importer/graph.h"
#include "runtime/schedule_source.h"

namespace tetra {

struct GpuModelJob {
  std::string job_file;  // DIR/job.json
  // Per node, in run order: the node's label and what runs it ("gpu_int4_gemv {...} (default schedule)").
  std::vector<std::pair<std::string, std::string>> kernels;
  int launches = 0;
  int64_t weight_bytes = 0;  // uploaded once
};

// Writes the job of `graph` (its input shapes bound, so every shape is concrete) on `inputs` for
// `target` (an OpenCL, CUDA or HIP target) into the folder `dir`. `timing_runs` > 0 asks tetra-device
// for that many more runs, timed. `schedules` (the target's tuning records) may be null.
dsl::Result<GpuModelJob> write_gpu_model_job(const Graph& graph, const std::map<std::string, Tensor>& inputs,
                                             const dsl::TargetSpec& target, const ScheduleSource* schedules,
                                             const std::string& dir, int timing_runs = 0);

// The outputs tetra-device wrote into `dir` after running the job, by graph output name.
dsl::Result<std::map<std::string, Tensor>> read_gpu_model_outputs(const Graph& graph, const std::string& dir);

}  // namespace tetra
