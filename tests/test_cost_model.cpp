// The xgb search strategy: schedule features, the XGBoost cost model learning a known cost function,
// propose() with a model, and a short real tuning run (warm-started from another shape's records).
#include <cmath>
#include <set>

#include <catch2/catch.hpp>

#include "tests/test_support.h"
#include "tools/model_builder.h"
#include "tuner/cost_model.h"
#include "tuner/database.h"
#include "tuner/search_strategy.h"
#include "tuner/xgb_search.h"
#include "tuner/tune.h"

using namespace tetra;
using namespace tetra::test;

namespace {

dsl::QMatMulWorkload gemm_workload(int64_t M, int64_t K, int64_t N) {
  dsl::QMatMulWorkload w;
  w.M = M;
  w.K = K;
  w.N = N;
  w.format.k_group = 32;
  return w;
}

// `count` distinct legal schedules not in `seen` (added to it).
std::vector<dsl::Schedule> distinct_schedules(const tuner::SearchSpace& space, size_t count, std::set<std::string>& seen,
                                              std::mt19937_64& rng) {
  std::vector<dsl::Schedule> out;
  for (int attempt = 0; attempt < 100000 && out.size() < count; ++attempt) {
    std::optional<dsl::Schedule> s = space.random(rng);
    if (s && seen.insert(s->to_string()).second) out.push_back(*s);
  }
  return out;
}

// A known cost: fastest at tile_n = 32, slower with unroll_k = 1 and with a k-blocked weight.
double synthetic_ms(const dsl::Schedule& s) {
  double ms = 1 + std::fabs(std::log2(double(s.get_int("tile_n"))) - 5);
  if (s.knobs.count("unroll_k") && s.get_int("unroll_k") == 1) ms += 0.5;
  if (s.knobs.count("w_stage") && s.get_string("w_stage") == "kblock") ms += 0.3;
  return ms;
}

}  // namespace

TEST_CASE("schedule features are finite, fixed-length and tell schedules apart", "[tuner][xgb]") {
  dsl::QMatMulWorkload w = gemm_workload(8, 512, 256);
  tuner::SearchSpace space(w, dsl::host_target());
  tuner::FeatureExtractor fx(w, space.spaces());
  REQUIRE(fx.size() == fx.names().size());
  REQUIRE(fx.size() > 10);
  std::mt19937_64 rng(3);
  std::set<std::string> seen;
  std::vector<dsl::Schedule> schedules = distinct_schedules(space, 200, seen, rng);
  REQUIRE(schedules.size() == 200);
  std::set<tuner::FeatureRow> rows;
  for (const dsl::Schedule& s : schedules) {
    tuner::FeatureRow f = fx.extract(s);
    REQUIRE(f.size() == fx.size());
    for (float v : f) REQUIRE(std::isfinite(v));
    rows.insert(f);
  }
  CHECK(rows.size() == schedules.size());  // distinct schedules, distinct vectors
  // The same schedule on another shape maps into the same layout, with other workload features.
  tuner::FeatureRow other = fx.extract(schedules[0], gemm_workload(64, 512, 256));
  CHECK(other.size() == fx.size());
  CHECK(other != fx.extract(schedules[0]));
}

TEST_CASE("the XGBoost cost model ranks held-out schedules of a known cost", "[tuner][xgb]") {
  dsl::QMatMulWorkload w = gemm_workload(64, 1024, 1024);
  tuner::SearchSpace space(w, dsl::host_target());
  tuner::FeatureExtractor fx(w, space.spaces());
  std::mt19937_64 rng(11);
  std::normal_distribution<double> noise(0, 0.05);
  std::set<std::string> seen;
  std::vector<dsl::Schedule> train = distinct_schedules(space, 120, seen, rng);
  std::vector<dsl::Schedule> test = distinct_schedules(space, 60, seen, rng);
  REQUIRE(train.size() == 120);
  REQUIRE(test.size() == 60);
  std::vector<double> times;
  for (const dsl::Schedule& s : train) times.push_back(synthetic_ms(s) * std::exp(noise(rng)));
  times[0] = INFINITY;  // a failed candidate is a training row too

  tuner::XgbCostModel model;
  CHECK_FALSE(model.trained());
  model.update(fx.extract_all(train), times);
  REQUIRE(model.trained());
  std::vector<float> scores = model.predict(fx.extract_all(test));
  REQUIRE(scores.size() == test.size());
  std::vector<double> predicted(scores.begin(), scores.end()), truth;
  for (const dsl::Schedule& s : test) truth.push_back(-synthetic_ms(s));
  double rho = tuner::spearman(predicted, truth);
  INFO("Spearman " << rho);
  CHECK(rho > 0.7);

  SECTION("rank:pairwise learns the same order") {
    tuner::XgbOptions o;
    o.objective = "rank:pairwise";
    tuner::XgbCostModel ranker(o);
    ranker.update(fx.extract_all(train), times);
    std::vector<float> r = ranker.predict(fx.extract_all(test));
    CHECK(tuner::spearman(std::vector<double>(r.begin(), r.end()), truth) > 0.7);
  }
  SECTION("XGBoost's errors carry its message") {
    CHECK_THROWS_WITH(model.predict({tuner::FeatureRow(3, 0.0f)}), Catch::Contains("feature row of 3"));
  }
}

