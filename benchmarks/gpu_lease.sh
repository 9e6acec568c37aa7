#!/usr/bin/env bash
# A lent GPU machine in one prepared call (the device tool's `run`; 15 minutes of device time a session).
#
# Here, before asking for the machine:
#   bash benchmarks/gpu_lease.sh prepare [DATA_DIR]
# downloads, as cp312 wheels into the ignored .whl/, the packages booktower needs that the lent machine's image
# lacks (polars and pydantic with their own, at this .venv's versions), copies amazon-books-2014 from DATA_DIR
# (default ../shared/data) into the ignored .gpudata/, and prints what will travel (64 MiB at most).
#
# There, as the `run` command with carry [".whl", ".gpudata"]:
#   bash benchmarks/gpu_lease.sh device
#   ONLY="train_graph_1k" bash benchmarks/gpu_lease.sh device      # a rerun of some steps
# installs the wheels into /tmp/site and runs benchmarks/gpu.sh on .gpudata (the steps in ONLY, by default those
# not measured yet: the captured step at 8,192, the top of training.cuda_graph: auto, against the eager one);
# its logs come back as $OUT/gpu-logs.tar.gz, its summary is printed.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(polars polars-runtime-32 pydantic pydantic_core annotated-types typing-inspection)
DEFAULT_ONLY="cuda_tests train_graph_8k train_batch8k host_syncs_static"

prepare() {
    local data_dir=${1:-../shared/data}
    local python=${PYTHON:-.venv/bin/python}
    rm -rf .whl .gpudata
    mkdir -p .whl .gpudata
    local pins
    pins=$("$python" -c 'import importlib.metadata as m, sys
print(" ".join(f"{n}=={m.version(n)}" for n in sys.argv[1:]))' "${WHEELS[@]}")
    echo "downloading: $pins"
    # shellcheck disable=SC2086  # the pins are separate words
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl $pins
    cp -r "$data_dir/amazon-books-2014" .gpudata/
    local tree
    tree=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | du -cb --files0-from=- | tail -1 | cut -f1)
    local carried
    carried=$(du -cb .whl .gpudata | tail -1 | cut -f1)
    echo "travels: $((tree / 1048576)) MiB of tree + $((carried / 1048576)) MiB carried (.whl, .gpudata); limit 64 MiB"
    echo 'run: command "bash benchmarks/gpu_lease.sh device", carry [".whl", ".gpudata"], timeout_s 600'
}

device() {
    if compgen -G ".whl/*.whl" > /dev/null; then  # none carried: the packages are there already
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
            .whl/*.whl
        export PYTHONPATH=/tmp/site
    fi
    export PYTHONUNBUFFERED=1
    local out=/tmp/booktower-gpu
    local status=0
    ONLY=${ONLY:-$DEFAULT_ONLY} CACHE_DIR=/tmp/booktower-cache bash benchmarks/gpu.sh .gpudata "$out" || status=$?
    # the step logs in one file (the machine hands back at most 8); the run folders stay there
    if [[ -n ${OUT:-} ]]; then
        (cd "$out" && tar czf "$OUT/gpu-logs.tar.gz" ./*.log)
    fi
    return $status
}

case ${1:-} in
    prepare) shift; prepare "$@" ;;
    device) device ;;
    *) echo "usage: benchmarks/gpu_lease.sh prepare [DATA_DIR] | device" >&2; exit 2 ;;
esac
