#!/usr/bin/env bash
# Tuning curves of the random and the xgb (cost-model-guided) strategies on one GEMV and one GEMM of
# bench/run.sh's workloads, each strategy with a fresh database:
#   bench/tuning_curves.sh [TRIALS] [OUT_DIR]          (defaults: 64, build/tuning_curves)
# Environment: BUILD (build folder, default build), MODELS_DIR (default BUILD/bench_models, made by
# BUILD/bin/tetra_make_bench_models when a model is missing), MODELS (workload names in it), THREADS (kernel threads, default one per core), REPEATS (timed runs per candidate, default 10), SEEDS (one run per strategy and seed, default "1"), JOBS (parallel builds, default 1).
# Prints per workload and strategy the best time found, its speed-up over the run's first trial (the
# template default: less sensitive to a load change between runs than times are) and the first trial
# whose best-so-far reached 95% of the best speed any run found, each the median over the seeds
# (with every seed's value); the logs, databases and SVG curves stay in OUT_DIR. Times on a busy
# machine drift between runs: compare on a quiet one.
set -euo pipefail
cd "$(dirname "$0")/.."
trials=${1:-64}
out=${2:-build/tuning_curves}
build=${BUILD:-build}
models=${MODELS:-"gemv_1x4096x4096 gemm_1024x1024x1024"}
repeats=${REPEATS:-10}
seeds=${SEEDS:-1}
jobs=${JOBS:-1}
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
  for seed in $seeds; do
    for strategy in random xgb; do
      run=$out/$m.$strategy.$seed
      rm -rf "$run.db" "$run.log.jsonl"
      echo "tuning_curves: $m with --strategy $strategy, seed $seed, $trials trials" >&2
      # --early-stop at the trial budget: both strategies spend every trial, so the curves compare.
      "$build/bin/tetra" tune "$models_dir/$m.onnx" --db "$run.db" --strategy "$strategy" --trials "$trials" \
        --early-stop "$trials" --repeats "$repeats" --seed "$seed" --jobs "$jobs" "${threads_args[@]}" \
        --kernel-cache "$out/kernels" --log "$run.log.jsonl" --report "$run.svg" >/dev/null 2>"$run.stderr" ||
        { echo "tuning_curves: tetra tune failed, see $run.stderr" >&2; exit 1; }
    done
  done
done

python3 - "$out" "$seeds" $models <<'EOF'
import json, math, statistics, sys
out, seeds, models = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
print("| workload | strategy | runs | trials | best ms | speed-up over default | trial reaching 95% of best speed (median; each run) |")
print("| --- | --- | ---: | ---: | ---: | ---: | --- |")
for m in models:
    curves = {}  # (strategy, seed) -> best_ms after each trial (the model's slowest task)
    for strategy in ("random", "xgb"):
        for seed in seeds:
            tasks = {}
            with open(f"{out}/{m}.{strategy}.{seed}.log.jsonl") as f:
                for line in f:
                    r = json.loads(line)
                    tasks.setdefault(r["task"], []).append(r["best_ms"] if r["best_ms"] > 0 else math.inf)
            curves[strategy, seed] = max(tasks.values(), key=lambda c: min(c)) if tasks else []
    best = min((min(c) for c in curves.values() if c), default=math.inf)
    for strategy in ("random", "xgb"):
        runs = [curves[strategy, s] for s in seeds]
        reached = [next((i + 1 for i, ms in enumerate(c) if ms <= best / 0.95), math.inf) for c in runs]
        speedups = [c[0] / min(c) for c in runs if c and math.isfinite(c[0])]
        shown = ", ".join(str(r) if math.isfinite(r) else "not reached" for r in reached)
        med = statistics.median(reached)
        print(f"| {m} | {strategy} | {len(runs)} | {max(len(c) for c in runs)} | "
              f"{min(min(c) for c in runs):.3f} | {statistics.median(speedups):.2f}x | "
              f"{med if math.isfinite(med) else 'not reached'} ({shown}) |")
EOF
