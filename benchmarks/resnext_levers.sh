#!/usr/bin/env bash
# Issue 16: where resnext29_16x64d's training step spends its time on one GPU, and what
# each lever buys, measured one at a time in one run (about 6 minutes of device time).
#
#   benchmarks/resnext_levers.sh OUTDIR
#
# Stages (each under `timeout`, capped by the total budget; see benchmarks/stages.sh):
#   profile        torch.profiler of the eager bf16 channels_last step, batch 128, grouped
#                  by layer kind (grouped 3x3 fwd/dgrad/wgrad, 1x1, BN, activations,
#                  optimizer) with TFLOP/s or GB/s: OUTDIR/profile.{json,md}
#   baseline       fp32 NCHW eager and bf16 channels_last CUDA graph (today's default)
#   compile        + torch.compile (inductor default) under the graph
#   max-autotune   + torch.compile with TORCHINDUCTOR_MAX_AUTOTUNE=1 (GEMM/conv autotuning)
#   batch-256      the default step at batch 256 (per GPU; the recipe's lr scales linearly)
#   merge          one report of baseline, compile and batch-256: OUTDIR/levers.{json,md}
#                  (max-autotune keeps its own max-autotune.json: its rows carry the same
#                  configuration name as compile's, told apart by env.inductor_max_autotune)
# cuDNN's benchmark mode is already on in every stage (engine.build.configure_backends);
# the fused SGD step's share is the profile's optimizer row.
#
# Knobs: PYTHON (default python3), LEVERS_BUDGET_S (default 400).
set -u -o pipefail

OUTDIR=${1:?usage: benchmarks/resnext_levers.sh OUTDIR}
mkdir -p "$OUTDIR" && OUTDIR=$(cd "$OUTDIR" && pwd)
cd "$(dirname "$0")/.."
source benchmarks/stages.sh  # begin_stages, stage NAME LIMIT COMMAND..., has, end_stages
begin_stages "$OUTDIR" levers.log "${LEVERS_BUDGET_S:-400}"

MODEL=resnext29_16x64d
STEP=("$PY" -m fastcifar bench --device cuda --repeats 3 --suite step --model "$MODEL")

stage install 90 "$PY" -m pip install --no-deps --no-build-isolation -q -e .
stage profile 90 "$PY" -m fastcifar.bench.profile --model "$MODEL" --device cuda \
    --batch-size 128 --dtype bf16 --json "$OUT/profile.json" --markdown "$OUT/profile.md"
stage baseline 80 "${STEP[@]}" --batch-size 128 --config fp32-nchw --config bf16-cl-graph \
    --json "$OUT/baseline.json"
stage compile 120 "${STEP[@]}" --batch-size 128 --config bf16-cl-compile-graph \
    --json "$OUT/compile.json"
stage max-autotune 150 env TORCHINDUCTOR_MAX_AUTOTUNE=1 "${STEP[@]}" --batch-size 128 \
    --config bf16-cl-compile-graph --json "$OUT/max-autotune.json"
stage batch-256 60 "${STEP[@]}" --batch-size 256 --config bf16-cl-graph \
    --json "$OUT/batch-256.json"

REPORTS=()
for name in baseline compile batch-256; do
    [[ -f "$OUT/$name.json" ]] && REPORTS+=("$OUT/$name.json")
done
if (( ${#REPORTS[@]} )); then
    stage merge 20 "$PY" -m fastcifar.bench.merge --json "$OUT/levers.json" \
        --markdown "$OUT/levers.md" "${REPORTS[@]}"
fi
end_stages
