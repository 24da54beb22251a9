// Runner: checks a built candidate against the reference and times it. The tuning loop times one
// candidate at a time, so timings never overlap. The result is a plain record; a crash, a hang or a
// wrong result is a failed result, never an exception.
#pragma once
#include <string>

#include "tuner/measure.h"

namespace tetra::tuner {

class Runner {
 public:
  virtual ~Runner() = default;
  virtual MeasureResult run(const MeasureJob& job) = 0;
};

// Each candidate in its own `tetra tune-worker` process (`worker`: the tetra CLI), killed after
// `timeout_s` (compile, check and timing together).
class IsolatedRunner : public Runner {
 public:
  IsolatedRunner(std::string worker, double timeout_s) : worker_(std::move(worker)), timeout_s_(timeout_s) {}
  MeasureResult run(const MeasureJob& job) override;

 private:
  std::string worker_;
  double timeout_s_;
};

}  // namespace tetra::tuner
