# What the distributed-tuning test scripts share; each sources it after `set -euo pipefail`.
#   skip WHY                 ends the script as a ctest skip (exit 77)
#   expect WHAT COMMAND...   runs a check and reports it; a failed one sets status=1
#   work_folder NAME         a fresh $work folder, removed at exit (with the local cluster, when started)
#   start_local_slurm        a local cluster of this script's own under $work (scripts/slurm-local.sh), or a
#                            skip saying why there is none; exports SLURM_CONF for sbatch, squeue, ...
source_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
slurm_local=$source_dir/scripts/slurm-local.sh
status=0

skip() {
  echo "SKIP: $*"
  exit 77
}

expect() {
  local what=$1
  shift
  if "$@"; then echo "ok: $what"; else echo "FAILED: $what"; status=1; fi
}

work_folder() {
  work=$(mktemp -d "/tmp/tetra-$1.XXXXXX")
  export TETRA_SLURM_DIR=$work/slurm
  # A port of its own, so that two builds' tests do not meet on one port.
  export TETRA_SLURM_PORT=$((20000 + ($$ % 10000) * 2))
  trap 'finish_work_folder' EXIT
}

finish_work_folder() {
  [ -d "$TETRA_SLURM_DIR" ] && "$slurm_local" stop >/dev/null 2>&1
  rm -rf "$work"
}

start_local_slurm() {
  command -v slurmctld >/dev/null && command -v munged >/dev/null ||
    skip "Slurm is not installed (apt-get install slurm-wlm munge, or scripts/setup.sh)"
  [ "$(id -u)" = 0 ] || skip "the local Slurm cluster runs its daemons as root"
  local started
  if ! started=$("$slurm_local" start 2>"$work/start.log"); then
    cat "$work/start.log"
    tail -n 5 "$TETRA_SLURM_DIR"/log/*.log 2>/dev/null || true
    skip "the local Slurm cluster could not start on this machine"
  fi
  eval "$started"  # export SLURM_CONF=...
}
