#!/usr/bin/env bash
# Configures build-asan/ (clang, ASan + UBSan, and libFuzzer's coverage hooks) and builds the targets
# named. scripts/sanitize.sh and scripts/fuzz.sh both build there, so the sanitized code compiles once.
#   scripts/sanitized-build.sh TARGET...
set -euo pipefail
cd "$(dirname "$0")/.."
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
      -DTETRA_SANITIZE=address,undefined -DTETRA_FUZZ=ON "${launcher[@]}" >/dev/null
cmake --build build-asan -j"$(nproc)" --target "$@"
