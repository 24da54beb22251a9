#include "tuner/runner.h"

namespace tetra::tuner {

MeasureResult IsolatedRunner::run(const MeasureJob& job) { return measure_isolated(job, worker_, timeout_s_); }

}  // namespace tetra::tuner
