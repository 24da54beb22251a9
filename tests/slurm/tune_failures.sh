#!/usr/bin/env bash
# `tetra tune --shards 4 --slurm` on a local single-node cluster (scripts/slurm-local.sh) while its
# shards fail: `scontrol requeue` of a running array task, `kill -9` of a shard's tetra process (the
# array script runs it again) and `kill -9` of slurmd until Slurm declares the node down (its running
# tasks are requeued), then slurmd again (ReturnToService=2). Every task and the merge must complete,
# and the merged database is checked against the shards' trial logs. Prints the figures:
#   lost records (in a trial log, not in the merged database)   must be 0
#   planned candidates never measured                           must be 0
#   duplicate records in the merged database                    must be 0
#   candidates measured twice (in the trial logs)               at most the shards' interruptions
#   corrupt files (records, journals, trial logs)               must be 0
#   requeues and reruns                                         equal to the injected failures
#   tests/slurm/tune_failures.sh TETRA_CLI TETRA_MAKE_EXAMPLES
# Exit 77 (a ctest skip) only where Slurm is not installed, this is not root, or Slurm cannot start here.
set -euo pipefail
tetra=$1
make_examples=$2
source "$(dirname "$0")/common.sh"
command -v python3 >/dev/null || skip "python3 checks the databases against the trial logs"
work_folder tune-failures
start_local_slurm

# The example MLP has 3 tasks, fewer than 4 shards: every shard takes every task and the exhaustive
# search's candidates are split by index, so no two shards measure one candidate. 80 trials a task
# are 60 a shard, 40 to 70 s each on 2 CPUs: long enough to fail them while they run (slurmd's
# failure takes about 30 s to bring the node down). No early stop: every planned trial is measured.
"$make_examples" "$work/models" >/dev/null
shards=4
tune=("$tetra" tune "$work/models/mlp.onnx" --shape x=4,64 --strategy exhaustive --trials 80 --early-stop 1000 --repeats 3)
db=$work/db
submitted=$("${tune[@]}" --db "$db" --shards $shards --slurm)
echo "$submitted"
array=$(sed -n "s/^submitted $shards shards as job array \([0-9]*\) .*/\1/p" <<<"$submitted")
merge=$(sed -n 's/.* as job \([0-9]*\)$/\1/p' <<<"$submitted" | head -1)
[ -n "$array" ] && [ -n "$merge" ] || { echo "FAILED: no job ids printed"; exit 1; }

trials() { cat "$db/shards/$1/trials.jsonl" 2>/dev/null | wc -l; }
wait_for_trials() {  # wait_for_trials SHARD COUNT: until the shard has logged COUNT trials (2 min at most)
  for _ in $(seq 1200); do
    [ "$(trials "$1")" -ge "$2" ] && return 0
    sleep 0.1
  done
  echo "FAILED: shard $1 did not reach $2 trials"
  exit 1
}
running_tasks() { squeue -h -j "$array" -t running -o %i | sort; }
node_state() { sinfo -h -n tetra-node -o %T 2>/dev/null || true; }

# 1. Slurm requeues a running task: it is stopped, waits (cred_expire) and runs again.
wait_for_trials 0 1
scontrol requeue "${array}_0"
echo "injected: scontrol requeue ${array}_0 (trials logged by shard 0: $(trials 0))"

# 2. The shard's tetra process (not its measuring worker) dies; the array script runs it again.
wait_for_trials 1 2
shard_1=$(pgrep -f -- " tune .* --shard 1/$shards ")
kill -9 $shard_1
echo "injected: kill -9 of shard 1's tetra tune, pid $shard_1 (trials logged by shard 1: $(trials 1))"

# 3. slurmd dies, and stays dead until the node is declared down (SlurmdTimeout): Slurm requeues the
# tasks running on it. Then slurmd starts again and the node returns to service. The tasks that Slurm
# requeues are those still running when the node goes down (the last look before it is down).
on_failed_node=$(running_tasks)
killed_at=$SECONDS
kill -9 "$(cat "$TETRA_SLURM_DIR/run/slurmd.pid")"
echo "injected: kill -9 of slurmd while tasks $(echo $on_failed_node) run"
for _ in $(seq 300); do
  running=$(running_tasks)
  case $(node_state) in down*) break ;; esac
  on_failed_node=$running
  sleep 0.2
done
echo "the node is $(node_state) $((SECONDS - killed_at)) s later; tasks on it: $(echo $on_failed_node)" \
  "(trials logged by shard 0-3: $(for i in $(seq 0 $((shards - 1))); do printf '%s ' "$(trials $i)"; done))"
"$slurm_local" slurmd
for _ in $(seq 120); do
  case $(node_state) in idle | mixed | allocated) break ;; esac
  sleep 0.5
done
echo "slurmd started again: the node is $(node_state)"

# Until every job has left the queue, or a failed shard left the merge waiting for good.
for _ in $(seq 600); do
  queue=$(squeue -h -j "$array,$merge" -o "%i %r" 2>/dev/null || true)
  [ -z "$queue" ] || grep -q DependencyNeverSatisfied <<<"$queue" && break
  sleep 0.5
done

