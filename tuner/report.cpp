#include "tuner/report.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <sstream>

#include "importer/error.h"

namespace tetra::tuner {

namespace {

std::string html_escape(const std::string& text) {
  std::string out;
  for (char c : text) out += c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '&' ? "&amp;" : c == '"' ? "&quot;" : std::string(1, c);
  return out;
}

}  // namespace

std::string tuning_report_html(const std::vector<TaskSummary>& tasks, const std::string& title) {
  std::ostringstream h;
  h << "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>" << html_escape(title) << "</title>\n"
    << "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:right}td:first-child,"
       "td:last-child{text-align:left}</style></head><body>\n<h1>"
    << html_escape(title) << "</h1>\n<table>\n<tr><th>task</th><th>trials</th><th>failed</th><th>default ms</th>"
    << "<th>best ms</th><th>speed-up</th><th>best schedule</th></tr>\n";
  for (const TaskSummary& t : tasks) {
    h << std::fixed << "<tr><td>" << html_escape(t.key) << "</td><td>" << t.trials << "</td><td>" << t.failed
      << "</td><td>" << std::setprecision(4) << t.default_ms << "</td><td>" << t.best_ms << "</td><td>"
      << std::setprecision(2) << (t.default_ms > 0 && t.best_ms > 0 ? t.default_ms / t.best_ms : 1.0)
      << "x</td><td><code>" << html_escape(t.best_schedule) << "</code></td></tr>\n";
  }
  h << "</table>\n<h2>Best so far against trials</h2>\n" << convergence_svg(tasks, title) << "</body></html>\n";
  return h.str();
}

std::string convergence_svg(const std::vector<TaskSummary>& tasks, const std::string& title) {
  const int width = 720, height = 420, left = 60, right = 200, top = 40, bottom = 50;
  size_t max_trials = 1;
  for (const TaskSummary& t : tasks) max_trials = std::max(max_trials, t.best_so_far.size());
  const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};
  std::ostringstream s;
  s << "<svg xmlns='http://www.w3.org/2000/svg' width='" << width << "' height='" << height
    << "' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n"
    << "<text x='" << left << "' y='20' font-size='14'>" << title << "</text>\n";
  int pw = width - left - right, ph = height - top - bottom;
  s << "<line x1='" << left << "' y1='" << top + ph << "' x2='" << left + pw << "' y2='" << top + ph
    << "' stroke='black'/>\n<line x1='" << left << "' y1='" << top << "' x2='" << left << "' y2='" << top + ph
    << "' stroke='black'/>\n<text x='" << left + pw / 2 - 20 << "' y='" << height - 15 << "'>trials</text>\n"
    << "<text x='10' y='" << top - 8 << "'>speed-up over first</text>\n";
  // y: speed-up over the task's first measurement, 1.0 at the bottom, the best speed-up at the top.
  double top_speedup = 1.1;
  for (const TaskSummary& t : tasks)
    for (double v : t.best_so_far)
      if (v > 0 && std::isfinite(v) && t.best_so_far.front() > 0)
        top_speedup = std::max(top_speedup, t.best_so_far.front() / v * 1.05);
  for (int tick = 0; tick <= 4; ++tick) {
    double v = 1 + (top_speedup - 1) * tick / 4;
    int y = top + ph - static_cast<int>(ph * tick / 4.0);
    s << "<text x='" << 20 << "' y='" << y + 4 << "'>" << std::fixed << std::setprecision(2) << v << "x</text>\n";
  }
  for (size_t i = 0; i < tasks.size(); ++i) {
    const TaskSummary& t = tasks[i];
    if (t.best_so_far.empty() || !(t.best_so_far.front() > 0)) continue;
    s << "<polyline fill='none' stroke='" << colors[i % 8] << "' stroke-width='2' points='";
    for (size_t k = 0; k < t.best_so_far.size(); ++k) {
      double speedup = t.best_so_far[k] > 0 ? t.best_so_far.front() / t.best_so_far[k] : 1;
      double x = left + pw * (max_trials == 1 ? 0.0 : static_cast<double>(k) / (max_trials - 1));
      double y = top + ph - ph * (speedup - 1) / (top_speedup - 1);
      s << x << "," << y << " ";
    }
    s << "'/>\n<text x='" << left + pw + 8 << "' y='" << top + 14 * (i + 1) << "' fill='" << colors[i % 8] << "'>"
      << t.key.substr(0, 30) << "</text>\n";
  }
  s << "</svg>\n";
  return s.str();
}

void write_tuning_report(const std::string& path, const std::vector<TaskSummary>& tasks, const std::string& title) {
  std::ofstream report(path);
  check(report.good(), ErrorKind::Io, "cannot write the report '" + path + "'");
  bool html = path.size() >= 5 && path.compare(path.size() - 5, 5, ".html") == 0;
  report << (html ? tuning_report_html(tasks, title) : convergence_svg(tasks, title));
}

}  // namespace tetra::tuner
