// Small helpers shared by the CPU templates' knob spaces.
#pragma once
#include <cstdint>
#include <vector>

#include "dsl/schedule.h"
#include "dsl/target.h"

namespace tetra::schedules {

// The candidate panel widths that make sense for N columns: up to 16, and none much wider than N.
std::vector<int64_t> panel_widths(int64_t N, const std::vector<int64_t>& candidates);

// The first preferred width that is a multiple of `lanes` and not wider than N; else the narrowest
// multiple of `lanes` among the preferences.
int64_t largest_panel(int64_t N, const std::vector<int64_t>& preferred, int lanes);

// fp32 lanes a CPU schedule may ask for: the native width, half of it, and double.
std::vector<int64_t> vector_widths(const dsl::TargetSpec& target);

// tile_n must be a whole number of vectors.
dsl::Status check_tile_vector(const dsl::Schedule& schedule);

}  // namespace tetra::schedules
