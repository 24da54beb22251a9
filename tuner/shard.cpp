#include "tuner/shard.h"

#include <charconv>
#include <set>

#include "importer/error.h"

namespace tetra::tuner {
namespace {

// A whole decimal number without sign or spaces; false for anything else, or beyond int.
bool parse_decimal(std::string_view text, int* value) {
  if (text.empty()) return false;
  for (char c : text)
    if (c < '0' || c > '9') return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *value);
  return ec == std::errc() && end == text.data() + text.size();
}

}  // namespace

std::string ShardSpec::to_string() const { return std::to_string(index) + "/" + std::to_string(count); }

ShardSpec parse_shard(const std::string& text) {
  const std::string bad = "bad shard '" + text + "': ";
  size_t slash = text.find('/');
  ShardSpec shard;
  check(slash != std::string::npos && parse_decimal(std::string_view(text).substr(0, slash), &shard.index) &&
            parse_decimal(std::string_view(text).substr(slash + 1), &shard.count),
        ErrorKind::Invalid, bad + "expected i/N, two whole numbers such as 0/4");
  check(shard.count >= 1, ErrorKind::Invalid, bad + "the number of shards N must be at least 1");
  check(shard.index < shard.count, ErrorKind::Invalid,
        bad + "the shard index must be from 0 to " + std::to_string(shard.count - 1) + " (shards count from 0)");
  return shard;
}

uint64_t stable_hash(std::string_view text) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char byte : text) {
    hash ^= byte;
    hash *= 0x100000001b3ull;
  }
  return hash;
}

int task_shard(const std::string& workload_key, int count) {
  check(count >= 1, ErrorKind::Invalid, "the number of shards must be at least 1");
  return static_cast<int>(stable_hash(workload_key) % static_cast<uint64_t>(count));
}

ShardPlan::ShardPlan(ShardSpec shard, ShardSplit split) : shard_(shard), split_(split) {
  check(shard.count >= 1 && shard.index >= 0 && shard.index < shard.count, ErrorKind::Invalid,
        "bad shard " + shard.to_string() + ": the index must be from 0 to N-1");
}

bool ShardPlan::owns_task(const std::string& workload_key) const {
  return split_ == ShardSplit::Candidates || task_shard(workload_key, shard_.count) == shard_.index;
}

bool ShardPlan::owns_candidate(int64_t index) const {
  check(index >= 0, ErrorKind::Invalid, "a candidate index must not be negative");
  return split_ == ShardSplit::Tasks || index % shard_.count == shard_.index;
}

int ShardPlan::trial_share(int trials) const {
  if (split_ == ShardSplit::Tasks || trials <= 0) return trials;
  // The first trials mod N shards take one more, so the shares add up to `trials`.
  return trials / shard_.count + (shard_.index < trials % shard_.count ? 1 : 0);
}

unsigned ShardPlan::seed(unsigned base) const {
  if (split_ == ShardSplit::Tasks) return base;
  // Steps of the 32-bit golden ratio spread the shards' seeds apart; shard 0 keeps `base`.
  return base + static_cast<unsigned>(shard_.index) * 0x9e3779b9u;
}

ShardPlan plan_shard(const std::vector<std::string>& task_keys, const ShardSpec& shard) {
  size_t tasks = std::set<std::string>(task_keys.begin(), task_keys.end()).size();
  return ShardPlan(shard, tasks >= static_cast<size_t>(shard.count) ? ShardSplit::Tasks : ShardSplit::Candidates);
}

}  // namespace tetra::tuner
