#!/usr/bin/env bash
# The GPU check: tetra's GPU kernels on a real GPU (NVIDIA: the CUDA dialect built to PTX with clang-19,
# run through the CUDA driver), each checked against the reference, the int4 decode GEMV timed
# against the card's own copy bandwidth over a grid of knob points, the prefill GEMM timed at each
# of its stagings of the weight, and whole int4 models (detector, classifier, recognizer at their real
# sizes) checked against the reference evaluator and timed.
#
#   scripts/gpu-check.sh              build, write the bundle and run it, on a machine with both tetra's
#                                     build dependencies (scripts/setup.sh) and an NVIDIA GPU
#   scripts/gpu-check.sh bundle DIR   install what is missing (scripts/setup.sh), build, and write the
#                                     bundle to DIR; needs no GPU. DIR holds the jobs
#                                     (PTX, launch plans, inputs, reference outputs) and bin/tetra-device
#   scripts/gpu-check.sh run DIR      run a bundle on this machine's GPU; needs only the NVIDIA driver
#
# run prints the device, its copy bandwidth and a table of every job (check, and for the GEMV grid ms,
# GB/s and the share of the copy bandwidth), writes DIR/results.json, and exits non-zero when a job
# failed. The bundle's contents: tests/halide/test_gpu_bundle.cpp (TETRA_GPU_SM, TETRA_GPU_GEMV, ...).
set -euo pipefail
cd "$(dirname "$0")/.."

make_bundle() {
  local dir=$1
  scripts/setup.sh >/dev/null
  scripts/build.sh --target tetra_halide_tests tetra-device >/dev/null
  TETRA_GPU_BUNDLE="$dir" build/bin/tetra_halide_tests "[.gpu-bundle]" >/dev/null
  mkdir -p "$dir/bin"
  cp build/bin/tetra-device "$dir/bin/"
  echo "gpu-check: wrote $(ls "$dir" | wc -l) entries to $dir ($(du -sh "$dir" | cut -f1))"
}

run_bundle() {
  local dir=$1
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader || true
  fi
  "$dir/bin/tetra-device" check "$dir"
}

case "${1:-}" in
  bundle) make_bundle "${2:?usage: scripts/gpu-check.sh bundle DIR}" ;;
  run) run_bundle "${2:?usage: scripts/gpu-check.sh run DIR}" ;;
  "")
    dir=build/gpu-check
    make_bundle "$dir"
    run_bundle "$dir"
    ;;
  *) echo "usage: scripts/gpu-check.sh [bundle DIR | run DIR]" >&2; exit 2 ;;
esac
