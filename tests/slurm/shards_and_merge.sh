#!/usr/bin/env bash
# Distributed tuning's Slurm plumbing on a local single-node cluster (scripts/slurm-local.sh): a job
# array of 3 shard jobs, each writing its own tuning database with `tetra db merge`, then a job that
# depends on the whole array (afterok) and merges the shards into one database. Checks that every job
# completed, that the merge ran after the shards, and the merged records.
#   tests/slurm/shards_and_merge.sh TETRA_CLI
# Exit 77 (a ctest skip) only where Slurm is not installed, this is not root, or Slurm cannot start here.
set -euo pipefail
tetra=$1
source "$(dirname "$0")/common.sh"
work_folder slurm-test
start_local_slurm

# One record: workload M, tile_n knob, median ms, device; a median of 0 with an error is a failed candidate.
record() {
  local m=$1 tile=$2 ms=$3 device=$4 error=${5:-}
  printf '{"workload":{"key":"qmatmul m%s k512 n512 int4 blocked(k,32) f32","op":"qmatmul","dims":{"M":%s,"K":512,"N":512},"format":"int4 blocked(k,32) f32","epilogue":""},"target":"x86-64-avx2","toolchain":"halide-14.0.0","schema_version":1,"schedule":{"template":"cpu_int4_gemm","knobs":{"tile_n":%s}},"cost":{"median_ms":%s,"min_ms":%s,"max_ms":%s,"runs":10},"measured":true,"measured_on":{"device":"%s","threads":2},"timestamp":"2025-01-31T12:00:00Z"%s}' \
    "$m" "$m" "$tile" "$ms" "$ms" "$ms" "$device" "${error:+,\"error\":\"$error\"}"
}
measurements() {  # the records shard $1 measures: its own workload, plus one schedule all of them time
  local i=$1
  echo '{"format":"tetra-tuning-db","schema_version":1,"records":['
  record $((i + 1)) 16 "1.$i" "Test CPU"
  echo ","
  record $((i + 1)) 64 0 "Test CPU" "Run: timed out"
  echo ","
  record 8 32 "2.$i" "Test CPU"
  echo ']}'
}
for i in 0 1 2; do
  mkdir -p "$work/measured_$i"
  measurements "$i" >"$work/measured_$i/records.json"
done

cd "$work"
array=$(sbatch --parsable --array=0-2 --output="$work/shard_%a.out" \
  --wrap "\"$tetra\" db merge \"$work/shard_\$SLURM_ARRAY_TASK_ID\" \"$work/measured_\$SLURM_ARRAY_TASK_ID\"")
merge=$(sbatch --parsable --dependency="afterok:$array" --output="$work/merge.out" \
  --wrap "\"$tetra\" db merge \"$work/merged\" \"$work/shard_0\" \"$work/shard_1\" \"$work/shard_2\"")
echo "submitted the shard array $array and the merge job $merge"

# Until every job has left the queue, or a failed shard left the merge waiting for good.
for _ in $(seq 120); do
  queue=$(squeue -h -j "$array,$merge" -o "%i %r" 2>/dev/null || true)
  [ -z "$queue" ] || grep -q DependencyNeverSatisfied <<<"$queue" && break
  sleep 0.5
done
job_state() { scontrol show job "$1" | grep -o 'JobState=[A-Z_]*' | sort -u; }
for i in 0 1 2; do expect "shard job ${array}_$i completed" [ "$(job_state "${array}_$i")" = JobState=COMPLETED ]; done
expect "merge job $merge completed" [ "$(job_state "$merge")" = JobState=COMPLETED ]
# Slurm's times are ISO 8601 to the second: they compare as text.
merge_start=$(scontrol show job "$merge" | grep -o 'StartTime=[^ ]*' | cut -d= -f2)
for i in 0 1 2; do
  shard_end=$(scontrol show job "${array}_$i" | grep -o 'EndTime=[^ ]*' | cut -d= -f2)
  expect "the merge started ($merge_start) after shard $i ended ($shard_end)" \
    bash -c '[[ ! "$1" > "$2" ]]' _ "$shard_end" "$merge_start"
done
echo "merge job output: $(cat "$work/merge.out" 2>/dev/null)"
expect "the merge read the 9 records of the 3 shards" grep -q "merged 9 records from 3 database(s)" "$work/merge.out"

# 3 workloads of one shard each (a working and a failed schedule) and one schedule of m8 timed by all
# three: 3 * 2 + 1 records; the best m8 time is shard 0's.
listing=$("$tetra" db list "$work/merged" --all-targets 2>&1 || true)
echo "$listing"
expect "7 merged records" grep -q "7 records (all targets)" <<<"$listing"
expect "every shard's workload" [ "$(grep -c -E '^  qmatmul m[123] ' <<<"$listing")" = 6 ]
shown=$("$tetra" db show "$work/merged" "qmatmul m8 k512 n512 int4 blocked(k,32) f32" --target x86-64-avx2 2>&1 || true)
expect "the best of the repeated measurement kept" grep -q "2.0000 ms" <<<"$shown"
if [ $status != 0 ]; then
  squeue
  scontrol show job
  cat "$work"/*.out
  tail -n 20 "$TETRA_SLURM_DIR"/log/*.log
fi
exit $status
