#!/usr/bin/env bash
# Builds the loader, reference evaluator, tuning database and CLI with AddressSanitizer and
# UndefinedBehaviorSanitizer (into build-asan/) and runs the bad-input tests under them: any memory
# error, leak or undefined behaviour fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Release -DTETRA_SANITIZE=address,undefined "${launcher[@]}" >/dev/null
cmake --build build-asan -j"$(nproc)" --target tetra tetra_bad_input_tests
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
build-asan/bin/tetra_bad_input_tests "[bad-input]"
echo "sanitize: ok"
