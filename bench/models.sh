#!/usr/bin/env bash
# Whole models: the exporter-style detector, classifier and recognizer (examples/exported_models.h) at
# their real input sizes, fp32 and int4, timed by `tetra bench` and by ONNX Runtime 1.30 with its
# default optimisations (bench/ort_bench.js), one after the other for each model in the same run,
# with the same threads.
#   bench/models.sh [THREADS] [REPEAT]
# Prints a markdown table: whole-model medians, tetra's time as a ratio of ORT's (< 1 is faster)
# beside the goal of the whole-model work (int4 <= 0.8, fp32 <= 1.2), the sum of tetra's per-kernel
# medians as a fraction of its whole-model median (the goal: within 10% of 1), and how many nodes of
# tetra's graph (after int4 and epilogue fusion) ran on reference kernels. Each int4 model is timed
# twice by tetra: exact float activations, and with --int8-activations as ORT's int4 path runs.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
repeat=${2:-10}
scripts/build.sh --target tetra tetra_make_examples >/dev/null
dir=build/exported_models
# Written on every run (a few seconds), so the table always measures the current generator.
build/bin/tetra_make_examples --exported "$dir" >/dev/null

# Fields of `tetra bench --json`: whole median, per-kernel sum / whole, nodes on reference kernels.
summary() {
  python3 -c '
import json, sys
r = json.load(sys.stdin)
kernels = r["kernels"]
print("%.2f %.2f %d %d" % (r["median_ms"], sum(k["median_ms"] for k in kernels) / r["median_ms"],
                           sum(k["backend"] == "reference" for k in kernels), len(kernels)))'
}
field() { python3 -c 'import json,sys; print("%.2f" % json.load(sys.stdin)[sys.argv[1]])' "$1"; }
ratio() { python3 -c "print('%.2f' % ($1 / $2))"; }

echo "| model | tetra ms | ORT ms | tetra / ORT | goal | per-kernel sum / whole | nodes on reference kernels |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for model in detector classifier recognizer; do
  for form in fp32 int4; do
    onnx="$dir/${model}_$form.onnx" data="$dir/${model}_data"
    # Parsed after each run ends: a parser starting beside a benchmark would take one of the cores.
    t=$(build/bin/tetra bench "$onnx" --test-data "$data" --threads "$threads" --repeat "$repeat" --json)
    o=$(node bench/ort_bench.js "$onnx" "$data" --threads "$threads" --repeat "$repeat")
    read -r t_ms sum_ratio reference nodes <<<"$(summary <<<"$t")"
    o_ms=$(field median_ms <<<"$o")
    goal=$([ "$form" = int4 ] && echo "≤ 0.8" || echo "≤ 1.2")
    echo "| $model, $form | $t_ms | $o_ms | $(ratio "$t_ms" "$o_ms") | $goal | $sum_ratio | $reference of $nodes |"
    if [ "$form" = int4 ]; then
      # Like for like: ORT's optimised int4 MatMuls quantize their activations to int8, and so does
      # tetra's opt-in mode (convs stay float32). Against the ORT time just measured.
      t=$(build/bin/tetra bench "$onnx" --test-data "$data" --threads "$threads" --repeat "$repeat" --json \
            --int8-activations 2>/dev/null)
      read -r t_ms sum_ratio reference nodes <<<"$(summary <<<"$t")"
      echo "| $model, int4, int8 activations | $t_ms | $o_ms | $(ratio "$t_ms" "$o_ms") | $goal | $sum_ratio | $reference of $nodes |"
    fi
  done
done
