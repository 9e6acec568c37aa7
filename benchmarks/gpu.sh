#!/usr/bin/env bash
# The GPU benchmark suite in one call: training throughput (bf16 autocast, general and fused softmax paths, the
# default batch and larger ones), exact full ranking of 1M users x 1M items at d=128 (one top-k and a two-stage
# top-k), and the evaluation benchmark on the real amazon-books-2014 split with scores masked and cut on the GPU.
# Installs nothing; runs from the repository root with the project importable.
#
#   benchmarks/gpu.sh DATA_DIR [OUT_DIR]
#   DEVICE=cpu benchmarks/gpu.sh DATA_DIR     # a small smoke run of the same steps on the CPU (no GPU needed)
#   ONLY="train_batch32k evaluate" benchmarks/gpu.sh DATA_DIR    # just these steps (a rerun)
#
# DATA_DIR holds amazon-books-2014/{interactions,items}.csv.gz (e.g. ../shared/data). Python comes from
# ${PYTHON:-python3}; the dataset cache goes to ${CACHE_DIR:-OUT_DIR/cache}. Every step has its own time limit (STEP_TIMEOUT seconds, default 150) and a failing step
# is reported and skipped, so one call always ends with the summary.
set -euo pipefail

DATA_DIR=${1:?usage: benchmarks/gpu.sh DATA_DIR [OUT_DIR]}
OUT_DIR=${2:-${OUT:-/tmp/booktower-gpu-bench}}
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
STEP_TIMEOUT=${STEP_TIMEOUT:-150}
CACHE_DIR=${CACHE_DIR:-}
ONLY=${ONLY:-}
DATA_DIR=$(cd "$DATA_DIR" && pwd)
cd "$(dirname "$0")/.."
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
CACHE_DIR=${CACHE_DIR:-$OUT_DIR/cache}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

if [[ $DEVICE == cuda ]]; then
    STEPS=100; BIG_STEPS=40; PROFILE_STEPS=10; USERS=1000000; ITEMS=1000000; THREADS=8
    "$PYTHON" -c 'import torch; assert torch.cuda.is_available(), "benchmarks/gpu.sh needs a CUDA GPU (or DEVICE=cpu)"
p = torch.cuda.get_device_properties(0); print(f"torch {torch.__version__}, {p.name}, {p.total_memory / 2**30:.0f} GiB")'
    nvidia-smi --query-gpu=name,memory.used,memory.total,utilization.gpu --format=csv || true
else
    STEPS=3; BIG_STEPS=2; PROFILE_STEPS=1; USERS=20000; ITEMS=20000; THREADS=2
fi

BOOKS="$DATA_DIR/amazon-books-2014"
DATA_SETS=(--set "data.source.interactions=$BOOKS/interactions.csv.gz" --set "data.source.items=$BOOKS/items.csv.gz"
           --set "data.cache_dir=$CACHE_DIR")
# the eager step unless a step asks for the graph (training.cuda_graph is auto: on CUDA it captures batches up
# to 8,192, and --compile on/off cannot be timed in turn on a captured step)
TRAIN_SETS=("${DATA_SETS[@]}" --set "training.device=$DEVICE" --set training.bf16=true --set training.cuda_graph=false)
status=()

step() {  # step NAME COMMAND...: run with a time limit, keep its output, record ok/failed
    local name=$1; shift
    [[ -z $ONLY || " $ONLY " == *" $name "* ]] || return 0
    echo "=== $name: $*"
    local start=$SECONDS
    if timeout "$STEP_TIMEOUT" "$@" 2>&1 | tee "$OUT_DIR/$name.log"; then
        status+=("$name ok ($((SECONDS - start)) s)")
    else
        status+=("$name FAILED (exit ${PIPESTATUS[0]}, $((SECONDS - start)) s; see $OUT_DIR/$name.log)")
    fi
}

# the CUDA-only tests (the compiled loss against the eager one; the captured step against the eager one) and the
# ranking tests, on this GPU; compiling takes a while, hence their own time limit
[[ $DEVICE == cuda ]] && STEP_TIMEOUT=${TESTS_TIMEOUT:-300} step cuda_tests "$PYTHON" -m pytest -q -m "not slow" -p no:cacheprovider \
    tests/training/test_losses.py tests/evaluation/test_ranking.py tests/training/test_graphed.py

step train_default "$PYTHON" benchmarks/train_throughput.py --config configs/amazon-books-2014.yaml \
    "${TRAIN_SETS[@]}" --device "$DEVICE" --threads $THREADS --steps $STEPS --compile on off
# the whole step captured in a CUDA graph (training.cuda_graph, training/graphed.py) at the default batch of
# 1,024, where the eager step waits on the host's launches; on the CPU the setting is ignored with a warning
step train_graph_1k "$PYTHON" benchmarks/train_throughput.py --config configs/amazon-books-2014.yaml \
    "${TRAIN_SETS[@]}" --set training.cuda_graph=true --device "$DEVICE" --threads $THREADS --steps $STEPS \
    --paths fused --compile on --rounds 2
# the captured step at 8,192, the largest batch training.cuda_graph: auto captures (eager: train_batch8k)
step train_graph_8k "$PYTHON" benchmarks/train_throughput.py --config configs/amazon-books-2014.yaml \
    "${TRAIN_SETS[@]}" --set training.batch_size=8192 --set training.cuda_graph=true --device "$DEVICE" \
    --threads $THREADS --steps $BIG_STEPS --paths fused --compile on --rounds 2
