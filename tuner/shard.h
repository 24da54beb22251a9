// Splitting one tuning run over N independent shards (`tetra tune --shard i/N`, one Slurm array task
// each): which tasks, and which candidates of a task, shard i measures. Every shard computes the same
// plan from the same task list, so no shard talks to another; each writes its own database folder and
// `tetra db merge` (tuner/db_merge.h) joins them. The split guarantees that every (task, candidate)
// of the run is owned by exactly one shard:
//
//   - At least N tasks: whole tasks are split by a stable hash of the workload key (shard =
//     stable_hash(key) mod N). A task's shard depends on its key alone, never on the other tasks, the
//     process or the machine, so a requeued shard gets the same tasks back.
//   - Fewer tasks than shards: hashing would leave shards idle, so every shard takes every task and
//     the candidates are split instead. Exhaustive search: candidate index mod N (the index is the
//     candidate's position in the search space's fixed enumeration order). Sampled strategies
//     (random, evolution, xgb): each shard searches with its own seed and measures its share of the
//     trial budget; the shares add up to the budget exactly.
//
//   ShardPlan plan = plan_shard(task_keys, parse_shard("2/7"));
//   for (task : tasks) {
//     if (!plan.owns_task(task.key)) continue;
//     int trials = plan.trial_share(options.trials);       // records this shard writes for the task
//     unsigned seed = plan.seed(options.seed);              // sampled strategies
//     for (i, candidate : exhaustive enumeration) if (plan.owns_candidate(i)) measure(candidate);
//   }
//
// With one shard ("0/1") the plan owns everything, with the run's own trials and seed: the unsharded run.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tetra::tuner {

// Shard `index` of `count`: 0 <= index < count.
struct ShardSpec {
  int index = 0;
  int count = 1;
  std::string to_string() const;  // "2/7"
};

// "i/N" with 0 <= i < N and N >= 1, in decimal; throws tetra::Error (Invalid) quoting `text` otherwise.
ShardSpec parse_shard(const std::string& text);

// 64-bit FNV-1a of the bytes of `text` (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
// Unlike std::hash it is the same on every platform, library and run: shard assignment may rely on it.
uint64_t stable_hash(std::string_view text);

// The shard (0 .. count-1) that owns a task in the task split: stable_hash(key) mod count.
int task_shard(const std::string& workload_key, int count);

enum class ShardSplit {
  Tasks,       // each task wholly on one shard (task_shard)
  Candidates,  // every task on every shard; the candidates split between them
};

class ShardPlan {
 public:
  // Throws tetra::Error (Invalid) unless 0 <= shard.index < shard.count.
  ShardPlan(ShardSpec shard, ShardSplit split);

  const ShardSpec& shard() const { return shard_; }
  ShardSplit split() const { return split_; }
  // Does this shard tune the task at all?
  bool owns_task(const std::string& workload_key) const;
  // Exhaustive search: does this shard measure the candidate at `index` (from 0) in the enumeration order?
  bool owns_candidate(int64_t index) const;
  // Sampled strategies: how many of a task's `trials` this shard measures (all of them in the task split).
  int trial_share(int trials) const;
  // Sampled strategies: the seed this shard searches with; `base` itself for shard 0 and in the task
  // split, so one shard reproduces the unsharded run.
  unsigned seed(unsigned base) const;

 private:
  ShardSpec shard_;
  ShardSplit split_;
};

// The plan for `shard` of a run over `task_keys` (the workload keys of every task of the run, the same
// list on every shard; duplicates count once): the task split when there are at least shard.count
// distinct tasks, else the candidate split.
ShardPlan plan_shard(const std::vector<std::string>& task_keys, const ShardSpec& shard);

}  // namespace tetra::tuner
