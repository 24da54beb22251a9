// Search strategies: what a task measures next. One object per task, which may keep what it learns
// between proposals. Each proposes legal schedules of the task's space that have not been measured
// yet:
//   random      uniform points of the space;
//   exhaustive  every point in order (spaces of up to 100,000 points);
//   evolution   mutation and crossover of the best eight measurements, a share of random points;
//   xgb         evolution's candidates ranked by a cost model learned online (tuner/xgb_search.h).
#pragma once
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "dsl/qmatmul.h"
#include "dsl/schedule.h"
#include "tuner/search_space.h"

namespace tetra::tuner {

enum class Strategy { Random, Exhaustive, Evolution, Xgb };
Strategy parse_strategy(const std::string& name);  // "random" | "exhaustive" | "evolution" | "xgb"
std::string strategy_name(Strategy strategy);

class SearchStrategy {
 public:
  virtual ~SearchStrategy() = default;
  // The next schedule of `space` to measure, one not in `seen`; nullopt when the strategy has nothing
  // new to offer. `history`: the task's measurements so far, failures included.
  virtual std::optional<dsl::Schedule> propose(const SearchSpace& space, const std::vector<Measured>& history,
                                               const std::set<std::string>& seen, std::mt19937_64& rng) = 0;
};

// A measurement of a similar workload (same op, format and epilogue, another shape): the xgb strategy's
// cost model learns from these before the task has measurements of its own.
struct PriorMeasurement {
  dsl::QMatMulWorkload workload;
  Measured measured;
};

// A strategy for one task. `prior` warm-starts the xgb strategy; the others have no use for it.
std::unique_ptr<SearchStrategy> make_search_strategy(Strategy strategy, std::vector<PriorMeasurement> prior = {});

class RandomSearch : public SearchStrategy {
 public:
  std::optional<dsl::Schedule> propose(const SearchSpace& space, const std::vector<Measured>& history,
                                       const std::set<std::string>& seen, std::mt19937_64& rng) override;
};

// Exhaustive search enumerates spaces of up to this many points (in SearchSpace::enumerate's order,
// which a shard's candidate split also counts by); a larger space has nothing to offer it.
constexpr size_t kExhaustiveLimit = 100000;

class ExhaustiveSearch : public SearchStrategy {
 public:
  std::optional<dsl::Schedule> propose(const SearchSpace& space, const std::vector<Measured>& history,
                                       const std::set<std::string>& seen, std::mt19937_64& rng) override;

 private:
  std::optional<std::vector<dsl::Schedule>> points_;  // the task's space, enumerated at the first proposal
  size_t next_ = 0;                                   // points before it have been proposed or seen
};

class EvolutionSearch : public SearchStrategy {
 public:
  std::optional<dsl::Schedule> propose(const SearchSpace& space, const std::vector<Measured>& history,
                                       const std::set<std::string>& seen, std::mt19937_64& rng) override;
};

// The `count` fastest working measurements, fastest first: the parents evolution breeds from.
std::vector<Measured> fastest(const std::vector<Measured>& history, size_t count);
// A parent for mutation or crossover, weighted toward the fastest: index = floor(u^2 * count).
const dsl::Schedule& pick_parent(const std::vector<Measured>& parents, std::mt19937_64& rng);

}  // namespace tetra::tuner
