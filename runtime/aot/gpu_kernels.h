// A model's GPU kernels for AMD archs: what `tetra compile --target hip:ARCH,...` writes and
// `tetra inspect --target hip:ARCH` prints.
//
// Per arch, each QMatMul task of the graph (tuner/task.h) gets its schedule (the tuning database's
// record for that arch, else the template default), is lowered and captured (schedules/gpu/build.h),
// and then every task's kernels are emitted as HIP into one code object, whose notes give each kernel's
// registers, LDS, scratch and spills; occupancy follows from dsl/core/amd_arch.h. A task with no GPU
// template yet (convs, M > 8) is listed with the reason instead.
//
//   OUT/NAME.ARCH.co           the code object of each arch (ELF, amdgcn-amd-amdhsa--ARCH)
//   OUT/NAME.ARCH.launch.json  how to launch its kernels: per workload key, the launch plans in order
//                              (dsl/core/launch_plan.h)
//   OUT/NAME.kernels.json      per arch and workload: the schedule, where it came from, each
//                              kernel's resources, and the static estimate on the arch's reference GPU
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "dsl/core/gpu_estimate.h"
#include "dsl/core/launch_plan.h"
#include "dsl/gpu/code_object.h"
#include "dsl/schedule.h"
#include "dsl/target.h"
#include "importer/graph.h"
#include "runtime/schedule_source.h"

namespace tetra {

struct GpuTaskKernels {
  std::string node;      // the first node of the workload
  std::string workload;  // its key
  int occurrences = 1;
  std::string unsupported;  // why the workload has no GPU kernels yet; empty when it has
  dsl::Schedule schedule;
  std::string schedule_source;                       // "default schedule" or "database ..."
  std::vector<dsl::LaunchPlan> launches;             // in launch order
  std::vector<dsl::gpu::KernelResources> resources;  // one per launch
  // On the arch's reference device (dsl/core/gpu_estimate.h), from the template's traffic and the
  // code object's occupancy.
  std::optional<dsl::GpuEstimate> estimate;
};

struct GpuArchKernels {
  dsl::TargetSpec target;
  std::vector<GpuTaskKernels> tasks;

  int kernel_count() const;
  nlohmann::json report_json() const;  // the arch's entry of kernels.json
  nlohmann::json launch_json() const;  // NAME.ARCH.launch.json
};

// The kernels of `graph` (concrete shapes) for `target` (hip:ARCH), built into `code_object` when any
// task has kernels. `schedules` (tuned for `target`) may be null. A failure to build the code object is a
// Failure naming the arch.
dsl::Result<GpuArchKernels> build_gpu_model_kernels(const Graph& graph, const dsl::TargetSpec& target,
                                                    const ScheduleSource* schedules, const std::string& code_object);

struct GpuLibraryOptions {
  std::string name;                      // a C identifier
  std::vector<dsl::TargetSpec> targets;  // hip:ARCH, one per arch
  std::string model;                     // named in kernels.json
  std::string out_dir;
  // The tuned schedules of each target, in the order of `targets` (null where there are none).
  std::vector<const ScheduleSource*> schedules;
};

// Writes the files above for every arch: all of them, or, on any failure, none (an error naming the
// arch). Returns the files written, relative to out_dir.
std::vector<std::string> compile_gpu_kernels(const Graph& graph, const GpuLibraryOptions& options, std::ostream& log);

}  // namespace tetra
