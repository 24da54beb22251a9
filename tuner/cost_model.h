// A learned cost model for the "xgb" search strategy: a FeatureExtractor turns a schedule of a QMatMul
// workload into a fixed-length vector of floats, and a CostModel learns from measured schedules which
// vectors are fast (like TVM MetaSchedule's FeatureExtractor and CostModel). XgbCostModel is gradient
// boosted trees through XGBoost's C API, retrained from scratch on every update (tasks have at most a
// few hundred measurements, so a retrain takes milliseconds).
//
//   FeatureExtractor fx(workload, space.spaces());
//   XgbCostModel model;
//   model.update(fx.extract_all(schedules), times);      // ms, or relative times; inf = failed
//   std::vector<float> scores = model.predict(fx.extract_all(candidates));  // higher = faster
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "dsl/qmatmul.h"
#include "dsl/schedule.h"

namespace tetra::tuner {

using FeatureRow = std::vector<float>;

// Features of a schedule for a workload, in a layout fixed at construction from the knob spaces of the
// task's templates:
//   the workload: log2 of M, K, N; the format's flags (signed, zero point, log2(k_group + 1), per-n, f16);
//   one-hot of the template; each integer knob as log2(value + 1) (0 when the template lacks it);
//   one-hot of each (string knob, value) pair the spaces declare;
//   derived: log2 of the tile's footprint in bytes, of the parallel tasks, of the accumulator vectors of a
//   register tile, of the reduction length per task, and the share of the machine's threads kept busy.
// A schedule of a similar workload (another shape, same format) maps into the same layout; a value the
// spaces never declared just sets no flag.
class FeatureExtractor {
 public:
  FeatureExtractor(const dsl::QMatMulWorkload& workload, const std::vector<dsl::KnobSpace>& spaces);

  size_t size() const { return names_.size(); }
  const std::vector<std::string>& names() const { return names_; }  // one per feature, for debugging

  FeatureRow extract(const dsl::Schedule& schedule) const { return extract(schedule, workload_); }
  // The schedule as a schedule of `workload` (the warm-start rows of a similar workload).
  FeatureRow extract(const dsl::Schedule& schedule, const dsl::QMatMulWorkload& workload) const;
  std::vector<FeatureRow> extract_all(const std::vector<dsl::Schedule>& schedules) const;

 private:
  dsl::QMatMulWorkload workload_;
  std::vector<std::string> templates_;                            // sorted
  std::vector<std::string> int_knobs_;                            // sorted
  std::vector<std::pair<std::string, std::string>> string_values_;  // (knob, value), sorted
  std::vector<std::string> names_;
};

// Learns times from features. `update` replaces what was learned with a model of these rows; `predict`
// scores rows, higher for a faster predicted time. Scores only rank: they are not times.
class CostModel {
 public:
  virtual ~CostModel() = default;
  // times[i] > 0 is row i's time (ms, or relative to its workload's best); a non-finite time is a failed
  // candidate, learned as slower than every working one.
  virtual void update(const std::vector<FeatureRow>& features, const std::vector<double>& times) = 0;
  virtual std::vector<float> predict(const std::vector<FeatureRow>& features) const = 0;
  virtual bool trained() const = 0;
};

struct XgbOptions {
  int rounds = 80;
  int max_depth = 4;
  double eta = 0.2;
  std::string objective = "reg:squarederror";  // on -log(time); "rank:pairwise" also works
  unsigned seed = 1;
};

// Gradient boosted trees (XGBoost 1.7, one thread). Throws tetra::Error (Invalid) with XGBoost's own
// message when a call of its C API fails.
class XgbCostModel : public CostModel {
 public:
  explicit XgbCostModel(XgbOptions options = {});
  ~XgbCostModel() override;
  XgbCostModel(XgbCostModel&&) noexcept;
  XgbCostModel& operator=(XgbCostModel&&) noexcept;

  void update(const std::vector<FeatureRow>& features, const std::vector<double>& times) override;
  std::vector<float> predict(const std::vector<FeatureRow>& features) const override;
  bool trained() const override;

 private:
  struct Booster;
  XgbOptions options_;
  std::unique_ptr<Booster> booster_;
  size_t columns_ = 0;
};

// Spearman's rank correlation of two equally long series (average ranks for ties); 0 when either is
// constant or shorter than 2.
double spearman(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace tetra::tuner
