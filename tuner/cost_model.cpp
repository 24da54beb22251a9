#include "tuner/cost_model.h"

#include <xgboost/c_api.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <thread>

#include "importer/error.h"

namespace tetra::tuner {

// ---- FeatureExtractor --------------------------------------------------------------------------------

FeatureExtractor::FeatureExtractor(const dsl::QMatMulWorkload& workload, const std::vector<dsl::KnobSpace>& spaces)
    : workload_(workload) {
  std::set<std::string> templates, int_knobs;
  std::set<std::pair<std::string, std::string>> string_values;
  for (const dsl::KnobSpace& space : spaces) {
    templates.insert(space.template_name);
    for (const dsl::KnobDecl& knob : space.knobs)
      for (const dsl::KnobValue& v : knob.values) {
        if (std::holds_alternative<int64_t>(v)) int_knobs.insert(knob.name);
        else string_values.insert({knob.name, std::get<std::string>(v)});
      }
  }
  templates_.assign(templates.begin(), templates.end());
  int_knobs_.assign(int_knobs.begin(), int_knobs.end());
  string_values_.assign(string_values.begin(), string_values.end());

  names_ = {"log2_M", "log2_K", "log2_N", "signed", "zero_point", "log2_k_group", "per_n", "f16_scale"};
  for (const std::string& t : templates_) names_.push_back("template=" + t);
  for (const std::string& k : int_knobs_) names_.push_back("log2_" + k);
  for (const auto& [k, v] : string_values_) names_.push_back(k + "=" + v);
  for (const char* d : {"log2_footprint_bytes", "log2_parallel_tasks", "log2_acc_vectors", "log2_k_per_task",
                        "thread_use", "load_balance"})
    names_.push_back(d);
}

FeatureRow FeatureExtractor::extract(const dsl::Schedule& s, const dsl::QMatMulWorkload& w) const {
  auto log2p = [](double x) { return static_cast<float>(std::log2(std::max(x, 0.0) + 1)); };
  auto int_knob = [&](const std::string& name, double fallback) {
    auto it = s.knobs.find(name);
    return it != s.knobs.end() && std::holds_alternative<int64_t>(it->second)
               ? static_cast<double>(std::get<int64_t>(it->second))
               : fallback;
  };
  auto string_knob = [&](const std::string& name, const std::string& fallback) {
    auto it = s.knobs.find(name);
    return it != s.knobs.end() && std::holds_alternative<std::string>(it->second) ? std::get<std::string>(it->second)
                                                                                   : fallback;
  };

  FeatureRow f;
  f.reserve(names_.size());
  const double M = std::max<int64_t>(w.M, 1), K = std::max<int64_t>(w.K, 1), N = std::max<int64_t>(w.N, 1);
  f.push_back(static_cast<float>(std::log2(M)));
  f.push_back(static_cast<float>(std::log2(K)));
  f.push_back(static_cast<float>(std::log2(N)));
  f.push_back(w.format.is_signed);
  f.push_back(w.format.has_zero_point);
  f.push_back(log2p(static_cast<double>(w.format.k_group)));
  f.push_back(w.format.per_n);
  f.push_back(w.format.f16_scale);
  for (const std::string& t : templates_) f.push_back(s.template_name == t);
  for (const std::string& k : int_knobs_) f.push_back(log2p(int_knob(k, 0)));
  for (const auto& [k, v] : string_values_) f.push_back(string_knob(k, "") == v);

  // Derived: what the knobs mean together for this shape. A knob the template lacks takes the value its
  // absence means (no tile_m: one tile covers every row; no tile_k: the whole reduction per task).
  const double tile_n = std::max(1.0, int_knob("tile_n", N)), tile_m = std::max(1.0, int_knob("tile_m", M));
  const double split_k = std::max(1.0, int_knob("split_k", 1)), lanes = std::max(1.0, int_knob("vector_width", 1));
  const double k_per_task = std::ceil(K / split_k), tile_k = std::max(1.0, int_knob("tile_k", k_per_task));
  const std::string parallel = string_knob("parallel", "none"), w_stage = string_knob("w_stage", "inline");
  double tasks = parallel == "n" ? std::ceil(N / tile_n) : parallel == "m" ? std::ceil(M / tile_m) : 1;
  tasks *= split_k;
  // Bytes a task's inner loops keep live: the A tile, the weight (dequantized fp32 when staged: a whole
  // panel or one k block; packed nibbles when inline) and the accumulators.
  double w_bytes = w_stage == "panel" ? K * tile_n * 4 : w_stage == "kblock" ? tile_k * tile_n * 4 : tile_k * tile_n / 2;
  double footprint = tile_m * tile_k * 4 + w_bytes + tile_m * tile_n * 4;
  double acc_vectors = tile_m * std::ceil(tile_n / lanes);
  const double threads = std::max(1u, std::thread::hardware_concurrency());
  f.push_back(log2p(footprint));
  f.push_back(log2p(tasks));
  f.push_back(log2p(acc_vectors));
  f.push_back(log2p(k_per_task));
  f.push_back(static_cast<float>(std::min(tasks, threads) / threads));
  f.push_back(static_cast<float>(tasks / (std::ceil(tasks / threads) * threads)));
  return f;
}

std::vector<FeatureRow> FeatureExtractor::extract_all(const std::vector<dsl::Schedule>& schedules) const {
  std::vector<FeatureRow> rows;
  rows.reserve(schedules.size());
  for (const dsl::Schedule& s : schedules) rows.push_back(extract(s));
  return rows;
}

// ---- XgbCostModel ------------------------------------------------------------------------------------

namespace {

void xgb_check(int rc, const char* call) {
  if (rc != 0) fail(ErrorKind::Invalid, std::string("XGBoost ") + call + " failed: " + XGBGetLastError());
}

// A dense DMatrix of rows of `columns` floats, freed with the object.
class DMatrix {
 public:
  DMatrix(const std::vector<FeatureRow>& rows, size_t columns) {
    std::vector<float> flat;
    flat.reserve(rows.size() * columns);
    for (const FeatureRow& r : rows) {
      check(r.size() == columns, ErrorKind::Invalid,
            "cost model: a feature row of " + std::to_string(r.size()) + " values, expected " + std::to_string(columns));
      flat.insert(flat.end(), r.begin(), r.end());
    }
    xgb_check(XGDMatrixCreateFromMat(flat.data(), rows.size(), columns, NAN, &handle_), "XGDMatrixCreateFromMat");
  }
  ~DMatrix() {
    if (handle_) XGDMatrixFree(handle_);
  }
  DMatrix(const DMatrix&) = delete;
  DMatrix& operator=(const DMatrix&) = delete;
  DMatrixHandle get() const { return handle_; }

