#!/usr/bin/env bash
# Builds the loader, reference evaluator, tuning database and CLI with AddressSanitizer and
# UndefinedBehaviorSanitizer (scripts/sanitized-build.sh, into build-asan/) and runs the bad-input tests
# under them: any memory error, leak or undefined behaviour fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/sanitized-build.sh tetra tetra_bad_input_tests
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
build-asan/bin/tetra_bad_input_tests "[bad-input]"
echo "sanitize: ok"
