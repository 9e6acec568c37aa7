#!/usr/bin/env bash
# The GPU benchmark suite in one call: training throughput (bf16 autocast, general and fused softmax paths),
# exact full ranking of 1M users x 1M items at d=128 (chunked top-K), and the evaluation benchmark.
# Installs nothing; runs from the repository root with the project already installed.
#
#   benchmarks/gpu.sh DATA_DIR [OUT_DIR]
#
# DATA_DIR holds amazon-books-2014/{interactions,items}.csv.gz (e.g. ../shared/data). Python comes from
# ${PYTHON:-python3}. Every step has its own time limit (STEP_TIMEOUT seconds, default 240) and a failing step
# is reported and skipped, so one call always ends with the summary.
set -euo pipefail

DATA_DIR=${1:?usage: benchmarks/gpu.sh DATA_DIR [OUT_DIR]}
OUT_DIR=${2:-${OUT:-/tmp/booktower-gpu-bench}}
PYTHON=${PYTHON:-python3}
STEP_TIMEOUT=${STEP_TIMEOUT:-240}
cd "$(dirname "$0")/.."
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

"$PYTHON" - <<'PY'
import torch
assert torch.cuda.is_available(), "benchmarks/gpu.sh needs a CUDA GPU"
print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}, "
      f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
PY
nvidia-smi --query-gpu=name,memory.used,memory.total,utilization.gpu --format=csv || true

BOOKS="$DATA_DIR/amazon-books-2014"
DATA_SETS=(--set "data.source.interactions=$BOOKS/interactions.csv.gz" --set "data.source.items=$BOOKS/items.csv.gz"
           --set "data.cache_dir=$OUT_DIR/cache" --set training.device=cuda --set training.bf16=true)
status=()

step() {  # step NAME COMMAND...: run with a time limit, keep its output, record ok/failed
    local name=$1; shift
    echo "=== $name: $*"
    if timeout "$STEP_TIMEOUT" "$@" 2>&1 | tee "$OUT_DIR/$name.log"; then
        status+=("$name ok")
    else
        status+=("$name FAILED (exit ${PIPESTATUS[0]}; see $OUT_DIR/$name.log)")
    fi
}

step train_default "$PYTHON" benchmarks/train_throughput.py --config configs/amazon-books-2014.yaml \
    "${DATA_SETS[@]}" --device cuda --threads 8 --steps 100
step train_batch8k "$PYTHON" benchmarks/train_throughput.py --config configs/amazon-books-2014.yaml \
    "${DATA_SETS[@]}" --set training.batch_size=8192 --device cuda --threads 8 --steps 50 --paths fused
step full_ranking_1m "$PYTHON" benchmarks/full_ranking.py --users 1000000 --items 1000000 --dim 128 --k 50 \
    --chunks 2048,4096,8192 --device cuda
step evaluate "$PYTHON" benchmarks/evaluate.py --config configs/amazon-books-2014.yaml

echo
echo "=== summary ($OUT_DIR)"
for line in "${status[@]}"; do echo "  $line"; done
for name in train_default train_batch8k full_ranking_1m; do
    [[ -f "$OUT_DIR/$name.log" ]] && { echo "--- $name"; grep -E '^ *[0-9]|threads|chunk|users x' "$OUT_DIR/$name.log" || true; }
done
