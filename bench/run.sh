#!/usr/bin/env bash
# tetra vs ONNX Runtime 1.30 on the int4 benchmark workloads, in the same run, same threads.
#   bench/run.sh [THREADS] [REPEAT]
# Prints a markdown table: median latency of each, and tetra's time as a ratio of ORT's (< 1 is faster).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
repeat=${2:-20}
scripts/build.sh --target tetra tetra_make_bench_models >/dev/null
dir=build/bench_models
[ -f "$dir/conv3x3_64x64_56.onnx" ] || build/bin/tetra_make_bench_models "$dir"

median() { python3 -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["median_ms"])'; }
echo "| workload | tetra ms | ORT ms | tetra / ORT |"
echo "| --- | ---: | ---: | ---: |"
for model in gemv_1x8192x16384 gemv_1x4096x4096 gemm_128x4096x4096 gemm_1024x1024x1024 conv3x3_64x64_56; do
  # Parsed after each run ends: a parser starting beside a benchmark would take one of the cores.
  t=$(build/bin/tetra bench "$dir/$model.onnx" --test-data "$dir/${model}_data" --threads "$threads" --repeat "$repeat" --json)
  o=$(node bench/ort_bench.js "$dir/$model.onnx" "$dir/${model}_data" --threads "$threads" --repeat "$repeat")
  t=$(median <<<"$t") o=$(median <<<"$o")
  echo "| $model | $t | $o | $(python3 -c "print('%.2f' % ($t / $o))") |"
done
