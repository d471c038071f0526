#!/usr/bin/env bash
# The GPU benchmark suite: install, CUDA tests, GPU checks, then the bench suites.
#
#   benchmarks/gpu_suite.sh OUTDIR
#
# For one machine with one CUDA GPU and no network (torch, triton, numba, click, tqdm,
# matplotlib, pytest installed; FFCV and DALI are used when present, skipped otherwise).
# Every stage runs under `timeout`, capped by what is left of the total budget, so one
# hang cannot eat the run; a failed stage is logged and the next one still runs. Each
# bench stage rewrites its JSON after every row, so a stage cut short keeps what it
# measured. Writes into OUTDIR: gpu_suite.log (everything), <stage>.json, and the merged
# bench.json, bench.md (table), bench.png (plot), history.jsonl (one line per result;
# append it to benchmarks/history.jsonl to keep it).
#
# Knobs (environment): PYTHON (default python3), GPU_SUITE_BUDGET_S (default 570: with
# the last stage's 10 s kill grace the script stays under one device call's 10 minutes), GPU_CHECKS_S
# (default 150: the limit of the gpu-checks stage, benchmarks/gpu_checks.py; 0 skips it).
set -u -o pipefail

OUTDIR=${1:?usage: benchmarks/gpu_suite.sh OUTDIR}
mkdir -p "$OUTDIR" && OUTDIR=$(cd "$OUTDIR" && pwd)
cd "$(dirname "$0")/.."
source benchmarks/stages.sh  # begin_stages, stage NAME LIMIT COMMAND..., has, end_stages
begin_stages "$OUTDIR" gpu_suite.log "${GPU_SUITE_BUDGET_S:-570}"
CHECKS_S=${GPU_CHECKS_S:-150}

BENCH=("$PY" -m fastcifar bench --device cuda --repeats 3)
BACKENDS=(--backend native --backend torchvision)
for backend in ffcv dali; do
    module=$backend; [[ $backend == dali ]] && module=nvidia.dali
    if has "$module"; then
        BACKENDS+=(--backend "$backend")
    else
        echo "note: $backend is not installed here: its pipeline figures are skipped"
    fi
done

stage install 90 "$PY" -m pip install --no-deps --no-build-isolation -q -e .
stage gpu-info 15 nvidia-smi
if has pytest; then
    stage cuda-tests 150 "$PY" -m pytest -m cuda -q tests
else
    echo "note: pytest is not installed here: the CUDA tests are skipped"
    SUMMARY+=("cuda-tests: not run (no pytest)")
fi
# The multi-GPU / preemption paths (issue 11): DDP + capture on one stream equals eager,
# drop-path masks move between replays, no host sync in the per-batch body, a SIGTERM'd
# captured run resumes to the same result, reset-then-destroy ends. Each check has its
# own timeout inside; their PASS/FAIL lines land in the log, the JSON in gpu-checks/.
if (( CHECKS_S > 0 )); then
    stage gpu-checks "$CHECKS_S" "$PY" benchmarks/gpu_checks.py --out "$OUT/gpu-checks" \
        --budget-s $(( CHECKS_S - 10 ))
fi
has matplotlib || echo "note: matplotlib is not installed here: no plot (bench.png)"
stage pipeline 75 "${BENCH[@]}" --suite pipeline "${BACKENDS[@]}" --json "$OUT/pipeline.json"
# The big models, compute-bound: the baseline, AMP and the captured step, the target
# model first (on an H200, 2026-11-29, five configurations of three models took over
# 110 s and never reached resnext29_16x64d).
stage step-large 150 "${BENCH[@]}" --suite step \
    --model resnext29_16x64d --model resnext29_8x64d --model wrn28_10 \
    --config fp32-nchw --config bf16-cl --config bf16-cl-graph --json "$OUT/step-large.json"
stage e2e 90 "${BENCH[@]}" --suite e2e --model resnet20 --model airbench94 \
    --model resnext29_16x64d --backend native --backend torchvision --json "$OUT/e2e.json"
# The target model once more, compiled and captured (the trainer's --compile on CUDA):
# inductor fuses the BN/ReLU passes around the grouped convolutions, the one lever on a
# compute-bound step that the plain graph leaves (the 3x / 40% targets were not met
# without it on 2026-11-29).
stage step-large-compile 150 "${BENCH[@]}" --suite step --model resnext29_16x64d \
    --config bf16-cl-compile-graph --json "$OUT/step-large-compile.json"
stage step-small 60 "${BENCH[@]}" --suite step --model resnet20 --model airbench94 \
    --config fp32-nchw --config fp32-cl --config bf16-cl --config fp16-cl-scaler \
    --config bf16-cl-graph --json "$OUT/step-small.json"
# Last: torch.compile (what `fastcifar train --compile` runs, with and without the graph).
stage step-compile 120 "${BENCH[@]}" --suite step --model resnet20 --model airbench94 \
    --config bf16-cl-compile-graph --config bf16-cl-compile --json "$OUT/step-compile.json"

REPORTS=()
for name in pipeline step-large e2e step-large-compile step-small step-compile; do
    [[ -f "$OUT/$name.json" ]] && REPORTS+=("$OUT/$name.json")
done
if (( ${#REPORTS[@]} )); then
    stage merge 20 "$PY" -m fastcifar.bench.merge --json "$OUT/bench.json" \
        --markdown "$OUT/bench.md" --plot "$OUT/bench.png" --history "$OUT/history.jsonl" \
        "${REPORTS[@]}"
fi

end_stages
