#!/usr/bin/env bash
# Model libraries (`tetra compile`) against the JIT runtime (`tetra bench`), in the same run, same threads:
#   * latency: the median of REPEAT runs after a warm-up, each side timing its own runs; the two sides
#     alternate three times and the lowest median of each counts (a 2-core VM is noisy);
#   * start-up: a whole process from launch to its first result, the JIT's compiling with an empty
#     kernel cache (`tetra run`), the library's linked into the C example (examples/aot_c).
#   bench/aot.sh [THREADS] [REPEAT]
# Prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
repeat=${2:-50}
scripts/build.sh --target tetra tetra_make_examples tetra_make_bench_models >/dev/null
work=build/bench_aot
rm -rf "$work" && mkdir -p "$work"
build/bin/tetra_make_examples "$work/examples" >/dev/null
for m in mlp cnn; do
  build/bin/tetra quantize "$work/examples/$m.onnx" -o "$work/$m.onnx" --bits 4 --block-size 16 >/dev/null
done
bench=build/bench_models
[ -f "$bench/conv3x3_64x64_56.onnx" ] || build/bin/tetra_make_bench_models "$bench" >/dev/null

# Wall-clock milliseconds of a command (its output discarded).
wall_ms() { python3 -c 'import subprocess,sys,time; t=time.perf_counter(); subprocess.run(sys.argv[1:],check=True,stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL); print("%.1f" % ((time.perf_counter()-t)*1e3))' "$@"; }
field() { python3 -c "import json,sys; print('%.3f' % json.load(sys.stdin)['$1'])"; }

echo "| model | JIT ms | library ms | library / JIT | JIT start-up ms | library start-up ms | start-up ratio |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
# name  model  input  shape
while read -r name model input shape; do
  lib="$work/lib_$name"
  build/bin/tetra compile "$model" -o "$lib" --name "b_$name" --shape "$input=$shape" >/dev/null
  cmake -S bench/aot -B "$work/bench_$name" -DCMAKE_PREFIX_PATH="$PWD/$lib" -DTETRA_MODEL="b_$name" \
    -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$work/bench_$name" >/dev/null
  cmake -S examples/aot_c -B "$work/c_$name" -DCMAKE_PREFIX_PATH="$PWD/$lib" -DTETRA_MODEL="b_$name" \
    -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$work/c_$name" >/dev/null
  python3 -c "import struct,sys; n=1
for d in sys.argv[2].split(','): n*=int(d)
open(sys.argv[1],'wb').write(struct.pack('<%df'%n,*[((i*7919)%2000)/1000-1 for i in range(n)]))" "$work/$name.bin" "$shape"

  jit=1e9 aot=1e9
  for round in 1 2 3; do
    # (Output is parsed after each run ends: a parser starting beside it would take a core.)
    j=$(build/bin/tetra bench "$model" --random-inputs --shape "$input=$shape" --threads "$threads" \
        --repeat "$repeat" --json)
    a=$("$work/bench_$name/aot_bench" "$repeat" "$threads")
    j=$(field median_ms <<<"$j") a=$(field median_ms <<<"$a")
    jit=$(python3 -c "print(min($jit, $j))") aot=$(python3 -c "print(min($aot, $a))")
  done
  cold=$(mktemp -d)
  jit_start=$(HL_NUM_THREADS=$threads wall_ms build/bin/tetra run "$model" --random-inputs --shape "$input=$shape" \
              --kernel-cache "$cold" --threads "$threads")
  rm -rf "$cold"
  aot_start=$(HL_NUM_THREADS=$threads wall_ms "$work/c_$name/run_model" "$work/$name.bin")
  python3 -c "print('| $name | $jit | $aot | %.2f | $jit_start | $aot_start | %.0fx |' % ($aot / $jit, $jit_start / $aot_start))"
done <<MODELS
mlp $work/mlp.onnx x 1,64
cnn $work/cnn.onnx image 1,3,32,32
gemv_4096 $bench/gemv_1x4096x4096.onnx a 1,4096
conv3x3_56 $bench/conv3x3_64x64_56.onnx x 1,64,56,56
MODELS
