#include "tuner/search.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "importer/error.h"
#include "schedules/cpu_conv.h"
#include "schedules/qmatmul_templates.h"

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

SearchSpace::SearchSpace(const dsl::QMatMulWorkload& workload, const dsl::TargetSpec& target)
    : workload_(workload), target_(target) {
  for (const schedules::QMatMulTemplate& t : schedules::qmatmul_templates())
    if (t.family == target.family && t.int8_activations == workload.int8_activations)
      spaces_.push_back(t.space(workload, target));
}

SearchSpace::SearchSpace(const dsl::QConvWorkload& conv, const dsl::QMatMulWorkload& gemm_view,
                         const dsl::TargetSpec& target)
    : workload_(gemm_view), conv_(conv), target_(target) {
  auto t = schedules::qconv_template_for(conv, target);
  if (t.ok()) spaces_.push_back(t.value()->space(conv, target));
}

double SearchSpace::size() const {
  double total = 0;
  for (const dsl::KnobSpace& s : spaces_) total += s.size();
  return total;
}

bool SearchSpace::legal(const dsl::Schedule& s) const {
  if (conv_) return schedules::check_qconv_schedule(*conv_, s, target_).ok();
  return schedules::check_qmatmul_schedule(workload_, s, target_).ok();
}

const dsl::KnobSpace* SearchSpace::space_of(const std::string& name) const {
  for (const dsl::KnobSpace& s : spaces_)
    if (s.template_name == name) return &s;
  return nullptr;
}

std::optional<dsl::Schedule> SearchSpace::random(std::mt19937_64& rng) const {
  if (spaces_.empty()) return std::nullopt;
  for (int attempt = 0; attempt < 200; ++attempt) {
    // Pick a template in proportion to its space's size, then a point in it.
    std::uniform_real_distribution<double> pick(0, size());
    double r = pick(rng);
    const dsl::KnobSpace* space = &spaces_.back();
    for (const dsl::KnobSpace& s : spaces_) {
      if (r < s.size()) {
        space = &s;
        break;
      }
      r -= s.size();
    }
    dsl::Schedule s = space->sample(rng);
    if (legal(s)) return s;
  }
  return std::nullopt;
}

std::vector<dsl::Schedule> SearchSpace::enumerate(size_t limit) const {
  if (size() > static_cast<double>(limit)) return {};
  std::vector<dsl::Schedule> out;
  for (const dsl::KnobSpace& space : spaces_) {
    std::vector<size_t> index(space.knobs.size(), 0);
    while (true) {
      dsl::Schedule s{space.template_name, {}};
      for (size_t k = 0; k < space.knobs.size(); ++k) s.knobs[space.knobs[k].name] = space.knobs[k].values[index[k]];
      if (legal(s)) out.push_back(s);
      size_t k = 0;
      while (k < index.size() && ++index[k] == space.knobs[k].values.size()) index[k++] = 0;
      if (k == index.size()) break;
    }
  }
  return out;
}

std::optional<dsl::Schedule> SearchSpace::mutate(const dsl::Schedule& s, std::mt19937_64& rng) const {
  const dsl::KnobSpace* space = space_of(s.template_name);
  if (!space || space->knobs.empty()) return std::nullopt;
  for (int attempt = 0; attempt < 50; ++attempt) {
    const dsl::KnobDecl& knob = space->knobs[std::uniform_int_distribution<size_t>(0, space->knobs.size() - 1)(rng)];
    if (knob.values.size() < 2) continue;
    dsl::Schedule m = s;
    m.knobs[knob.name] = knob.values[std::uniform_int_distribution<size_t>(0, knob.values.size() - 1)(rng)];
    if (!(m == s) && legal(m)) return m;
  }
  return std::nullopt;
}

std::optional<dsl::Schedule> SearchSpace::crossover(const dsl::Schedule& a, const dsl::Schedule& b,
                                                    std::mt19937_64& rng) const {
  if (a.template_name != b.template_name) return std::nullopt;
  for (int attempt = 0; attempt < 20; ++attempt) {
    dsl::Schedule c = a;
    for (auto& [name, value] : c.knobs)
      if (rng() & 1) {
        auto other = b.knobs.find(name);
        if (other != b.knobs.end()) value = other->second;
      }
    if (legal(c)) return c;
  }
  return std::nullopt;
}

