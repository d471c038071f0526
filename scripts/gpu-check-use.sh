#!/usr/bin/env bash
# GPU checks of using a run (issue 12: fastcifar eval / predict / export), for one machine
# with one CUDA GPU and no network (torch, numba, triton, click, tqdm, pytest installed;
# onnx, onnxruntime, safetensors used when present):
#
#   bash scripts/gpu-check-use.sh OUTDIR
#
# 1. the CUDA tests of fastcifar.use (tests/test_use_cuda.py: eval on the GPU reproduces
#    the test_acc of a run trained there with bf16 + CUDA graph + EMA + TTA; a test set
#    from files takes the prepared split's path; predict equals the model on the pixels);
# 2. the commands on a run trained on the GPU, their output kept in OUTDIR/gpu-check-use.log.
# Every step runs under `timeout`; a failed step is reported and the next one still runs.
# Not yet run on a GPU: expected to take 2-3 minutes on an H200.
set -u -o pipefail
OUT=${1:?usage: scripts/gpu-check-use.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 FASTCIFAR_DATA="$OUT/data"
exec > >(tee -a "$OUT/gpu-check-use.log") 2>&1

step() {  # step LIMIT_SECONDS COMMAND...
    local limit=$1
    shift
    echo "=== $(date +%H:%M:%S) $*"
    timeout --kill-after=10 "$limit" "$@" || echo "=== FAILED (exit status $?): $*"
}

step 90 "$PY" -m pip install --no-deps --no-build-isolation -q -e .
step 240 "$PY" -m pytest -m cuda -q tests/test_use_cuda.py
step 60 "$PY" -c "from tests.cifar_fixtures import make_cifar_archive as m; \
m('$OUT/c10.tar.gz', train_size=5000, test_size=1000, seed=3, learnable=True)"
step 60 "$PY" -m fastcifar prepare --dataset cifar10 --source "$OUT/c10.tar.gz" --no-checksum
step 150 "$PY" -m fastcifar train --model resnet20 --dataset cifar10 --epochs 3 \
    --batch-size 256 --ema --tta --out "$OUT/run" --force --no-progress
step 60 "$PY" -m fastcifar eval "$OUT/run" --device cuda --json "$OUT/eval-cuda.json" \
    --plot "$OUT/eval-cuda.png"
step 90 "$PY" -m fastcifar eval "$OUT/run" --device cpu --json "$OUT/eval-cpu.json"
step 30 "$PY" -c "import json, numpy as np, fastcifar, PIL.Image as I, os; \
os.makedirs('$OUT/images', exist_ok=True); x, y = fastcifar.load('cifar10', 'test'); \
[I.fromarray(x[i]).save(f'$OUT/images/test_{i}_label{y[i]}.png') for i in range(8)]"
step 60 "$PY" -m fastcifar predict "$OUT/run" "$OUT/images" --device cuda
for format in torchscript safetensors onnx; do
    step 120 "$PY" -m fastcifar export "$OUT/run" --format "$format" --out "$OUT/model.$format" --force
done
echo "=== done: summary.json test_acc vs eval on cuda and cpu"
"$PY" -c "import json; s = json.load(open('$OUT/run/summary.json')); \
c = json.load(open('$OUT/eval-cuda.json')); p = json.load(open('$OUT/eval-cpu.json')); \
print('run', s['test_acc'], 'eval cuda', c['metrics']['accuracy'], 'eval cpu', p['metrics']['accuracy'])"
