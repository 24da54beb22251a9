#include "tuner/builder.h"

#include <algorithm>
#include <thread>

namespace tetra::tuner {

std::vector<BuildResult> Builder::build(const std::vector<MeasureJob>& jobs) const {
  std::vector<BuildResult> results(jobs.size());
  const size_t parallel = size_t(std::max(1, parallel_));
  for (size_t first = 0; first < jobs.size(); first += parallel) {
    std::vector<std::thread> workers;
    for (size_t i = first; i < std::min(jobs.size(), first + parallel); ++i)
      workers.emplace_back([&, i] {
        MeasureJob job = jobs[i];
        job.build_only = true;
        MeasureResult r = measure_isolated(job, worker_, timeout_s_);
        results[i] = {r.ok ? "" : r.error.empty() ? "the build failed" : r.error, r.compile_ms};
      });
    for (std::thread& t : workers) t.join();
  }
  return results;
}

}  // namespace tetra::tuner
