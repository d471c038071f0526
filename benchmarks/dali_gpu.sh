#!/usr/bin/env bash
# Issue 17: the DALI backend on a GPU machine without a package index.
#
# Here (with PyPI): bash scripts/ready-dali-wheels.sh   (or: make dali-wheels)
# There, one device call per part, back to back (the machine stays warm 30 s after a call
# and keeps git-ignored files between calls):
#   call k (carry .dali/partk):            bash benchmarks/dali_gpu.sh stash
#   last call (carry .dali/deps and the last part):
#                                          bash benchmarks/dali_gpu.sh run "$OUT"
# `stash` copies the carried parts to /tmp/dali-parts; `run` joins them, checks the
# wheel's sha256, installs it and its small dependencies into /tmp/site (no index, no
# deps resolution), installs this checkout, then runs, each stage under a timeout within
# DALI_GPU_BUDGET_S (default 420):
#   dali-import    DALI's version and whether it sees the GPU
#   dali-tests     the CUDA-marked DALI tests, then every DALI test on the CPU pipeline
#   pipeline       fastcifar bench --suite pipeline --backend dali/native/torchvision
#   e2e            resnet20 and resnext29_16x64d, --backend dali and native (e2e / step)
#   merge          OUT/dali.{json,md}, OUT/history.jsonl
set -u -o pipefail

mode=${1:?usage: benchmarks/dali_gpu.sh stash | run OUTDIR}
cd "$(dirname "$0")/.."
PARTS=/tmp/dali-parts
if [[ $mode == stash ]]; then
    mkdir -p "$PARTS"
    cp -v .dali/part*/* "$PARTS"/ 2>/dev/null || { echo "no .dali/part* carried"; exit 1; }
    ls -l "$PARTS"
    exit 0
fi
[[ $mode == run ]] || { echo "usage: benchmarks/dali_gpu.sh stash | run OUTDIR"; exit 2; }
OUTDIR=${2:?usage: benchmarks/dali_gpu.sh run OUTDIR}
source benchmarks/stages.sh  # begin_stages, stage NAME LIMIT COMMAND..., has, end_stages
begin_stages "$OUTDIR" dali_gpu.log "${DALI_GPU_BUDGET_S:-420}"

mkdir -p "$PARTS"
cp .dali/part*/* "$PARTS"/ 2>/dev/null || true
name=$(cat .dali/deps/WHEEL_NAME)
cat "$PARTS/$name".part-* > "/tmp/$name"
if [[ $(sha256sum "/tmp/$name" | cut -d' ' -f1) != $(cat .dali/deps/WHEEL_SHA256) ]]; then
    echo "the joined wheel does not match its sha256 (a part is missing?):"; ls -l "$PARTS"
    exit 1
fi
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    "/tmp/$name" .dali/deps/*.whl || exit 1
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}

BENCH=("$PY" -m fastcifar bench --device cuda --repeats 3)
stage install 90 "$PY" -m pip install --no-deps --no-build-isolation -q -e .
stage dali-import 30 "$PY" -c "import nvidia.dali as d, torch; print('DALI', d.__version__, \
'CUDA', torch.cuda.is_available(), torch.cuda.get_device_name(0))"
stage dali-tests 150 "$PY" -m pytest -q -x tests/test_pipelines_cuda.py \
    tests/test_pipelines_backends.py -k dali
stage pipeline 90 "${BENCH[@]}" --suite pipeline --backend dali --backend native \
    --backend torchvision --json "$OUT/pipeline.json"
stage e2e 120 "${BENCH[@]}" --suite e2e --model resnet20 --model resnext29_16x64d \
    --backend dali --backend native --json "$OUT/e2e.json"
REPORTS=()
for name in pipeline e2e; do [[ -f "$OUT/$name.json" ]] && REPORTS+=("$OUT/$name.json"); done
if (( ${#REPORTS[@]} )); then
    stage merge 20 "$PY" -m fastcifar.bench.merge --json "$OUT/dali.json" \
        --markdown "$OUT/dali.md" --history "$OUT/history.jsonl" "${REPORTS[@]}"
fi
end_stages
