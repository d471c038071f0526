#!/usr/bin/env bash
# Ready what the DALI GPU routine (benchmarks/dali_gpu.sh) needs on a GPU machine that has
# no package index: run here, where PyPI is reachable, from the repository root.
#
#   bash scripts/ready-dali-wheels.sh          (or: make dali-wheels)
#
# Writes git-ignored folders (ignored through .git/info/exclude, never committed):
#   .dali/part1 ... .dali/partN   the nvidia-dali-cuda130 2.4.0 wheel for CPython 3.12,
#                                 split into 55 MB parts (a device call carries 64 MiB)
#   .dali/deps                    the wheels DALI needs that the GPU image lacks: astunparse,
#                                 gast, libcst, makefun, nvtx, optree (the image has six,
#                                 wheel, numpy, packaging, pyyaml, typing-extensions), and
#                                 nvidia-nvimgcodec-cu13 / nvidia-libnvcomp-cu13 only when
#                                 DALI_IMAGE_LIBS=1 (image decoding and compressed
#                                 webdataset reading; the raw .rgb/.cls shards need neither)
# Then carry .dali/part1, .dali/part2, ... one per device call, back to back (the machine
# stays warm 30 s and keeps ignored files), the last call with .dali/deps; see
# benchmarks/dali_gpu.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
grep -qx '/.dali/' .git/info/exclude 2>/dev/null || echo '/.dali/' >> .git/info/exclude
rm -rf .dali && mkdir -p .dali/wheel .dali/deps
download() {  # download DIR SPEC...
    local dir=$1; shift
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux1_x86_64 --platform any -d "$dir" "$@"
}
download .dali/wheel nvidia-dali-cuda130==2.4.0
download .dali/deps astunparse==1.6.3 gast==0.7.0 libcst==1.9.0 makefun==1.16.0 nvtx==0.2.17 \
    optree==0.20.0
if [[ ${DALI_IMAGE_LIBS:-0} == 1 ]]; then
    download .dali/deps nvidia-nvimgcodec-cu13 nvidia-libnvcomp-cu13
fi
wheel=$(ls .dali/wheel/*.whl)
name=$(basename "$wheel")
(cd .dali/wheel && split -b 55M -d "$name" "$name.part-")
i=0
for part in .dali/wheel/"$name".part-*; do
    i=$((i + 1))
    mkdir -p ".dali/part$i"
    mv "$part" ".dali/part$i/"
done
echo "$name" > .dali/deps/WHEEL_NAME
sha256sum "$wheel" | cut -d' ' -f1 > .dali/deps/WHEEL_SHA256
rm "$wheel"
du -sh .dali/part* .dali/deps
echo "carry .dali/part1 ... .dali/part$i in turn, then .dali/deps with: bash benchmarks/dali_gpu.sh run OUT"