 private:
  DMatrixHandle handle_ = nullptr;
};

}  // namespace

struct XgbCostModel::Booster {
  BoosterHandle handle = nullptr;
  explicit Booster(const DMatrix& train) {
    DMatrixHandle m = train.get();
    xgb_check(XGBoosterCreate(&m, 1, &handle), "XGBoosterCreate");
  }
  ~Booster() {
    if (handle) XGBoosterFree(handle);
  }
  Booster(const Booster&) = delete;
  Booster& operator=(const Booster&) = delete;
  void set(const std::string& name, const std::string& value) {
    xgb_check(XGBoosterSetParam(handle, name.c_str(), value.c_str()), "XGBoosterSetParam");
  }
};

XgbCostModel::XgbCostModel(XgbOptions options) : options_(std::move(options)) {}
XgbCostModel::~XgbCostModel() = default;
XgbCostModel::XgbCostModel(XgbCostModel&&) noexcept = default;
XgbCostModel& XgbCostModel::operator=(XgbCostModel&&) noexcept = default;

bool XgbCostModel::trained() const { return booster_ != nullptr; }

void XgbCostModel::update(const std::vector<FeatureRow>& features, const std::vector<double>& times) {
  check(features.size() == times.size(), ErrorKind::Invalid, "cost model: as many times as feature rows expected");
  booster_.reset();
  // Learn -log(time), centred; a failed candidate counts as one unit (e) slower than the slowest working one.
  std::vector<float> labels(times.size());
  double worst = INFINITY, sum = 0;
  int finite = 0;
  for (double t : times)
    if (std::isfinite(t) && t > 0) {
      worst = std::min(worst, -std::log(t));
      sum += -std::log(t);
      ++finite;
    }
  if (finite == 0) return;
  const double mean = sum / finite;
  for (size_t i = 0; i < times.size(); ++i)
    labels[i] = static_cast<float>((std::isfinite(times[i]) && times[i] > 0 ? -std::log(times[i]) : worst - 1) - mean);

  columns_ = features.empty() ? 0 : features.front().size();
  DMatrix train(features, columns_);
  xgb_check(XGDMatrixSetFloatInfo(train.get(), "label", labels.data(), labels.size()), "XGDMatrixSetFloatInfo");
  auto booster = std::make_unique<Booster>(train);
  const bool rank = options_.objective.rfind("rank:", 0) == 0;
  booster->set("objective", options_.objective);
  booster->set("max_depth", std::to_string(options_.max_depth));
  booster->set("eta", std::to_string(options_.eta));
  booster->set("min_child_weight", rank ? "0" : "1");
  booster->set("tree_method", "exact");
  booster->set("nthread", "1");  // the machine's cores are the candidates' to use
  booster->set("seed", std::to_string(options_.seed));
  booster->set("verbosity", "0");
  for (int i = 0; i < options_.rounds; ++i)
    xgb_check(XGBoosterUpdateOneIter(booster->handle, i, train.get()), "XGBoosterUpdateOneIter");
  booster_ = std::move(booster);
}

std::vector<float> XgbCostModel::predict(const std::vector<FeatureRow>& features) const {
  if (!booster_ || features.empty()) return std::vector<float>(features.size(), 0.0f);
  DMatrix rows(features, columns_);
  bst_ulong n = 0;
  const float* out = nullptr;
  xgb_check(XGBoosterPredict(booster_->handle, rows.get(), 0, 0, 0, &n, &out), "XGBoosterPredict");
  check(n == features.size(), ErrorKind::Invalid, "cost model: XGBoost returned " + std::to_string(n) +
                                                      " predictions for " + std::to_string(features.size()) + " rows");
  return std::vector<float>(out, out + n);
}

// ---- Spearman ----------------------------------------------------------------------------------------

namespace {

std::vector<double> ranks(const std::vector<double>& x) {
  std::vector<size_t> order(x.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return x[a] < x[b]; });
  std::vector<double> r(x.size());
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j + 1 < order.size() && x[order[j + 1]] == x[order[i]]) ++j;
    for (size_t k = i; k <= j; ++k) r[order[k]] = (i + j) / 2.0;  // ties share their average rank
    i = j + 1;
  }
  return r;
}

}  // namespace

double spearman(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size() || a.size() < 2) return 0;
  std::vector<double> ra = ranks(a), rb = ranks(b);
  double ma = std::accumulate(ra.begin(), ra.end(), 0.0) / ra.size();
  double mb = std::accumulate(rb.begin(), rb.end(), 0.0) / rb.size();
  double cov = 0, va = 0, vb = 0;
  for (size_t i = 0; i < ra.size(); ++i) {
    cov += (ra[i] - ma) * (rb[i] - mb);
    va += (ra[i] - ma) * (ra[i] - ma);
    vb += (rb[i] - mb) * (rb[i] - mb);
  }
  return va > 0 && vb > 0 ? cov / std::sqrt(va * vb) : 0;
}

}  // namespace tetra::tuner
