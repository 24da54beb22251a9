// Builder: compiles candidates ahead of their timing (tune --jobs), each in a build-only worker process
// (`tetra tune-worker`) that puts its kernel into the on-disk kernel cache, several at once; the
// Runner's workers then load the code instead of compiling it. A failed build is a result, not an
// exception.
#pragma once
#include <string>
#include <vector>

#include "tuner/measure.h"

namespace tetra::tuner {

struct BuildResult {
  std::string error;  // empty: built; else why not (compile error, crash, timeout)
  double compile_ms = 0;
  bool ok() const { return error.empty(); }
};

class Builder {
 public:
  // `parallel` worker processes at once, each killed after `timeout_s`.
  Builder(std::string worker, double timeout_s, int parallel)
      : worker_(std::move(worker)), timeout_s_(timeout_s), parallel_(parallel) {}
  // Builds each job's kernel into its `kernel_cache`; one result per job, in order.
  std::vector<BuildResult> build(const std::vector<MeasureJob>& jobs) const;

 private:
  std::string worker_;
  double timeout_s_;
  int parallel_;
};

}  // namespace tetra::tuner
