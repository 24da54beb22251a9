#!/usr/bin/env bash
# The main job: install what is missing, build, make an example int4 model, inspect it, run it,
# and check tetra's outputs against ONNX Runtime on the same int4 model.
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

echo; echo "== tetra run, checked against them"
build/bin/tetra run "$work/cnn_int4.onnx" --test-data "$work/cnn_data" --output-dir "$work/cnn_out"
echo; echo "quickstart: ok"
