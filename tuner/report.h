// Reports of a tuning run (`tetra tune --report`): best-so-far time against trials per task, as an SVG
// chart or an HTML page with a table of the tasks.
#pragma once
#include <string>
#include <vector>

#include "tuner/tune.h"

namespace tetra::tuner {

// An SVG line chart of best-so-far time (relative to each task's first measurement) against trials.
std::string convergence_svg(const std::vector<TaskSummary>& tasks, const std::string& title);
// An HTML page: a table of the tasks (trials, failures, default and best time, best schedule) and the
// chart.
std::string tuning_report_html(const std::vector<TaskSummary>& tasks, const std::string& title);
// The HTML page for a path ending in .html, else the SVG chart alone.
void write_tuning_report(const std::string& path, const std::vector<TaskSummary>& tasks, const std::string& title);

}  // namespace tetra::tuner
