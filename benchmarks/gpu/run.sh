#!/usr/bin/env bash
# Issue #20 in one command: everything m6bench can check on a GPU, packed under $OUT.
#
#   benchmarks/gpu/run.sh                      # on the device machine: $OUT is set there
#   benchmarks/gpu/run.sh --device cpu --tiny --out /tmp/gpu-out   # CI's check of the script
#
# Options: --device cuda|cpu (default cuda; cpu also hides any GPU from every step),
# --tiny (tiny shapes and budgets: a few minutes on 2 CPU cores), --workers N (parallel
# sweep workers; default from shapes.py), --out DIR (default $OUT), --deadline S (seconds
# for the whole run, default 450: every step's `timeout` is cut to what is left, and a
# step with under 15 s left is skipped and says so; the last 45 s are kept for the site).
#
# Steps, each bounded by `timeout`, each logged; a failed step is recorded and the run
# goes on: carried wheels (.whl/, from fetch_wheels.sh) when optuna, sqlalchemy or
# datasets is missing; the GPU and versions; `pytest -m cuda`; the CUDA cases of
# benchmarks/test_bench_evaluate.py and test_bench_training.py; one epoch of bpr-mf,
# gnn-mf and m6-fusion on ML-1M-shaped data (epochs.py); a board of equal trials on
# ML-100K- and ML-1M-shaped synthetic data through `m6bench sweep --workers N` with a
# journal storage; one sweep timed with 1 worker and with N; the leaderboard site.
#
# $OUT receives at most 8 files: summary.md, ledger.jsonl, site.tar.gz, bench.json,
# epochs.json, logs.tar.gz (every log, the sweeps' journals and the timing ledgers).
set -uo pipefail

DEVICE=cuda TINY=0 WORKERS_OPTION="" OUT_DIR="${OUT:-}" DEADLINE=450
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --tiny) TINY=1; shift ;;
    --workers) WORKERS_OPTION="$2"; shift 2 ;;
    --out) OUT_DIR="$2"; shift 2 ;;
    --deadline) DEADLINE="$2"; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$OUT_DIR" ]; then
  echo "run.sh: no output folder: set OUT or pass --out DIR" >&2; exit 2
fi
mkdir -p "$OUT_DIR" && OUT_DIR=$(cd "$OUT_DIR" && pwd)
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO" || exit 2
PY=${PYTHON:-python3}
TINY_FLAG=(); [ "$TINY" = 1 ] && TINY_FLAG=(--tiny)
STARTED=$(date +%s) STEP_DEADLINE=$(( DEADLINE - 45 ))
WORK=$(mktemp -d "${TMPDIR:-/tmp}/m6bench-gpu.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/logs" "$WORK/board" "$WORK/throughput" "$WORK/journals" "$WORK/site"

# step NAME LIMIT_S COMMAND...: run it under `timeout`, log it, record code and seconds.
step() {
  local name=$1 limit=$2 left; shift 2
  left=$(( STEP_DEADLINE - ($(date +%s) - STARTED) ))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 15 ]; then
    echo "== $name: skipped, the run's deadline is near" | tee "$WORK/logs/$name.log"
    printf '%s\t%s\t%s\n' "$name" 125 0 >>"$WORK/steps.tsv"
    return 125
  fi
  echo "== $name (at most ${limit}s)"
  local begin code; begin=$(date +%s.%N)
  timeout -k 10 "$limit" "$@" >"$WORK/logs/$name.log" 2>&1; code=$?
  printf '%s\t%s\t%s\n' "$name" "$code" \
    "$(awk "BEGIN { print $(date +%s.%N) - $begin }")" >>"$WORK/steps.tsv"
  tail -n 3 "$WORK/logs/$name.log"
  return "$code"
}

# --- the tree's code, with what the device image lacks -------------------------------
if [ "$DEVICE" = cpu ]; then export CUDA_VISIBLE_DEVICES=""; fi
if ! "$PY" -c "import optuna, sqlalchemy, datasets" 2>/dev/null; then
  if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "run.sh: optuna, sqlalchemy or datasets is missing and .whl/ holds no wheels;" \
         "run benchmarks/gpu/fetch_wheels.sh here and carry .whl" >&2; exit 2
  fi
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$WORK/wheels" .whl/*.whl || exit 2
fi
"$PY" benchmarks/gpu/shapes.py shim "$WORK/dist" >/dev/null || exit 2
export PYTHONPATH="$WORK/dist:$REPO/harness:$REPO/plugins:$REPO/leaderboard:$WORK/wheels${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 M6BENCH_CACHE_DIR="$WORK/cache"
unset M6BENCH_LEDGER
# m6-fusion's sentence vectors, encoded by fetch_wheels.sh where the encoder's weights are
if [ -d .whl/m6bench-cache/text ]; then
  mkdir -p "$M6BENCH_CACHE_DIR" && cp -r .whl/m6bench-cache/text "$M6BENCH_CACHE_DIR/"
fi
M6=("$PY" -m m6bench)
eval "$("$PY" benchmarks/gpu/shapes.py budget "${TINY_FLAG[@]}")"
WORKERS=${WORKERS_OPTION:-$WORKERS}

