#!/usr/bin/env bash
# Tuning curves of the random and the xgb (cost-model-guided) strategies on one GEMV and one GEMM of
# bench/run.sh's workloads, each strategy with a fresh database:
#   bench/tuning_curves.sh [TRIALS] [OUT_DIR]          (defaults: 64, build/tuning_curves)
# Environment: BUILD (build folder, default build), MODELS_DIR (default BUILD/bench_models, made by
# BUILD/bin/tetra_make_bench_models when a model is missing), MODELS (workload names in it), THREADS (kernel threads, default one per core), REPEATS (timed runs per candidate, default 10), SEED.
# Prints per workload and strategy the best time found, its speed-up over the run's first trial (the
# template default: less sensitive to a load change between runs than times are) and the first trial
# whose best-so-far reached 95% of the best speed either strategy found; the logs, databases and SVG
# curves stay in OUT_DIR. Times on a busy machine drift between runs: compare on a quiet one.
set -euo pipefail
cd "$(dirname "$0")/.."
trials=${1:-64}
out=${2:-build/tuning_curves}
build=${BUILD:-build}
models=${MODELS:-"gemv_1x4096x4096 gemm_1024x1024x1024"}
repeats=${REPEATS:-10}
seed=${SEED:-1}
threads_args=()
[ -n "${THREADS:-}" ] && threads_args=(--threads "$THREADS")

models_dir=${MODELS_DIR:-$build/bench_models}
[ -x "$build/bin/tetra" ] || { echo "tuning_curves: no $build/bin/tetra (build the tetra target)" >&2; exit 1; }
for m in $models; do
  if [ ! -f "$models_dir/$m.onnx" ]; then
    [ -x "$build/bin/tetra_make_bench_models" ] ||
      { echo "tuning_curves: no $models_dir/$m.onnx (build tetra_make_bench_models)" >&2; exit 1; }
    "$build/bin/tetra_make_bench_models" "$models_dir" >/dev/null
  fi
done

mkdir -p "$out"
for m in $models; do
  for strategy in random xgb; do
    run=$out/$m.$strategy
    rm -rf "$run.db" "$run.log.jsonl"
    echo "tuning_curves: $m with --strategy $strategy, $trials trials" >&2
    # --early-stop at the trial budget: both strategies spend every trial, so the curves compare.
    "$build/bin/tetra" tune "$models_dir/$m.onnx" --db "$run.db" --strategy "$strategy" --trials "$trials" \
      --early-stop "$trials" --repeats "$repeats" --seed "$seed" "${threads_args[@]}" \
      --log "$run.log.jsonl" --report "$run.svg" >/dev/null 2>"$run.stderr" ||
      { echo "tuning_curves: tetra tune failed, see $run.stderr" >&2; exit 1; }
  done
done

python3 - "$out" $models <<'EOF'
import json, math, sys
out, models = sys.argv[1], sys.argv[2:]
print("| workload | strategy | trials | best ms | speed-up over default | trial reaching 95% of best speed |")
print("| --- | --- | ---: | ---: | ---: | ---: |")
for m in models:
    curves = {}  # strategy -> best_ms after each trial (the model's largest task)
    for strategy in ("random", "xgb"):
        tasks = {}
        with open(f"{out}/{m}.{strategy}.log.jsonl") as f:
            for line in f:
                r = json.loads(line)
                tasks.setdefault(r["task"], []).append(r["best_ms"] if r["best_ms"] > 0 else math.inf)
        # One task per bench model; if there were several, take the slowest.
        curves[strategy] = max(tasks.values(), key=lambda c: min(c)) if tasks else []
    best = min((min(c) for c in curves.values() if c), default=math.inf)
    for strategy, curve in curves.items():
        reached = next((i + 1 for i, ms in enumerate(curve) if ms <= best / 0.95), None)
        speedup = curve[0] / min(curve) if curve and math.isfinite(curve[0]) else math.nan
        print(f"| {m} | {strategy} | {len(curve)} | {min(curve, default=math.inf):.3f} | {speedup:.2f}x | "
              f"{reached if reached else 'not reached'} |")
EOF
