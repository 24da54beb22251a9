#!/usr/bin/env bash
# Installs what tetra needs on Debian 12, skipping what is already there. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# libpng-dev and libjpeg-dev: Halide's CMake package refuses to load without them.
packages=(build-essential cmake pkg-config git libpng-dev libjpeg-dev
          libhalide14-0-dev libonnx-dev libprotobuf-dev protobuf-compiler
          nlohmann-json3-dev catch2 libcli11-dev libxgboost-dev xgboost
          clang libclang-rt-14-dev  # clang and its sanitizer and libFuzzer runtimes: scripts/sanitized-build.sh
          slurm-wlm munge           # a local Slurm cluster for the distributed-tuning tests (scripts/slurm-local.sh)
          parallel                  # GNU parallel: the other way to run a sharded tune (tests/slurm/tune_with_parallel.sh)
          clang-19 lld-19 llvm-19   # GPU code: AMD code objects for every gfx arch, PTX (clang-15 rejects gfx942, gfx1201)
          pocl-opencl-icd ocl-icd-opencl-dev opencl-headers  # an OpenCL device on the CPU: the GPU path's tests
          oclgrind                  # an OpenCL simulator that finds GPU kernels' reads past a buffer and data races
          libamdhip64-5)            # ROCm's HIP runtime, which tetra-device loads with dlopen (it says "no HIP device" here)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js may come from elsewhere than Debian (with its own npm): ask for the commands, not packages.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# ONNX Runtime (node) is the independent oracle and speed peer; its CPU library is bundled.
if [ ! -f node_modules/onnxruntime-node/package.json ]; then
  echo "setup: installing onnxruntime-node 1.30.0"
  npm install --no-audit --no-fund --ignore-scripts --no-save onnxruntime-node@1.30.0 >/dev/null
fi
echo "setup: ok"
