#!/usr/bin/env bash
# The main job: install what is missing, build, make an example int4 model, inspect it, run it and
# check tetra's outputs against ONNX Runtime on the same int4 model, then tune it and show the speed-up.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh

work=build/quickstart
rm -rf "$work" && mkdir -p "$work"
build/bin/tetra_make_examples "$work"

echo; echo "== quantize the fp32 CNN to int4 (blocked DequantizeLinear)"
build/bin/tetra quantize "$work/cnn.onnx" -o "$work/cnn_int4.onnx" --bits 4 --block-size 16

echo; echo "== inspect"
build/bin/tetra inspect "$work/cnn_int4.onnx"

echo; echo "== ONNX Runtime's outputs on the same int4 model become the expected outputs"
node scripts/ort_run.js "$work/cnn_int4.onnx" "$work/cnn_data" "$work/cnn_data"

echo; echo "== tetra run (Halide backend), checked against them"
build/bin/tetra run "$work/cnn_int4.onnx" --test-data "$work/cnn_data" --output-dir "$work/cnn_out"

echo; echo "== tune the int4 kernels for a small budget (records go to $work/cnn_tuning)"
build/bin/tetra tune "$work/cnn_int4.onnx" --db "$work/cnn_tuning" --trials 12 --time-budget 90 \
  --report "$work/tuning_report.svg"

echo; echo "== the tuned model: still matching ONNX Runtime, and the speed-up"
build/bin/tetra run "$work/cnn_int4.onnx" --test-data "$work/cnn_data" --db "$work/cnn_tuning"
default_ms=$(build/bin/tetra bench "$work/cnn_int4.onnx" --repeat 30 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["median_ms"])')
tuned_ms=$(build/bin/tetra bench "$work/cnn_int4.onnx" --db "$work/cnn_tuning" --repeat 30 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["median_ms"])')
python3 -c "print('whole model: default schedules %.3f ms, tuned %.3f ms (%.2fx)' % ($default_ms, $tuned_ms, $default_ms / $tuned_ms))"
echo; echo "quickstart: ok"
