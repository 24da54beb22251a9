// The split of a tuning run into shards (tuner/shard.h): "i/N" parsing, the stable hash, and that every
// task and candidate of a run is owned by exactly one shard, with more tasks than shards and fewer.
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "importer/error.h"
#include "tuner/shard.h"

using namespace tetra;
using tuner::ShardPlan;
using tuner::ShardSpec;
using tuner::ShardSplit;

namespace {

std::vector<std::string> task_keys(int count) {
  std::vector<std::string> keys;
  for (int i = 0; i < count; ++i)
    keys.push_back("qmatmul m" + std::to_string(i + 1) + " k4096 n4096 int4 blocked(k,32) f32");
  return keys;
}

std::vector<ShardPlan> plans(const std::vector<std::string>& keys, int count) {
  std::vector<ShardPlan> out;
  for (int i = 0; i < count; ++i) out.push_back(tuner::plan_shard(keys, ShardSpec{i, count}));
  return out;
}

std::string parse_error(const std::string& text) {
  try {
    tuner::parse_shard(text);
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::Invalid);
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("shard: i/N parses, and bad text is an error quoting it", "[shard]") {
  ShardSpec s = tuner::parse_shard("2/7");
  CHECK(s.index == 2);
  CHECK(s.count == 7);
  CHECK(s.to_string() == "2/7");
  CHECK(tuner::parse_shard("0/1").count == 1);
  struct Bad {
    std::string text, message;
  };
  for (const Bad& bad : std::vector<Bad>{
           {"", "expected i/N"},
           {"3", "expected i/N"},
           {"1/", "expected i/N"},
           {"/4", "expected i/N"},
           {"a/4", "expected i/N"},
           {"-1/4", "expected i/N"},
           {"1/+4", "expected i/N"},
           {" 1/4", "expected i/N"},
           {"1/4/2", "expected i/N"},
           {"1/99999999999", "expected i/N"},
           {"0/0", "N must be at least 1"},
           {"4/4", "from 0 to 3"},
           {"7/2", "from 0 to 1"},
       }) {
    INFO(bad.text);
    std::string message = parse_error(bad.text);
    CHECK_THAT(message, Catch::Contains("bad shard '" + bad.text + "'"));
    CHECK_THAT(message, Catch::Contains(bad.message));
  }
  CHECK_THROWS_AS(ShardPlan(ShardSpec{3, 3}, ShardSplit::Tasks), Error);
}

TEST_CASE("shard: the workload hash is 64-bit FNV-1a, the same everywhere", "[shard]") {
  // The published FNV-1a 64 test vectors, and a workload key: shard assignment must never change.
  CHECK(tuner::stable_hash("") == 0xcbf29ce484222325ull);
  CHECK(tuner::stable_hash("a") == 0xaf63dc4c8601ec8cull);
  CHECK(tuner::stable_hash("foobar") == 0x85944171f73967e8ull);
  const std::string key = "qmatmul m1 k4096 n4096 int4 blocked(k,32) f32 bias";
  CHECK(tuner::stable_hash(key) == 0x7f187633014ebd23ull);
  CHECK(tuner::task_shard(key, 7) == 2);
  CHECK(tuner::task_shard(key, 1) == 0);
}

TEST_CASE("shard: every task and exhaustive candidate is owned by exactly one shard", "[shard]") {
  const int candidates = 50;
  for (int count : {1, 2, 3, 7}) {
    for (int tasks : {1, count - 1, count, count + 1, 3 * count + 2, 40}) {
      if (tasks < 1) continue;
      std::vector<std::string> keys = task_keys(tasks);
      std::vector<ShardPlan> shards = plans(keys, count);
      INFO(count << " shards, " << tasks << " tasks");
      CHECK(shards[0].split() == (tasks >= count ? ShardSplit::Tasks : ShardSplit::Candidates));
      for (const std::string& key : keys) {
        for (int c = 0; c < candidates; ++c) {
          int owners = 0;
          for (const ShardPlan& plan : shards) owners += plan.owns_task(key) && plan.owns_candidate(c);
          INFO(key << ", candidate " << c);
          REQUIRE(owners == 1);
        }
      }
    }
  }
}

TEST_CASE("shard: the task split follows the hash alone and is the same on every shard", "[shard]") {
  std::vector<std::string> keys = task_keys(12);
  std::vector<std::string> more = task_keys(30);  // a longer task list: the first 12 keep their shards
  for (int count : {2, 3, 7}) {
    for (int i = 0; i < count; ++i) {
      ShardPlan plan = tuner::plan_shard(keys, ShardSpec{i, count});
      ShardPlan other = tuner::plan_shard(more, ShardSpec{i, count});
      for (const std::string& key : keys) {
        CHECK(plan.owns_task(key) == (tuner::task_shard(key, count) == i));
        CHECK(other.owns_task(key) == plan.owns_task(key));
      }
      CHECK(plan.trial_share(64) == 64);  // a task's whole budget is on its shard
      CHECK(plan.seed(5) == 5);
    }
  }
  // Repeated keys are one task: two distinct tasks do not fill three shards.
  CHECK(tuner::plan_shard({"a", "b", "a"}, ShardSpec{0, 3}).split() == ShardSplit::Candidates);
}

TEST_CASE("shard: sampled strategies split the trial budget exactly and search with distinct seeds", "[shard]") {
  for (int count : {1, 2, 3, 7}) {
    std::vector<ShardPlan> shards = plans(task_keys(count - 1), count);  // fewer tasks than shards
    CHECK(shards[0].split() == ShardSplit::Candidates);
    for (int trials : {0, 1, 2, 6, 7, 13, 64, 100}) {
      int total = 0, smallest = trials, largest = 0;
      for (const ShardPlan& plan : shards) {
        int share = plan.trial_share(trials);
        total += share;
        smallest = std::min(smallest, share);
        largest = std::max(largest, share);
      }
      INFO(count << " shards, " << trials << " trials");
      CHECK(total == trials);
      CHECK(largest - smallest <= 1);
    }
    std::map<unsigned, int> seeds;
    for (const ShardPlan& plan : shards) seeds[plan.seed(1)]++;
    CHECK(seeds.size() == size_t(count));
    CHECK(shards[0].seed(1) == 1);  // shard 0 searches as the unsharded run would
  }
}
