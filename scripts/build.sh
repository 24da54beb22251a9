#!/usr/bin/env bash
# Configures and builds tetra into build/ (Release). Extra arguments go to the build step.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" "$@"