environment() {
  date -u; uname -srm
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  else echo "nvidia-smi: not found"; fi
  "$PY" - <<'EOF'
import importlib.metadata as md, platform, torch
print("python", platform.python_version(), "| torch", torch.__version__, "| CUDA",
      torch.version.cuda, "| GPU", torch.cuda.get_device_name(0)
      if torch.cuda.is_available() else "none")
print(" | ".join(f"{n} {md.version(n)}" for n in ("m6bench", "optuna", "sqlalchemy",
      "datasets", "numpy", "pandas", "pyarrow")))
EOF
}
export PY; export -f environment
step environment 60 bash -c environment
cat "$WORK/logs/environment.log"

# --- tests and benchmark suites ---------------------------------------------------------
mapfile -t CUDA_TEST_FILES < <(grep -l "mark.cuda" tests/*.py)
if [ ${#CUDA_TEST_FILES[@]} -gt 0 ]; then
  step cuda-tests 150 "$PY" -m pytest -m cuda -q -p no:cacheprovider "${CUDA_TEST_FILES[@]}"
fi
# the training suites need the real ML-1M (absent on the device): epochs.py times them
BENCH_FILTER=(); [ "$TINY" = 1 ] && BENCH_FILTER=(-k "ml1m_scale and not ease")
step bench 180 "$PY" -m pytest -q -p no:cacheprovider benchmarks/test_bench_evaluate.py \
  benchmarks/test_bench_training.py --benchmark-only --benchmark-json="$WORK/bench.json" \
  "${BENCH_FILTER[@]}"
step epochs 120 "$PY" benchmarks/gpu/epochs.py --device "$DEVICE" --out "$WORK/epochs.json" \
  "${TINY_FLAG[@]}"

# --- the board: equal trials for every model, N workers on the one GPU -------------------
WORKER_FLAG=()
if "${M6[@]}" sweep --help 2>/dev/null | grep -q -- --workers; then
  WORKER_FLAG=(--workers "$WORKERS")
else
  echo "m6bench sweep has no --workers option yet: sweeps run in one process, and the" \
       "1-worker vs N-worker timing is skipped" >"$WORK/throughput/skipped.txt"
fi
while read -r SHAPE PLUGIN MODEL DATA_ARGS; do
  read -ra DATA <<<"$DATA_ARGS"
  step "board:$SHAPE:$PLUGIN.$MODEL" "$SWEEP_TIMEOUT_S" "${M6[@]}" sweep --plugin "$PLUGIN" \
    --model "$MODEL" "${DATA[@]}" --trials "$TRIALS" --seeds "$SEEDS" --set "epochs=$EPOCHS" \
    --device "$DEVICE" --ledger "$WORK/runs-$SHAPE/ledger.jsonl" --quiet \
    --storage "journal://$WORK/journals/$SHAPE.$PLUGIN.$MODEL.log" "${WORKER_FLAG[@]}"
done < <("$PY" benchmarks/gpu/shapes.py rows "${TINY_FLAG[@]}")

if [ ${#WORKER_FLAG[@]} -gt 0 ]; then
  read -r _ PLUGIN MODEL DATA_ARGS < <("$PY" benchmarks/gpu/shapes.py throughput \
    "${TINY_FLAG[@]}")
  read -ra DATA <<<"$DATA_ARGS"
  for N in 1 "$WORKERS"; do
    step "throughput-$N" "$SWEEP_TIMEOUT_S" "${M6[@]}" sweep --plugin "$PLUGIN" \
      --model "$MODEL" "${DATA[@]}" --trials "$THROUGHPUT_TRIALS" --seeds 0 \
      --set "epochs=$EPOCHS" --device "$DEVICE" --study "throughput-$N-workers" --quiet \
      --ledger "$WORK/throughput/workers-$N/ledger.jsonl" --workers "$N" \
      --storage "journal://$WORK/journals/throughput-$N.log"
  done
fi

# --- site, board tables, summary, pack ---------------------------------------------------
STEP_DEADLINE=$DEADLINE
for LEDGER in "$WORK"/runs-*/ledger.jsonl; do
  [ -f "$LEDGER" ] || continue
  SHAPE=$(basename "$(dirname "$LEDGER")"); SHAPE=${SHAPE#runs-}
  cat "$LEDGER" >>"$WORK/ledger.jsonl"
  step "site:$SHAPE" 90 "${M6[@]}" leaderboard build --ledger "$LEDGER" \
    --out "$WORK/site/$SHAPE"
  step "table:$SHAPE" 60 "${M6[@]}" leaderboard show --ledger "$LEDGER" --format markdown
  cp "$WORK/logs/table:$SHAPE.log" "$WORK/board/$SHAPE.md"
done
"$PY" benchmarks/gpu/summary.py "$WORK" "$OUT_DIR/summary.md"
[ -f "$WORK/ledger.jsonl" ] && cp "$WORK/ledger.jsonl" "$OUT_DIR/"
for FILE in bench.json epochs.json; do
  [ -f "$WORK/$FILE" ] && cp "$WORK/$FILE" "$OUT_DIR/"
done
tar -czf "$OUT_DIR/site.tar.gz" -C "$WORK" site
tar -czf "$OUT_DIR/logs.tar.gz" -C "$WORK" logs journals throughput steps.tsv
echo "== done in $(( $(date +%s) - STARTED ))s: $(ls "$OUT_DIR" | tr '\n' ' ')"