TEST_CASE("spearman handles ties and reversed order", "[tuner][xgb]") {
  CHECK(tuner::spearman({1, 2, 3, 4}, {10, 20, 30, 40}) == Approx(1));
  CHECK(tuner::spearman({1, 2, 3, 4}, {4, 3, 2, 1}) == Approx(-1));
  CHECK(tuner::spearman({1, 1, 1}, {1, 2, 3}) == 0);
  CHECK(tuner::spearman({1, 2, 2, 3}, {1, 2, 2, 3}) == Approx(1));
}

TEST_CASE("xgb propose returns legal unseen schedules, better than random ones", "[tuner][xgb]") {
  CHECK(tuner::parse_strategy("xgb") == tuner::Strategy::Xgb);
  CHECK(tuner::strategy_name(tuner::Strategy::Xgb) == "xgb");
  dsl::QMatMulWorkload w = gemm_workload(64, 1024, 1024);
  tuner::SearchSpace space(w, dsl::host_target());
  std::mt19937_64 rng(5);
  std::set<std::string> seen;
  std::vector<tuner::Measured> history;
  for (const dsl::Schedule& s : distinct_schedules(space, 16, seen, rng)) history.push_back({s, synthetic_ms(s)});
  history.push_back({history[0].schedule, INFINITY});  // failures are data, not a crash

  std::unique_ptr<tuner::SearchStrategy> strategy = tuner::make_search_strategy(tuner::Strategy::Xgb);
  auto& xgb = dynamic_cast<tuner::XgbSearch&>(*strategy);
  double xgb_cost = 0, random_cost = 0;
  const int proposals = 30;
  for (int i = 0; i < proposals; ++i) {
    std::optional<dsl::Schedule> s = xgb.propose(space, history, seen, rng);
    REQUIRE(s);
    CHECK(space.legal(*s));
    CHECK_FALSE(seen.count(s->to_string()));
    seen.insert(s->to_string());
    history.push_back({*s, synthetic_ms(*s)});
    xgb_cost += synthetic_ms(*s);
  }
  REQUIRE(xgb.model());  // kept between proposals, retrained as the history grows
  CHECK(xgb.model()->trained());
  CHECK(xgb.trained_on() > 17);
  std::set<std::string> none;
  for (const dsl::Schedule& s : distinct_schedules(space, proposals, none, rng)) random_cost += synthetic_ms(s);
  INFO("mean cost: xgb " << xgb_cost / proposals << ", random " << random_cost / proposals);
  CHECK(xgb_cost < 0.8 * random_cost);

  // Warm start: another shape's measurements let the model guide the search from the task's first one.
  std::vector<tuner::PriorMeasurement> prior;
  for (const tuner::Measured& m : history) prior.push_back({gemm_workload(32, 1024, 1024), m});
  tuner::XgbSearch warm(prior);
  std::vector<tuner::Measured> one = {history[1]};
  for (int i = 0; i < 5 && !warm.model(); ++i) {  // a proposal may be one of the random 10%
    std::optional<dsl::Schedule> s = warm.propose(space, one, seen, rng);
    REQUIRE(s);
    CHECK(space.legal(*s));
  }
  REQUIRE(warm.model());
  CHECK(warm.model()->trained());

  // With too few measurements for a model, xgb still proposes (as evolution does).
  std::optional<dsl::Schedule> early = tuner::XgbSearch().propose(space, {history.begin(), history.begin() + 3}, seen, rng);
  REQUIRE(early);
  CHECK(space.legal(*early));
  CHECK_FALSE(seen.count(early->to_string()));
}

TEST_CASE("tuning with the xgb strategy records every trial and warm-starts from another shape", "[tuner][xgb]") {
  std::string dir = temp_dir("xgb_tune");
  ModelBuilder b(21);
  b.input("a", DType::Float32, {-1, 64});
  b.output("y", DType::Float32);
  b.initializer("w", random_tensor(DType::Int4, {64, 64}, -8, 7));
  b.initializer("w_s", random_tensor(DType::Float32, {2, 64}, 0.01, 0.1));
  b.node("DequantizeLinear", {"w", "w_s"}, {"w_f"}, {{"axis", 0}, {"block_size", 32}});
  b.node("MatMul", {"a", "w_f"}, {"y"});
  std::string model = b.save(dir + "/m.onnx");

  tuner::TuneOptions o;
  o.model = model;
  o.db_dir = dir + "/db";
  o.strategy = tuner::Strategy::Xgb;
  o.repeats = 2;
  o.worker = tetra_cli();
  o.timeout_s = 60;
  o.log_path = dir + "/log.jsonl";
  // Ten trials: the default, seven of evolution, then two chosen by the model.
  o.shapes = {{"a", {2, 64}}};
  o.trials = 10;
  std::vector<tuner::TaskSummary> first = tuner::tune(o);
  REQUIRE(first.size() == 1);
  CHECK(first[0].trials == 10);
  CHECK(first[0].best_ms > 0);
  // Another row count: the first shape's ten records warm-start the model from its first proposal.
  o.shapes = {{"a", {4, 64}}};
  o.trials = 3;
  std::vector<tuner::TaskSummary> second = tuner::tune(o);
  REQUIRE(second.size() == 1);
  CHECK(second[0].trials == 3);
  CHECK(second[0].key != first[0].key);

  tuner::TuningDatabase db = tuner::TuningDatabase::open(o.db_dir, dsl::host_target().name, dsl::toolchain_id());
  std::set<std::string> distinct;
  for (const tuner::TuningRecord& r : db.records()) distinct.insert(r.workload.key + r.schedule.to_string());
  CHECK(db.records().size() == 13);
  CHECK(distinct.size() == 13);
}
