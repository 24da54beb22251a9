// The xgb search strategy: evolution's candidates ranked by an XGBoost cost model of schedule and
// workload features (tuner/cost_model.h), trained online on the task's measurements and warm-started
// from those of similar workloads. Until there are enough measurements it proposes as evolution does.
#pragma once
#include <memory>
#include <vector>

#include "tuner/cost_model.h"
#include "tuner/search_strategy.h"

namespace tetra::tuner {

class XgbSearch : public SearchStrategy {
 public:
  explicit XgbSearch(std::vector<PriorMeasurement> prior = {}) : prior_(std::move(prior)) {}
  std::optional<dsl::Schedule> propose(const SearchSpace& space, const std::vector<Measured>& history,
                                       const std::set<std::string>& seen, std::mt19937_64& rng) override;

  // The model, once trained (kept between proposals, retrained as the history grows); null before.
  const CostModel* model() const { return model_.get(); }
  size_t trained_on() const { return trained_on_; }  // history.size() when the model was last trained

 private:
  void train(const SearchSpace& space, const std::vector<Measured>& history);

  std::vector<PriorMeasurement> prior_;
  std::unique_ptr<FeatureExtractor> features_;
  std::unique_ptr<CostModel> model_;
  size_t trained_on_ = 0;
  EvolutionSearch evolution_;  // before the model can guide, and for candidates it has never seen
  RandomSearch random_;        // exploration: what the model ranks low
};

}  // namespace tetra::tuner