job_field() { scontrol show job "$1" | grep -o "$2=[^ ]*" | cut -d= -f2 | sort -u; }
requeues=0
for i in $(seq 0 $((shards - 1))); do
  expect "shard task ${array}_$i completed" [ "$(job_field "${array}_$i" JobState)" = COMPLETED ]
  restarts=$(job_field "${array}_$i" Restarts)
  requeues=$((requeues + ${restarts:-0}))
done
expect "merge job $merge completed" [ "$(job_field "$merge" JobState)" = COMPLETED ]
# The array script says so when it runs a killed shard again.
reruns=$(cat "$db"/slurm/shard-*.log | grep -c "was killed" || true)

# Each shard's own account of its plan, and every database listed by tetra itself.
for i in $(seq 0 $((shards - 1))); do
  "${tune[@]}" --db "$db/shards/$i" --shard "$i/$shards" --status >"$work/status_$i.txt" || true
done
unreadable=0
for dir in "$db" "$db"/shards/*; do
  "$tetra" db list "$dir" --all-targets --json >"$work/list.json" 2>"$work/list.err" ||
    { echo "tetra db list $dir: $(cat "$work/list.err")"; unreadable=$((unreadable + 1)); }
done
"$tetra" db list "$db" --all-targets --json >"$work/merged.json" || true

# The figures, from the trial logs, the databases and the --status tables (none when one is missing:
# every check below then fails).
figures=$(python3 - "$db" "$work" "$shards" "$unreadable" <<'EOF'
import glob, json, sys
from collections import Counter
db, work, shards, unreadable = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

def candidate(task, schedule):
    return (task, json.dumps(schedule, sort_keys=True))

# Databases tetra cannot list, and files that do not parse: every database file and trial log line.
corrupt = unreadable
for path in glob.glob(db + "/records.json") + glob.glob(db + "/shards/*/records.json"):
    try:
        json.load(open(path))
    except ValueError:
        corrupt += 1
for path in glob.glob(db + "/journal.jsonl") + glob.glob(db + "/shards/*/journal.jsonl") + glob.glob(db + "/shards/*/trials.jsonl"):
    try:
        [json.loads(line) for line in open(path)]
    except ValueError:
        corrupt += 1

logged = Counter()
for path in glob.glob(db + "/shards/*/trials.jsonl"):
    for line in open(path):
        trial = json.loads(line)
        logged[candidate(trial["task"], trial["schedule"])] += 1

records = json.load(open(work + "/merged.json"))
merged = Counter(candidate(r["workload"]["key"], r["schedule"]) for r in records)
identity = Counter((r["workload"]["key"], r["target"], r["toolchain"], json.dumps(r["schedule"], sort_keys=True),
                    json.dumps(r["measured_on"], sort_keys=True)) for r in records)

# Planned trials per task, summed over the shards' --status tables ("task  done planned left best").
planned = Counter()
for i in range(shards):
    for line in open(f"{work}/status_{i}.txt").read().splitlines()[1:-1]:
        fields = line.split()
        planned[" ".join(fields[:-4])] += int(fields[-3])
per_task = Counter(key for key, _ in merged)
never_measured = sum(max(0, n - per_task[task]) for task, n in planned.items())

print(f"trials logged: {sum(logged.values())}, records merged: {len(records)}, planned: {sum(planned.values())}")
print(f"lost records: {sum(1 for c in logged if c not in merged)}")
print(f"planned candidates never measured: {never_measured}")
print(f"duplicate records: {sum(n - 1 for n in identity.values())}")
print(f"candidates measured twice: {sum(n - 1 for n in logged.values())}")
print(f"corrupt files: {corrupt}")
EOF
) || true
echo "$figures"
figure() { sed -n "s/^$1: //p" <<<"$figures"; }

# What was injected: one requeue, one kill, one slurmd failure that requeued the tasks running on it.
expected_requeues=$((1 + $(echo $on_failed_node | wc -w)))
interruptions=$((requeues + reruns))
echo "requeues: $requeues (Restarts= of the array's tasks), expected $expected_requeues (scontrol requeue, and the tasks on the failed node: $(echo $on_failed_node))"
echo "reruns of a killed shard by the array script: $reruns, expected 1"
expect "no lost records" [ "$(figure "lost records")" = 0 ]
expect "no planned candidate left unmeasured" [ "$(figure "planned candidates never measured")" = 0 ]
expect "no duplicate records" [ "$(figure "duplicate records")" = 0 ]
expect "candidates measured twice: at most the $interruptions interruptions" [ "$(figure "candidates measured twice")" -le $interruptions ]
expect "no corrupt files" [ "$(figure "corrupt files")" = 0 ]
expect "the slurmd failure hit a running task" [ -n "$on_failed_node" ]
expect "requeues equal the injected ones" [ "$requeues" = "$expected_requeues" ]
expect "the killed shard was run again" [ "$reruns" = 1 ]
for i in $(seq 0 $((shards - 1))); do
  expect "shard $i: nothing left" grep -q " 0 left" "$work/status_$i.txt"
done
if [ $status != 0 ]; then
  squeue || true
  scontrol show job "$array" || true
  tail -n 20 "$db"/slurm/*.log "$TETRA_SLURM_DIR"/log/slurmctld.log 2>/dev/null || true
fi
exit $status