namespace {

// The xgb strategy: the model guides the search once this many working measurements (the task's own
// and the similar workloads') exist; each proposal ranks this many fresh candidates; and this share of
// proposals is a random schedule instead, so the model also learns about what it ranks low.
constexpr size_t kModelMinRows = 8;
constexpr size_t kCandidates = 256;
constexpr double kExplore = 0.1;

// The `count` fastest working measurements, fastest first.
std::vector<Measured> fastest(const std::vector<Measured>& history, size_t count) {
  std::vector<Measured> out;
  for (const Measured& m : history)
    if (std::isfinite(m.median_ms)) out.push_back(m);
  std::sort(out.begin(), out.end(), [](const Measured& a, const Measured& b) { return a.median_ms < b.median_ms; });
  if (out.size() > count) out.resize(count);
  return out;
}

// A parent for mutation or crossover, weighted toward the fastest: index = floor(u^2 * count).
const dsl::Schedule& pick_parent(const std::vector<Measured>& parents, std::mt19937_64& rng) {
  double u = std::uniform_real_distribution<double>(0, 1)(rng);
  return parents[static_cast<size_t>(u * u * parents.size())].schedule;
}

std::optional<dsl::Schedule> propose_evolution(bool evolve, const SearchSpace& space,
                                               const std::vector<Measured>& history,
                                               const std::set<std::string>& seen, std::mt19937_64& rng) {
  auto fresh = [&](const std::optional<dsl::Schedule>& s) { return s && !seen.count(s->to_string()); };
  // Evolution: once a few points are measured, breed from the best eight; keep a share of random
  // proposals so the search does not collapse onto one template.
  std::vector<Measured> parents = fastest(history, 8);
  for (int attempt = 0; attempt < 100; ++attempt) {
    std::optional<dsl::Schedule> s;
    double r = std::uniform_real_distribution<double>(0, 1)(rng);
    if (evolve && parents.size() >= 2 && r < 0.8)
      s = r < 0.6 ? space.mutate(pick_parent(parents, rng), rng)
                  : space.crossover(pick_parent(parents, rng), pick_parent(parents, rng), rng);
    else
      s = space.random(rng);
    if (fresh(s)) return s;
  }
  return std::nullopt;
}

// Trains `state.model` on the prior measurements and the task's history. Times are divided by the best
// time of their workload, so shapes of different sizes teach the same thing: which schedules are fast
// relative to the others.
void train_model(SearchState& state, const SearchSpace& space, const std::vector<Measured>& history) {
  std::vector<FeatureRow> rows;
  std::vector<double> times;
  std::map<std::string, double> best;  // per workload key
  std::vector<std::string> group;
  auto add = [&](const dsl::QMatMulWorkload& w, const Measured& m) {
    std::string key = w.key();
    rows.push_back(state.features->extract(m.schedule, w));
    times.push_back(m.median_ms);
    group.push_back(key);
    if (std::isfinite(m.median_ms) && m.median_ms > 0 && (!best.count(key) || m.median_ms < best[key]))
      best[key] = m.median_ms;
  };
  for (const PriorMeasurement& p : state.prior) add(p.workload, p.measured);
  for (const Measured& m : history) add(space.workload(), m);
  for (size_t i = 0; i < times.size(); ++i)
    if (std::isfinite(times[i]) && best.count(group[i])) times[i] /= best[group[i]];
  if (!state.model) state.model = std::make_unique<XgbCostModel>();
  state.model->update(rows, times);
  state.trained_on = history.size();
}

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

std::optional<dsl::Schedule> propose_xgb(const SearchSpace& space, const std::vector<Measured>& history,
                                         const std::set<std::string>& seen, std::mt19937_64& rng,
                                         SearchState& state) {
  auto working = [](const Measured& m) { return std::isfinite(m.median_ms); };
  size_t rows = std::count_if(history.begin(), history.end(), working);
  for (const PriorMeasurement& p : state.prior) rows += working(p.measured);
  if (rows < kModelMinRows) return propose_evolution(true, space, history, seen, rng);
  if (std::uniform_real_distribution<double>(0, 1)(rng) < kExplore)
    return propose_evolution(false, space, history, seen, rng);

  if (!state.features) state.features = std::make_unique<FeatureExtractor>(space.workload(), space.spaces());
  if (!state.model || !state.model->trained() || state.trained_on != history.size())
    train_model(state, space, history);
  if (!state.model->trained()) return propose_evolution(true, space, history, seen, rng);

  std::vector<dsl::Schedule> pool = candidates(space, history, seen, rng);
  if (pool.empty()) return propose_evolution(true, space, history, seen, rng);
  std::vector<float> scores = state.model->predict(state.features->extract_all(pool));
  size_t best = std::max_element(scores.begin(), scores.end()) - scores.begin();
  return pool[best];
}

}  // namespace

std::optional<dsl::Schedule> propose(Strategy strategy, const SearchSpace& space, const std::vector<Measured>& history,
                                     const std::set<std::string>& seen, std::mt19937_64& rng, SearchState* state) {
  switch (strategy) {
    case Strategy::Exhaustive:
      for (const dsl::Schedule& s : space.enumerate(100000))
        if (!seen.count(s.to_string())) return s;
      return std::nullopt;
    case Strategy::Xgb: {
      SearchState local;  // without a caller's state: a model for this call only
      return propose_xgb(space, history, seen, rng, state ? *state : local);
    }
    case Strategy::Random:
    case Strategy::Evolution:
      break;
  }
  return propose_evolution(strategy == Strategy::Evolution, space, history, seen, rng);
}

}  // namespace tetra::tuner
