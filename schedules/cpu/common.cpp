#include "schedules/cpu/common.h"

#include <algorithm>

namespace tetra::schedules {

std::vector<int64_t> panel_widths(int64_t N, const std::vector<int64_t>& candidates) {
  std::vector<int64_t> out;
  for (int64_t c : candidates)
    if (c <= 16 || c / 2 < N) out.push_back(c);
  return out;
}

int64_t largest_panel(int64_t N, const std::vector<int64_t>& preferred, int lanes) {
  int64_t fallback = 0;
  for (int64_t c : preferred) {
    if (c % lanes != 0) continue;
    if (c <= N) return c;
    if (fallback == 0 || c < fallback) fallback = c;
  }
  return fallback > 0 ? fallback : lanes;
}

std::vector<int64_t> vector_widths(const dsl::TargetSpec& target) {
  int lanes = std::max(4, target.natural_lanes());
  std::vector<int64_t> out = {lanes / 2, lanes, lanes * 2};
  if (lanes / 2 < 4) out.erase(out.begin());
  return out;
}

dsl::Status check_tile_vector(const dsl::Schedule& s) {
  int64_t tile_n = s.get_int("tile_n"), v = s.get_int("vector_width");
  if (tile_n % v != 0)
    return dsl::Failure{dsl::FailureKind::KnobConflict, "tile_n",
                        std::to_string(tile_n) + " is not a multiple of vector_width " + std::to_string(v)};
  return dsl::ok_status();
}

}  // namespace tetra::schedules
