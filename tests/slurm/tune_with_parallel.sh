#!/usr/bin/env bash
# The GNU parallel form of a sharded tune, as `tetra tune --shards N` prints it, run on this machine:
# its HOSTS file names only the local one (":"), the way a user's lists their ssh hosts. One shard is made
# to fail once (its database folder is a file at first); --retries reruns it, and the merge then holds
# every task's trials.
#   tests/slurm/tune_with_parallel.sh TETRA_CLI TETRA_MAKE_EXAMPLES
# Exit 77 (a ctest skip) only where GNU parallel is not installed.
set -euo pipefail
tetra=$1
make_examples=$2
source "$(dirname "$0")/common.sh"
command -v parallel >/dev/null || skip "GNU parallel is not installed (apt-get install parallel)"
work_folder tune-parallel
"$make_examples" "$work/models" >/dev/null
printed=$("$tetra" tune "$work/models/mlp.onnx" --db "$work/db" --shape x=4,64 --strategy random --repeats 3 \
  --trials 3 --shards 2)
echo "$printed"
line=$(grep '^parallel ' <<<"$printed")
echo ":" >"$work/hosts"
line=${line//--sshloginfile HOSTS/--sshloginfile $work/hosts}
# Shard 1 fails on its first attempt: its database folder's place holds a file, which the retry's
# wrapper removes (--retries runs the same command again; the wrapper stands for a flaky node).
mkdir -p "$work/db/shards"
touch "$work/db/shards/1"
cat >"$work/flaky" <<FLAKY
#!/bin/sh
echo "\$*" >>"$work/attempts"
"\$@" || { rm -f "$work/db/shards/1"; exit 1; }
FLAKY
chmod +x "$work/flaky"
line=${line/--sshloginfile $work\/hosts /--sshloginfile $work/hosts $work/flaky }
echo "running: $line"
bash -c "$line" || status=$?
expect "the parallel run and the merge succeeded" [ $status = 0 ]
expect "shard 1 ran twice, shard 0 once" [ "$(grep -c -- '--shard 1/2' "$work/attempts")" = 2 -a "$(grep -c -- '--shard 0/2' "$work/attempts")" = 1 ]
expect "the job log has both shards' final runs, exit 0" [ "$(awk -F'\t' 'NR > 1 && $7 == 0' "$work/db/shards.log" | wc -l)" = 2 ]
listing=$("$tetra" db list "$work/db" 2>&1 || true)
expect "the merged database holds the 3 tasks' 3 trials each" grep -q ": 9 records" <<<"$listing"
exit $status
