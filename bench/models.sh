#!/usr/bin/env bash
# Whole models: the exporter-style detector, classifier and recognizer (examples/exported_models.h) at
# their real input sizes, fp32 and int4, timed by `tetra bench` and by ONNX Runtime 1.30 with its
# default optimisations (bench/ort_bench.js), one after the other for each model in the same run,
# with the same threads.
#   bench/models.sh [THREADS] [REPEAT] [ROUNDS]
# Prints a markdown table: whole-model medians, tetra's time as a ratio of ORT's (< 1 is faster)
# beside the goal of the whole-model work (int4 <= 0.8, fp32 <= 1.2), the sum of tetra's per-kernel
# medians as a fraction of its whole-model median (the goal: within 10% of 1), and how many nodes of
# tetra's graph (after int4 and epilogue fusion) ran on reference kernels. Each int4 model is timed
# twice by tetra: exact float activations, and with --int8-activations as ORT's int4 path runs.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
repeat=${2:-10}
rounds=${3:-3}
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

# The run with the lower median of two `--json` outputs (the first when the other is empty).
lower() { python3 -c '
import json, sys
runs = [json.loads(a) for a in sys.argv[1:] if a]
print(json.dumps(min(runs, key=lambda r: r["median_ms"])))' "$1" "$2"; }

echo "| model | tetra ms | ORT ms | tetra / ORT | goal | per-kernel sum / whole | nodes on reference kernels |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for model in detector classifier recognizer; do
  for form in fp32 int4; do
    onnx="$dir/${model}_$form.onnx" data="$dir/${model}_data"
    # The sides alternate `rounds` times and each keeps its lowest median: this VM has slow phases of
    # seconds, and one side timed whole inside one of them would decide the ratio (bench/aot.sh does
    # the same). Parsed after each run ends: a parser beside a benchmark would take one of the cores.
    t="" t8="" o=""
    for ((round = 0; round < rounds; ++round)); do
      t=$(lower "$t" "$(build/bin/tetra bench "$onnx" --test-data "$data" --threads "$threads" --repeat "$repeat" --json)")
      if [ "$form" = int4 ]; then
        # Like for like: ORT's optimised int4 MatMuls quantize their activations to int8, and so does
        # tetra's opt-in mode (convs stay float32).
        t8=$(lower "$t8" "$(build/bin/tetra bench "$onnx" --test-data "$data" --threads "$threads" \
                              --repeat "$repeat" --json --int8-activations 2>/dev/null)")
      fi
      o=$(lower "$o" "$(node bench/ort_bench.js "$onnx" "$data" --threads "$threads" --repeat "$repeat")")
    done
    o_ms=$(field median_ms <<<"$o")
    goal=$([ "$form" = int4 ] && echo "≤ 0.8" || echo "≤ 1.2")
    read -r t_ms sum_ratio reference nodes <<<"$(summary <<<"$t")"
    echo "| $model, $form | $t_ms | $o_ms | $(ratio "$t_ms" "$o_ms") | $goal | $sum_ratio | $reference of $nodes |"
    if [ "$form" = int4 ]; then
      read -r t_ms sum_ratio reference nodes <<<"$(summary <<<"$t8")"
      echo "| $model, int4, int8 activations | $t_ms | $o_ms | $(ratio "$t_ms" "$o_ms") | $goal | $sum_ratio | $reference of $nodes |"
    fi
  done
done
