#include "tuner/xgb_search.h"

#include <algorithm>
#include <cmath>
#include <map>

namespace tetra::tuner {
namespace {

// The model guides the search once this many working measurements (the task's own and the similar
// workloads') exist; each proposal ranks this many fresh candidates; and this share of proposals is a
// random schedule instead, so the model also learns about what it ranks low.
constexpr size_t kModelMinRows = 8;
constexpr size_t kCandidates = 256;
constexpr double kExplore = 0.1;

// Up to kCandidates fresh legal schedules: half random, half mutations and crossovers of the best
// measured ones.
std::vector<dsl::Schedule> candidates(const SearchSpace& space, const std::vector<Measured>& history,
                                      const std::set<std::string>& seen, std::mt19937_64& rng) {
  std::vector<Measured> parents = fastest(history, 8);
  std::vector<dsl::Schedule> out;
  std::set<std::string> taken;
  for (size_t attempt = 0; attempt < 4 * kCandidates && out.size() < kCandidates; ++attempt) {
    std::optional<dsl::Schedule> s;
    double r = std::uniform_real_distribution<double>(0, 1)(rng);
    if (parents.empty() || r < 0.5)
      s = space.random(rng);
    else if (parents.size() < 2 || r < 0.8)
      s = space.mutate(pick_parent(parents, rng), rng);
    else
      s = space.crossover(pick_parent(parents, rng), pick_parent(parents, rng), rng);
    if (!s) continue;
    std::string key = s->to_string();
    if (seen.count(key) || !taken.insert(key).second) continue;
    out.push_back(std::move(*s));
  }
  return out;
}

}  // namespace

// Trains the model on the prior measurements and the task's history. Times are divided by the best time
// of their workload, so shapes of different sizes teach the same thing: which schedules are fast
// relative to the others.
void XgbSearch::train(const SearchSpace& space, const std::vector<Measured>& history) {
  std::vector<FeatureRow> rows;
  std::vector<double> times;
  std::map<std::string, double> best;  // per workload key
  std::vector<std::string> group;
  auto add = [&](const dsl::QMatMulWorkload& w, const Measured& m) {
    std::string key = w.key();
    rows.push_back(features_->extract(m.schedule, w));
    times.push_back(m.median_ms);
    group.push_back(key);
    if (std::isfinite(m.median_ms) && m.median_ms > 0 && (!best.count(key) || m.median_ms < best[key]))
      best[key] = m.median_ms;
  };
  for (const PriorMeasurement& p : prior_) add(p.workload, p.measured);
  for (const Measured& m : history) add(space.workload(), m);
  for (size_t i = 0; i < times.size(); ++i)
    if (std::isfinite(times[i]) && best.count(group[i])) times[i] /= best[group[i]];
  if (!model_) model_ = std::make_unique<XgbCostModel>();
  model_->update(rows, times);
  trained_on_ = history.size();
}

std::optional<dsl::Schedule> XgbSearch::propose(const SearchSpace& space, const std::vector<Measured>& history,
                                                const std::set<std::string>& seen, std::mt19937_64& rng) {
  auto working = [](const Measured& m) { return std::isfinite(m.median_ms); };
  size_t rows = std::count_if(history.begin(), history.end(), working);
  for (const PriorMeasurement& p : prior_) rows += working(p.measured);
  if (rows < kModelMinRows) return evolution_.propose(space, history, seen, rng);
  if (std::uniform_real_distribution<double>(0, 1)(rng) < kExplore) return random_.propose(space, history, seen, rng);

  if (!features_) features_ = std::make_unique<FeatureExtractor>(space.workload(), space.spaces());
  if (!model_ || !model_->trained() || trained_on_ != history.size()) train(space, history);
  if (!model_->trained()) return evolution_.propose(space, history, seen, rng);

  std::vector<dsl::Schedule> pool = candidates(space, history, seen, rng);
  if (pool.empty()) return evolution_.propose(space, history, seen, rng);
  std::vector<float> scores = model_->predict(features_->extract_all(pool));
  size_t best = std::max_element(scores.begin(), scores.end()) - scores.begin();
  return pool[best];
}

}  // namespace tetra::tuner
