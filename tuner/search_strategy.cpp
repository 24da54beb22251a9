#include "tuner/search_strategy.h"

#include <algorithm>
#include <cmath>

#include "importer/error.h"
#include "tuner/xgb_search.h"

namespace tetra::tuner {

Strategy parse_strategy(const std::string& name) {
  if (name == "random") return Strategy::Random;
  if (name == "exhaustive") return Strategy::Exhaustive;
  if (name == "evolution") return Strategy::Evolution;
  if (name == "xgb") return Strategy::Xgb;
  fail(ErrorKind::Invalid, "unknown search strategy '" + name + "' (random, exhaustive, evolution, xgb)");
}

std::string strategy_name(Strategy s) {
  switch (s) {
    case Strategy::Random: return "random";
    case Strategy::Exhaustive: return "exhaustive";
    case Strategy::Evolution: return "evolution";
    case Strategy::Xgb: return "xgb";
  }
  return "?";
}

std::unique_ptr<SearchStrategy> make_search_strategy(Strategy strategy, std::vector<PriorMeasurement> prior) {
  switch (strategy) {
    case Strategy::Random: return std::make_unique<RandomSearch>();
    case Strategy::Exhaustive: return std::make_unique<ExhaustiveSearch>();
    case Strategy::Evolution: return std::make_unique<EvolutionSearch>();
    case Strategy::Xgb: return std::make_unique<XgbSearch>(std::move(prior));
  }
  fail(ErrorKind::Invalid, "unknown search strategy");
}

std::vector<Measured> fastest(const std::vector<Measured>& history, size_t count) {
  std::vector<Measured> out;
  for (const Measured& m : history)
    if (std::isfinite(m.median_ms)) out.push_back(m);
  std::sort(out.begin(), out.end(), [](const Measured& a, const Measured& b) { return a.median_ms < b.median_ms; });
  if (out.size() > count) out.resize(count);
  return out;
}

const dsl::Schedule& pick_parent(const std::vector<Measured>& parents, std::mt19937_64& rng) {
  double u = std::uniform_real_distribution<double>(0, 1)(rng);
  return parents[static_cast<size_t>(u * u * parents.size())].schedule;
}

namespace {

bool fresh(const std::optional<dsl::Schedule>& s, const std::set<std::string>& seen) {
  return s && !seen.count(s->to_string());
}

}  // namespace

std::optional<dsl::Schedule> RandomSearch::propose(const SearchSpace& space, const std::vector<Measured>&,
                                                   const std::set<std::string>& seen, std::mt19937_64& rng) {
  for (int attempt = 0; attempt < 100; ++attempt)
    if (std::optional<dsl::Schedule> s = space.random(rng); fresh(s, seen)) return s;
  return std::nullopt;
}

std::optional<dsl::Schedule> ExhaustiveSearch::propose(const SearchSpace& space, const std::vector<Measured>&,
                                                       const std::set<std::string>& seen, std::mt19937_64&) {
  if (!points_) points_ = space.enumerate(kExhaustiveLimit);  // empty for a larger space
  while (next_ < points_->size()) {
    const dsl::Schedule& s = (*points_)[next_++];
    if (!seen.count(s.to_string())) return s;
  }
  return std::nullopt;
}

std::optional<dsl::Schedule> EvolutionSearch::propose(const SearchSpace& space, const std::vector<Measured>& history,
                                                      const std::set<std::string>& seen, std::mt19937_64& rng) {
  // Once a few points are measured, breed from the best eight; keep a share of random proposals so the
  // search does not collapse onto one template.
  std::vector<Measured> parents = fastest(history, 8);
  for (int attempt = 0; attempt < 100; ++attempt) {
    std::optional<dsl::Schedule> s;
    double r = std::uniform_real_distribution<double>(0, 1)(rng);
    if (parents.size() >= 2 && r < 0.8)
      s = r < 0.6 ? space.mutate(pick_parent(parents, rng), rng)
                  : space.crossover(pick_parent(parents, rng), pick_parent(parents, rng), rng);
    else
      s = space.random(rng);
    if (fresh(s, seen)) return s;
  }
  return std::nullopt;
}

}  // namespace tetra::tuner
