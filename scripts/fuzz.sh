#!/usr/bin/env bash
# Builds the libFuzzer harnesses (scripts/sanitized-build.sh, into build-asan/) and runs each for SECONDS
# (default 60) from the seed corpus in tests/fuzz/corpus/. A crash, an uncaught exception, a leak, an
# input slower than 10 s or a run past 2 GiB fails; the input that did it is kept in build-asan/fuzz/.
#   scripts/fuzz.sh [SECONDS] [-- extra libFuzzer flags, e.g. -runs=1000000]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
[ "${1:-}" = "--" ] && shift
scripts/sanitized-build.sh model_fuzzer tuning_db_fuzzer
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
for harness in model tuning_db; do
  corpus=build-asan/fuzz/corpus/$harness
  mkdir -p "$corpus" build-asan/fuzz/artifacts
  # New inputs go to the working corpus; the seeds in tests/ are read, never written.
  build-asan/bin/${harness}_fuzzer "$corpus" "tests/fuzz/corpus/$harness" -max_total_time="$seconds" \
      -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=build-asan/fuzz/artifacts/ "$@" \
      2>&1 | tail -n 25
  echo "fuzz: $harness ok"
done
