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

echo; echo "== compile the tuned model into a library (no compiler needed at run time) and run it from C"
build/bin/tetra compile "$work/cnn_int4.onnx" --db "$work/cnn_tuning" -o "$work/cnn_lib" --name example_cnn
cmake -S examples/aot_c -B "$work/aot_c" -DCMAKE_PREFIX_PATH="$PWD/$work/cnn_lib" -DTETRA_MODEL=example_cnn \
  -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/aot_c" >/dev/null
"$work/aot_c/run_model" "$work/cnn_data/input_0.bin" | tee "$work/aot_c/outputs.txt"
# The library's outputs against ONNX Runtime's (the expected outputs written above by ort_run.js,
# whose TensorProto ends with raw_data).
python3 - "$work/aot_c/outputs.txt" "$work/cnn_data/output_0.pb" <<'PY'
import struct, sys
got = [float(line.split()[2]) for line in open(sys.argv[1])]
data = open(sys.argv[2], "rb").read()
expected = list(struct.unpack("<%df" % len(got), data[-4 * len(got):]))  # raw_data is the proto's last field
worst = max(abs(g - e) for g, e in zip(got, expected))
print("library vs ONNX Runtime: max abs error %.2g" % worst)
sys.exit(0 if worst <= 1e-4 else 1)
PY
echo; echo "quickstart: ok"