# one whole run of the default config with the graphed step (validation every epoch, test scored once): its
# epochs' throughput by the trainer's own count and its test metrics, against the eager run's (docs/results.md)
[[ $DEVICE == cuda ]] && STEP_TIMEOUT=${FIT_TIMEOUT:-420} step fit_graph_1k "$PYTHON" -m booktower train \
    --config configs/amazon-books-2014.yaml "${TRAIN_SETS[@]}" --set training.cuda_graph=true \
    --set training.progress=false --output-dir "$OUT_DIR/fit-graph-1k"
step train_batch8k "$PYTHON" benchmarks/train_throughput.py --config configs/amazon-books-2014.yaml \
    "${TRAIN_SETS[@]}" --set training.batch_size=8192 --device "$DEVICE" --threads $THREADS --steps $BIG_STEPS \
    --paths fused --compile on off
step train_batch32k "$PYTHON" benchmarks/train_throughput.py --config configs/amazon-books-2014.yaml \
    "${TRAIN_SETS[@]}" --set training.batch_size=32768 --device "$DEVICE" --threads $THREADS --steps $BIG_STEPS \
    --paths fused --compile on off
[[ $DEVICE == cuda ]] && step train_batch65k "$PYTHON" benchmarks/train_throughput.py --config configs/amazon-books-2014.yaml \
    "${TRAIN_SETS[@]}" --set training.batch_size=65536 --device "$DEVICE" --threads $THREADS --steps $BIG_STEPS \
    --paths fused --compile on off
# the large-batch GPU configuration (configs/amazon-books-2014-gpu.yaml): its speed, then one whole run of it
# (selection on validation, refit, test scored once), which takes a few minutes on an H200
step train_gpu_config "$PYTHON" benchmarks/train_throughput.py --config configs/amazon-books-2014-gpu.yaml \
    "${TRAIN_SETS[@]}" --device "$DEVICE" --threads $THREADS --steps $BIG_STEPS --paths fused --compile on
[[ $DEVICE == cuda ]] && STEP_TIMEOUT=${FIT_TIMEOUT:-420} step fit_gpu_config "$PYTHON" -m booktower train \
    --config configs/amazon-books-2014-gpu.yaml "${TRAIN_SETS[@]}" --set training.progress=false \
    --output-dir "$OUT_DIR/fit-gpu-config"
# where the step's time goes (torch.profiler: ops by self CPU and self GPU time), at the default batch and a big one
step profile_batch1k "$PYTHON" benchmarks/train_throughput.py --config configs/amazon-books-2014.yaml \
    "${TRAIN_SETS[@]}" --device "$DEVICE" --threads $THREADS --steps $PROFILE_STEPS --paths fused --profile
step profile_batch32k "$PYTHON" benchmarks/train_throughput.py --config configs/amazon-books-2014.yaml \
    "${TRAIN_SETS[@]}" --set training.batch_size=32768 --device "$DEVICE" --threads $THREADS \
    --steps $PROFILE_STEPS --paths fused --profile
# the host syncs and data-dependent shapes of one step at the default batch, with the lines that cause them:
# what a CUDA-graph capture of the step would have to remove (on the CPU: the CUDA path's ops, simulated)
HOST_SYNCS_PATH=(--device "$DEVICE"); [[ $DEVICE == cuda ]] || HOST_SYNCS_PATH=(--cuda-path)
step host_syncs "$PYTHON" benchmarks/host_syncs.py --config configs/amazon-books-2014.yaml "${TRAIN_SETS[@]}" \
    "${HOST_SYNCS_PATH[@]}"
# the same inventory for the graph's body (training.cuda_graph): what the capture needs is an empty list
step host_syncs_static "$PYTHON" benchmarks/host_syncs.py --config configs/amazon-books-2014.yaml "${TRAIN_SETS[@]}" \
    "${HOST_SYNCS_PATH[@]}" --static
step full_ranking_1m "$PYTHON" benchmarks/full_ranking.py --users $USERS --items $ITEMS --dim 128 --k 50 \
    --chunks 4096,16384 --device "$DEVICE"
step evaluate "$PYTHON" benchmarks/evaluate.py --config configs/amazon-books-2014.yaml "${DATA_SETS[@]}" \
    --device "$DEVICE" --chunks 4096,16384 --full-rank

echo
echo "=== summary ($OUT_DIR, device $DEVICE)"
for line in "${status[@]}"; do echo "  $line"; done
for name in cuda_tests train_default train_graph_1k train_graph_8k fit_graph_1k train_batch8k train_batch32k train_batch65k train_gpu_config fit_gpu_config host_syncs host_syncs_static full_ranking_1m evaluate; do
    # the tables only: header lines and rows that start with a number or a method name
    [[ -f "$OUT_DIR/$name.log" ]] && { echo "--- $name"; grep -E '^ *([0-9]+|topk|blocked|blockmax) |threads|chunk|users x|by phase|^load|passed|failed|syncing ops|epoch [0-9]+:|test: |CUDA graph|captured in a CUDA graph|capture of the training step failed|compiled training step failed' "$OUT_DIR/$name.log" || true; }
done
