#!/usr/bin/env bash
# `tetra tune --shards N --slurm` end to end on a local single-node cluster (scripts/slurm-local.sh):
# the shard job array tunes the example MLP's 3 tasks, the dependent merge job joins the shards'
# databases, and every shard's --status then has nothing left. First, without Slurm, a shard killed
# mid-run (kill -9) resumes: its rerun completes the budget, measuring no candidate twice.
#   tests/slurm/tune_on_slurm.sh TETRA_CLI TETRA_MAKE_EXAMPLES
# Exit 77 (a ctest skip) only where Slurm is not installed, this is not root, or Slurm cannot start here.
set -euo pipefail
tetra=$1
make_examples=$2
source "$(dirname "$0")/common.sh"
work_folder tune-slurm
"$make_examples" "$work/models" >/dev/null
model=$work/models/mlp.onnx
tune=("$tetra" tune "$model" --shape x=4,64 --strategy random --repeats 3)

# A shard killed while it measures resumes where it stopped.
"${tune[@]}" --db "$work/killed" --trials 6 --shard 0/1 >/dev/null 2>&1 &
pid=$!
for _ in $(seq 600); do
  [ "$(cat "$work/killed/journal.jsonl" 2>/dev/null | wc -l)" -ge 4 ] && break
  sleep 0.1
done
kill -9 $pid 2>/dev/null || true
wait $pid 2>/dev/null || true
before=$(cat "$work/killed/journal.jsonl" "$work/killed/records.json" 2>/dev/null | grep -c '"workload"' || true)
expect "the killed shard had measured part of its budget ($before of 18)" [ "$before" -ge 4 -a "$before" -lt 18 ]
"${tune[@]}" --db "$work/killed" --trials 6 --shard 0/1 >/dev/null 2>&1
listing=$("$tetra" db list "$work/killed" 2>&1)
expect "its rerun completed the budget: 18 records, no candidate twice" grep -q "^.*: 18 records" <<<"$listing"
left=$("${tune[@]}" --db "$work/killed" --trials 6 --shard 0/1 --status)
expect "--status: nothing left" grep -q "18 trials done, 0 left" <<<"$left"

start_local_slurm

submitted=$("${tune[@]}" --db "$work/db" --trials 4 --shards 3 --slurm)
echo "$submitted"
array=$(sed -n 's/^submitted 3 shards as job array \([0-9]*\) .*/\1/p' <<<"$submitted")
merge=$(sed -n 's/.* as job \([0-9]*\)$/\1/p' <<<"$submitted" | head -1)
expect "job ids printed" [ -n "$array" -a -n "$merge" ]
for _ in $(seq 600); do
  queue=$(squeue -h -j "$array,$merge" -o "%i %r" 2>/dev/null || true)
  [ -z "$queue" ] || grep -q DependencyNeverSatisfied <<<"$queue" && break
  sleep 0.5
done
job_state() { scontrol show job "$1" | grep -o 'JobState=[A-Z_]*' | sort -u; }
for i in 0 1 2; do expect "shard job ${array}_$i completed" [ "$(job_state "${array}_$i")" = JobState=COMPLETED ]; done
expect "merge job $merge completed" [ "$(job_state "$merge")" = JobState=COMPLETED ]
listing=$("$tetra" db list "$work/db" 2>&1 || true)
expect "the merged database holds the 3 tasks' 4 trials each" grep -q ": 12 records" <<<"$listing"
for i in 0 1 2; do
  shard_status=$("${tune[@]}" --db "$work/db/shards/$i" --trials 4 --shard "$i/3" --status)
  expect "shard $i: nothing left" grep -q " 0 left" <<<"$shard_status"
done
if [ $status != 0 ]; then
  squeue || true
  cat "$work"/db/slurm/*.log 2>/dev/null | tail -n 40
fi
exit $status
