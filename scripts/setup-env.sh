#!/usr/bin/env bash
# Creates the virtual environment and installs fastcifar with every extra this machine
# can take: the FFCV extra compiles a C++ extension against OpenCV, libturbojpeg and the
# Python headers (installed with apt when running as root on Debian/Ubuntu), the DALI
# extra needs a 190 MB wheel, the ONNX extra (export and its check) 38 MB of wheels (120 MB installed).
set -euo pipefail
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH=${TORCH:-torch==2.14.1 torchvision==0.29.1}
pip_quiet() {  # pip's own errors still fail the script; only the find-links noise is dropped
    # --no-cache-dir: a second copy of every wheel in ~/.cache/pip is disk a CI machine may not have
    "$VENV/bin/pip" install -q --disable-pip-version-check --no-cache-dir "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }
    return "${PIPESTATUS[0]}"
}

have_cxx() { command -v c++ >/dev/null || command -v g++ >/dev/null; }
ffcv_buildable() { pkg-config --exists opencv4 libturbojpeg 2>/dev/null && have_cxx; }

# The CUDA build of torch with its nvidia-* wheels takes about 6.7 GB in the venv (8 GB at
# the peak of the install, measured 2026-12-01); say so in one line instead of letting pip
# stop half-way with ENOSPC.
need_free_gb() {
    local dir avail_kb
    dir=$(dirname "$(realpath -m "$VENV")")
    avail_kb=$(df -Pk "$dir" | awk 'NR==2 {print $4}')
    if [ "$avail_kb" -lt $(( $1 * 1024 * 1024 )) ]; then
        echo "error: installing needs about $1 GB free next to $VENV; $dir has $(( avail_kb / 1024 )) MB" >&2
        exit 1
    fi
}
if ! { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import torch, torchvision" 2>/dev/null; }; then
    need_free_gb 8
fi

# Before the venv is made: Debian/Ubuntu's python3 needs python3-venv for `-m venv`.
if ! ffcv_buildable && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing FFCV's system packages (g++, Python headers, pkg-config, OpenCV, libturbojpeg) and python3-venv with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        g++ python3-dev python3-venv pkg-config libopencv-dev libturbojpeg0-dev >/dev/null
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip_quiet --upgrade pip setuptools wheel
"$VENV/bin/python" -c "import torch, torchvision" 2>/dev/null || pip_quiet $TORCH

extras="dev,dali,tb,onnx"
if ffcv_buildable; then
    extras="$extras,ffcv"
else
    echo "note: skipping the ffcv extra: run 'apt-get install g++ python3-dev pkg-config libopencv-dev libturbojpeg0-dev' first"
fi
pip_quiet -e ".[$extras]"
"$VENV/bin/python" -c "import fastcifar.pipelines" || { echo "install failed" >&2; exit 1; }
