#!/usr/bin/env bash
# tetra vs ONNX Runtime 1.30 on the int4 benchmark workloads, in the same run, same threads.
#   bench/run.sh [THREADS] [REPEAT]
# Prints two markdown tables, median latencies and tetra's time as a ratio of ORT's (< 1 is faster):
#   1. exact fp32 results: tetra's default schedules against ORT at accuracy_level 0;
#   2. int8 activations: `tetra bench --int8-activations` against ORT at accuracy_level 4 (the same
#      weights), with each one's largest error against the exact result (ORT's accuracy_level 0
#      output, in the data folder), as a fraction of the largest |y|.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
repeat=${2:-20}
scripts/build.sh --target tetra tetra_make_bench_models >/dev/null
dir=build/bench_models
[ -f "$dir/gemv_1x4096x4096_a4.onnx" ] || build/bin/tetra_make_bench_models "$dir"

field() { python3 -c 'import json,sys; print("%.3f" % json.load(sys.stdin)[sys.argv[1]])' "$1"; }
relative_error() { python3 -c 'import json,sys; r=json.load(sys.stdin); print("%.1e" % (r["max_abs_error"] / r["expected_max_abs"]))'; }
ratio() { python3 -c "print('%.2f' % ($1 / $2))"; }

echo "| workload | tetra ms | ORT ms | tetra / ORT |"
echo "| --- | ---: | ---: | ---: |"
for model in gemv_1x8192x16384 gemv_1x4096x4096 gemm_128x4096x4096 gemm_1024x1024x1024 conv3x3_64x64_56; do
  # Parsed after each run ends: a parser starting beside a benchmark would take one of the cores.
  t=$(build/bin/tetra bench "$dir/$model.onnx" --test-data "$dir/${model}_data" --threads "$threads" --repeat "$repeat" --json)
  o=$(node bench/ort_bench.js "$dir/$model.onnx" "$dir/${model}_data" --threads "$threads" --repeat "$repeat")
  t=$(field median_ms <<<"$t") o=$(field median_ms <<<"$o")
  echo "| $model | $t | $o | $(ratio "$t" "$o") |"
done

echo
echo "| workload (int8 activations) | tetra ms | ORT ms | tetra / ORT | tetra error | ORT error |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
for model in gemv_1x8192x16384 gemv_1x4096x4096 gemm_128x4096x4096 gemm_1024x1024x1024; do
  data="$dir/${model}_data"
  # The exact result that both errors are measured against.
  [ -f "$data/output_0.pb" ] || node scripts/ort_run.js "$dir/$model.onnx" "$data" "$data"
  t=$(build/bin/tetra bench "$dir/$model.onnx" --test-data "$data" --threads "$threads" --repeat "$repeat" --json \
        --int8-activations 2>/dev/null)
  o=$(node bench/ort_bench.js "$dir/${model}_a4.onnx" "$data" --threads "$threads" --repeat "$repeat")
  te=$(relative_error <<<"$t") oe=$(relative_error <<<"$o")
  t=$(field median_ms <<<"$t") o=$(field median_ms <<<"$o")
  echo "| $model | $t | $o | $(ratio "$t" "$o") | $te | $oe |"
done
