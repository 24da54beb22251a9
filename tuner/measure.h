// Builder + runner: each candidate is compiled, checked against the reference and timed in a
// separate process, so a candidate that crashes, hangs or runs out of memory is a failed record and
// tuning goes on. What crosses the process boundary is a JSON job and a JSON result (failure is data).
#pragma once
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "dsl/core/qconv_format.h"
#include "dsl/core/qmatmul_workload.h"
#include "dsl/schedule.h"

namespace tetra::tuner {

// One candidate: the kernel (a QMatMul or a direct QConv workload, resolved for `target`) and its
// schedule. The worker builds it from these alone, with random weights in the workload's format: it
// never reads the model.
struct MeasureJob {
  std::optional<dsl::QMatMulWorkload> qmatmul;  // exactly one of these two
  std::optional<dsl::QConvWorkload> qconv;
  std::string target;  // what the kernel is compiled for (a dsl::TargetSpec name this machine runs); "": this machine
  dsl::Schedule schedule;
  int repeats = 10;
  int warmup = 2;
  int threads = 0;
  std::string kernel_cache;  // compile through this on-disk kernel cache ("" : JIT in the worker)
  bool build_only = false;   // compile into `kernel_cache` and stop: the parallel builds of --jobs
  std::string device_program;  // GPU targets: tetra-device, which runs the candidate (tuner/measure_device.h)

  // {"workload": dsl/workload_json.h, "target", "schedule", ...}
  nlohmann::json to_json() const;
  // A malformed job (a missing or mistyped field, shapes that disagree) is a Failure naming the field.
  static dsl::Result<MeasureJob> from_json(const nlohmann::json& j);
};

struct MeasureResult {
  bool ok = false;
  std::string error;  // why it failed: compile error, wrong result, crash, timeout
  double median_ms = 0, min_ms = 0, max_ms = 0, compile_ms = 0;
  int runs = 0;

  nlohmann::json to_json() const;
  static MeasureResult from_json(const nlohmann::json& j);
};

// The worker's result as it writes it: one line "tetra-measure-result: {JSON}", the last of its
// output. The reader takes the last such line only, so whatever else the worker prints (a message
// that quotes a schedule's JSON included) never passes for a result.
std::string worker_result_line(const MeasureResult& result);
// The result in a worker's output, or nullopt when no line holds one.
std::optional<MeasureResult> parse_worker_output(const std::string& output);

// In this process (the worker's side): compile, check on fresh random data, time. `fault` is for tests
// (tetra tune-worker reads it from TETRA_TEST_WORKER_FAULT): "crash", "hang" or "wrong" makes the
// worker misbehave so, to show that isolation and the check catch it.
MeasureResult measure_here(const MeasureJob& job, const std::string& fault = "");

// In a child process `worker` (the tetra CLI: `tetra tune-worker JOB_JSON`), killed after
// `timeout_s`; a crash, a hang or unreadable output becomes a failed result.
MeasureResult measure_isolated(const MeasureJob& job, const std::string& worker, double timeout_s);

}  // namespace tetra::tuner
