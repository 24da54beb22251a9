// The schedule space of one tuning task: every template of the target's family that serves the
// workload, each with its knob space, and the moves the search strategies make in it (a random
// point, every point, a mutation, a crossover), all of them legal (conflicts checked).
#pragma once
#include <optional>
#include <random>
#include <vector>

#include "dsl/core/qconv_format.h"
#include "dsl/qmatmul.h"
#include "dsl/schedule.h"
#include "dsl/target.h"

namespace tetra::tuner {

// One measurement of a task: what the strategies learn from.
struct Measured {
  dsl::Schedule schedule;
  double median_ms;  // infinity for a failed candidate
};

class SearchSpace {
 public:
  SearchSpace(const dsl::QMatMulWorkload& workload, const dsl::TargetSpec& target);
  // A direct conv: its template's space; `gemm_view` stands for it in the cost model's features.
  SearchSpace(const dsl::QConvWorkload& conv, const dsl::QMatMulWorkload& gemm_view, const dsl::TargetSpec& target);
  double size() const;
  // A legal point: a template drawn uniformly, then a point of its space.
  std::optional<dsl::Schedule> random(std::mt19937_64& rng) const;
  // All legal points when there are at most `limit`, else empty.
  std::vector<dsl::Schedule> enumerate(size_t limit) const;
  // One knob of `s` moved to another legal value.
  std::optional<dsl::Schedule> mutate(const dsl::Schedule& s, std::mt19937_64& rng) const;
  // Each knob from `a` or `b` (same template), when the result is legal.
  std::optional<dsl::Schedule> crossover(const dsl::Schedule& a, const dsl::Schedule& b, std::mt19937_64& rng) const;
  bool legal(const dsl::Schedule& s) const;
  const dsl::QMatMulWorkload& workload() const { return workload_; }
  const std::vector<dsl::KnobSpace>& spaces() const { return spaces_; }
  // Each template's default point, where legal: a template's author's best guess, measured before any
  // sampled point so that no template is judged only by its random points.
  const std::vector<dsl::Schedule>& defaults() const { return defaults_; }

 private:
  const dsl::KnobSpace* space_of(const std::string& template_name) const;
  dsl::QMatMulWorkload workload_;
  std::optional<dsl::QConvWorkload> conv_;
  dsl::TargetSpec target_;
  std::vector<dsl::KnobSpace> spaces_;
  std::vector<dsl::Schedule> defaults_;
};

}  // namespace tetra::tuner
