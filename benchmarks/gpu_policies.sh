#!/usr/bin/env bash
# GPU checks of the augmentation policies inside the fused Triton kernel (issue 14),
# about 5 minutes on one GPU with no network:
#
#   benchmarks/gpu_policies.sh OUTDIR
#
# 1. the CUDA tests of the policies: Triton on the GPU equals the torch reference bit for
#    bit (every policy, with and without mixing), a CUDA-graph capture replays new draws,
#    sampling reads nothing back to the host; and the plain kernel's CUDA tests;
# 2. `fastcifar bench --suite pipeline --backend native` at batch 512: the Triton op with
#    each policy, at 512 and at the large batch (target: >= 1M images/s for each policy);
# 3. `fastcifar bench --suite e2e --model resnet20 --recipe strong`: the strong recipe
#    (AutoAugment, mixup, cutmix, erasing) end to end against its step alone (target:
#    within 3%), and the default recipe for comparison.
# Each step runs under `timeout`; a failed one is logged and the next still runs. Writes
# OUTDIR/gpu_policies.log, the JSON reports, bench.md and history.jsonl (append it to
# benchmarks/history.jsonl to keep the figures). PYTHON picks the interpreter.
set -u -o pipefail

OUT=${1:?usage: benchmarks/gpu_policies.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
export FASTCIFAR_DATA="$OUT/.no-prepared-data"  # the bench generates a CIFAR-format set
exec > >(tee -a "$OUT/gpu_policies.log") 2>&1

FAILED=()
run() {  # run LIMIT_SECONDS COMMAND...
    local limit=$1
    shift
    echo "=== $(date +%H:%M:%S) (limit ${limit}s): $*"
    timeout --kill-after=10 "$limit" "$@" || { echo "=== FAILED ($?): $*"; FAILED+=("$*"); }
}

BENCH=("$PY" -m fastcifar bench --device cuda --repeats 3)
run 90 "$PY" -m pip install --no-deps --no-build-isolation -q -e .
run 15 nvidia-smi
run 200 "$PY" -m pytest -m cuda -q tests/test_policy_triton.py tests/test_policy_sampler.py \
    tests/test_augment_triton.py
run 120 "${BENCH[@]}" --suite pipeline --backend native --json "$OUT/pipeline.json"
run 150 "${BENCH[@]}" --suite e2e --model resnet20 --recipe strong --backend native \
    --json "$OUT/e2e-strong.json"
run 60 "${BENCH[@]}" --suite e2e --model resnet20 --backend native --json "$OUT/e2e.json"

REPORTS=()
for name in pipeline e2e-strong e2e; do
    [[ -f "$OUT/$name.json" ]] && REPORTS+=("$OUT/$name.json")
done
if (( ${#REPORTS[@]} )); then
    run 30 "$PY" -m fastcifar.bench.merge --json "$OUT/bench.json" \
        --markdown "$OUT/bench.md" --history "$OUT/history.jsonl" "${REPORTS[@]}"
fi
echo "=== done; failed: ${#FAILED[@]}"
printf '  %s\n' "${FAILED[@]}"
