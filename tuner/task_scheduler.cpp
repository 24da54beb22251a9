#include "tuner/task_scheduler.h"

namespace tetra::tuner {

std::optional<size_t> TaskScheduler::next_task(const std::vector<TaskProgress>& tasks) {
  while (warmed_up_ < tasks.size()) {
    size_t i = warmed_up_++;
    if (!tasks[i].done) {
      warming_up_ = true;
      return i;
    }
  }
  warming_up_ = false;
  std::optional<size_t> next;
  auto model_ms = [](const TaskProgress& t) { return t.occurrences * t.best_ms; };
  for (size_t i = 0; i < tasks.size(); ++i)
    if (!tasks[i].done && (!next || model_ms(tasks[i]) > model_ms(tasks[*next]))) next = i;
  return next;
}

}  // namespace tetra::tuner
