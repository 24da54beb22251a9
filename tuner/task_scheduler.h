// Which task the tuner's next batch of trials goes to: one warm-up round over every task (each gets
// its template default measured, the baseline of its speed-up), then the task with the most model
// time, occurrences x best time, that still improves.
#pragma once
#include <cstddef>
#include <optional>
#include <vector>

namespace tetra::tuner {

// What the scheduler knows of a task.
struct TaskProgress {
  int occurrences = 1;  // in the model
  double best_ms = 0;   // best so far (0: none working yet)
  bool done = false;    // out of trials, out of candidates, or no longer improving
};

class TaskScheduler {
 public:
  // The index of the task to tune next, or nullopt when every task is done.
  std::optional<size_t> next_task(const std::vector<TaskProgress>& tasks);
  // Was the last task returned part of the warm-up round? (A time budget does not cut that round short.)
  bool warming_up() const { return warming_up_; }

 private:
  size_t warmed_up_ = 0;  // tasks [0, warmed_up_) have had their warm-up turn
  bool warming_up_ = false;
};

}  // namespace tetra::tuner
