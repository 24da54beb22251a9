// A Runner for an AMD GPU that this machine does not have: each candidate is built into a code object
// for the arch and ranked by the static estimate (dsl/core/gpu_estimate.h) instead of being timed.
// A candidate that spills, uses scratch or cannot be resident (0 waves per SIMD) is a failed result
// before anything would run. Nothing is executed, so the check against the reference is the templates'
// own tests on an OpenCL device; the records this produces are stored as estimated, and never outrank
// a measurement.
#pragma once
#include <string>

#include "tuner/runner.h"

namespace tetra::tuner {

class EstimateRunner : public Runner {
 public:
  // Code objects are built in `work_dir`.
  explicit EstimateRunner(std::string work_dir) : work_dir_(std::move(work_dir)) {}
  MeasureResult run(const MeasureJob& job) override;

 private:
  std::string work_dir_;
};

// "static estimate on MI300X (gfx942)": what an estimated record says it was measured on.
std::string estimate_device_note(const std::string& gpu_arch);

}  // namespace tetra::tuner
