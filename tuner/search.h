// Search strategies over a task's schedule space: random, exhaustive (small spaces), evolutionary
// (mutation and crossover of the best measured schedules) and xgb (evolution's candidates ranked by a
// cost model learned from the measurements, tuner/cost_model.h). Each proposes schedules the templates
// accept (conflicts checked) that have not been measured yet.
#pragma once
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "dsl/qconv_format.h"
#include "dsl/qmatmul.h"
#include "dsl/schedule.h"
#include "dsl/target.h"
#include "tuner/cost_model.h"

namespace tetra::tuner {

enum class Strategy { Random, Exhaustive, Evolution, Xgb };
Strategy parse_strategy(const std::string& name);  // "random" | "exhaustive" | "evolution" | "xgb"
std::string strategy_name(Strategy strategy);

struct Measured {
  dsl::Schedule schedule;
  double median_ms;  // infinity for a failed candidate
};

// Every template of the task's target family that serves its workload, with its knob space.
class SearchSpace {
 public:
  SearchSpace(const dsl::QMatMulWorkload& workload, const dsl::TargetSpec& target);
  // A direct conv: its template's space; `gemm_view` stands for it in the cost model's features.
  SearchSpace(const dsl::QConvWorkload& conv, const dsl::QMatMulWorkload& gemm_view, const dsl::TargetSpec& target);
  double size() const;
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

 private:
  const dsl::KnobSpace* space_of(const std::string& template_name) const;
  dsl::QMatMulWorkload workload_;
  std::optional<dsl::QConvWorkload> conv_;
  dsl::TargetSpec target_;
  std::vector<dsl::KnobSpace> spaces_;
};

// A measurement of a similar workload (same op, format and epilogue, another shape): the xgb strategy's
// cost model learns from these before the task has measurements of its own.
struct PriorMeasurement {
  dsl::QMatMulWorkload workload;
  Measured measured;
};

// What a strategy keeps for one task between proposals: the xgb strategy's cost model, retrained when
// the history has grown. The tuning loop owns one per task and fills `prior`.
struct SearchState {
  std::vector<PriorMeasurement> prior;
  std::unique_ptr<FeatureExtractor> features;
  std::unique_ptr<CostModel> model;
  size_t trained_on = 0;  // history.size() when the model was last trained
};

// Proposes the next schedule to measure, or nullopt when the strategy has nothing new to offer.
// `state` carries the xgb strategy's model from one call to the next; without one, xgb trains a model
// for this call only.
std::optional<dsl::Schedule> propose(Strategy strategy, const SearchSpace& space, const std::vector<Measured>& history,
                                     const std::set<std::string>& seen, std::mt19937_64& rng,
                                     SearchState* state = nullptr);

}  // namespace tetra::tuner
