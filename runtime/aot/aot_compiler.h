// `tetra compile`: a model and its tuned schedules become a library that an application links and
// that needs no compiler (no libHalide, libonnx or protobuf) at run time.
//
// The model runs once here on sample inputs through the JIT runtime, which records every kernel its
// node kernels ask for (runtime/kernel_source.h); each is then compiled ahead of time for the target
// with the schedule the tuning database gives for that target (the default where it has none, and
// the log says so), as a Halide object with no runtime of its own. The library holds those objects,
// one Halide runtime, tetra's Halide-free runtime (tetra_core and the model-library runtime), the
// graph with its int4 weights still packed (built in, or in a checksummed weights file), and the
// generated C glue behind the library's header.
//
//   OUT/include/NAME.h              the C API
//   OUT/lib/libNAME.a               (and libNAME.so with `shared`)
//   OUT/lib/cmake/NAME/NAMEConfig.cmake   find_package(NAME) with CMAKE_PREFIX_PATH=OUT: target NAME::NAME
//   OUT/lib/pkgconfig/NAME.pc
//   OUT/NAME.weights                with `weights_file`
//   OUT/NAME.kernels.json           what was compiled: each kernel's key, schedule and its source; with
//                                   GPU targets {"host": those, "gpu": [per target, what runs each node]}
//
// With GPU targets the library also holds, per target, the model as one GPU job: the program (an AMD
// code object in a section .rodata.tetra_program.hip_ARCH of the glue object, PTX, or OpenCL C), the
// launch plans and the packed weights. The library finds the device at create time (the drivers are
// opened with dlopen: none is needed to build or link) and runs the whole model there, or on the CPU
// kernels when none of its GPUs is present.
// Everything is built in a temporary folder and moved into OUT at the end: a failure leaves OUT as it was.
#pragma once
#include <ostream>
#include <string>
#include <vector>

#include "dsl/target.h"
#include "importer/graph.h"
#include "runtime/reference_evaluator.h"
#include "runtime/schedule_source.h"

namespace tetra {

struct LibraryOptions {
  std::string name;                             // a C identifier: prefixes every symbol of the API
  dsl::TargetSpec target;                       // an x86-64 CPU target this machine runs (dsl::runs_on_host)
  const ScheduleSource* schedules = nullptr;    // tuned schedules for `target`
  std::string out_dir;
  bool shared = false;                          // also libNAME.so
  bool weights_file = false;                    // the graph and weights in OUT/NAME.weights
  std::string runtime_lib_dir;                  // holds libtetra_core.a and libtetra_aot_runtime.a
  std::string kernel_cache;                     // the JIT's, for the run on sample inputs
  // GPU targets (hip:ARCH, cuda:sm_NN, opencl) whose whole-model jobs (runtime/aot/gpu_model_job.h) are
  // built in beside the CPU kernels; create picks the first whose device is present. With their tuned
  // schedules, in the same order (null where there are none).
  std::vector<dsl::TargetSpec> gpu_targets;
  std::vector<const ScheduleSource*> gpu_schedules;
};

struct LibraryReport {
  int kernels = 0, tuned = 0;  // compiled kernels; of them, with a schedule from the database
  std::vector<std::string> files;
};

// `graph` must have every input shape known (bind dynamic dims with load_model's input shapes).
LibraryReport compile_model_library(const Graph& graph, const TensorMap& sample_inputs, const LibraryOptions& options,
                                    std::ostream& log);

// The folder with the static libraries a model library is made of: $TETRA_LIB_DIR, else the `lib`
// folder beside the folder of the running executable (build/bin -> build/lib, or an install prefix).
std::string default_runtime_lib_dir();

}  // namespace tetra
