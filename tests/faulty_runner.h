// The real isolated runner, whose worker misbehaves on each task's second candidate: "crash", "hang" or
// "wrong" (tetra tune-worker), and for GPU candidates "device-hang" (tuner/measure_device.h). The fault
// reaches the worker process through its environment, so the tuner's options carry no test hooks.
#pragma once
#include <cstdlib>
#include <map>
#include <string>

#include "tests/test_support.h"
#include "tuner/runner.h"

namespace tetra::test {

class FaultyRunner : public tuner::Runner {
 public:
  FaultyRunner(std::string fault, double timeout_s) : fault_(std::move(fault)), real_(tetra_cli(), timeout_s) {}
  tuner::MeasureResult run(const tuner::MeasureJob& job) override {
    bool inject = ++runs_[job.qmatmul ? job.qmatmul->key() : job.qconv->key()] == 2;
    if (inject) ::setenv("TETRA_TEST_WORKER_FAULT", fault_.c_str(), 1);
    tuner::MeasureResult result = real_.run(job);
    if (inject) ::unsetenv("TETRA_TEST_WORKER_FAULT");
    return result;
  }

 private:
  std::string fault_;
  tuner::IsolatedRunner real_;
  std::map<std::string, int> runs_;  // per task, by its workload key
};

}  // namespace tetra::test
