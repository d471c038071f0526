"""The device's own ceilings, measured in the same run as the figures set against them.

- matmul_tflops: dense matmul throughput, the compute peak a training step's achieved
  TFLOP/s is a fraction of (the bench uses bf16 on CUDA, the step's dtype on the CPU);
- copy_bandwidth: bytes/s of a large device-to-device copy (read + write), the memory
  ceiling of a bandwidth-bound op such as the augmentation.

Datasheet peaks are kept beside them for reference (dense, no sparsity).
"""
from __future__ import annotations

import re

import torch

from fastcifar.bench.timing import time_repeats

# Dense bf16 tensor-core TFLOP/s and memory bandwidth GB/s from vendor datasheets, by a
# name as torch.cuda.get_device_name reports it (the longest matching name wins).
DATASHEET = {
    "H200": (989.0, 4800.0),
    "H100": (989.0, 3350.0),  # SXM, which reports itself as "H100 80GB HBM3"
    "H100 PCIe": (756.0, 2000.0),
    "H100 NVL": (835.0, 3900.0),
    "A100": (312.0, 1555.0),  # 40 GB
    "A100-SXM4-80GB": (312.0, 2039.0),
    "A100 80GB PCIe": (312.0, 1935.0),
    "L40S": (362.0, 864.0),
    "L4": (121.0, 300.0),
    "A10": (125.0, 600.0),
    "RTX 4090": (165.0, 1008.0),
}


def datasheet_peaks(device_name: str) -> dict:
    """{"datasheet_bf16_tflops", "datasheet_bandwidth_gbs"} for a known GPU name, else {}."""
    for key in sorted(DATASHEET, key=len, reverse=True):  # the most specific name first
        # whole words only: "A10" must not match "A100"
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(key)}(?![A-Za-z0-9])", device_name):
            tflops, bandwidth = DATASHEET[key]
            return {"datasheet_bf16_tflops": tflops, "datasheet_bandwidth_gbs": bandwidth}
    return {}


def matmul_tflops(device: torch.device, dtype: torch.dtype = torch.bfloat16, *,
                  size: int | None = None, repeats: int = 5, seconds: float = 0.2) -> dict:
    """Median TFLOP/s of an n x n x n matmul in `dtype`."""
    cuda = device.type == "cuda"
    n = size or (8192 if cuda else 1024)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)

    def run():
        torch.mm(a, b, out=out)

    timing = time_repeats(run, repeats=repeats, warmup=1, repeat_seconds=seconds, device=device)
    flops = 2.0 * n ** 3 * timing.calls_per_repeat
    return {"matmul_dtype": str(dtype).removeprefix("torch."), "matmul_size": n,
            "matmul_tflops": flops / timing.median_seconds / 1e12}


def copy_bandwidth(device: torch.device, *, megabytes: int | None = None, repeats: int = 5,
                   seconds: float = 0.2) -> dict:
    """Median GB/s of copying a large buffer within the device's memory (read + write)."""
    cuda = device.type == "cuda"
    nbytes = (megabytes or (1024 if cuda else 128)) * 2**20
    src = torch.empty(nbytes, dtype=torch.uint8, device=device).fill_(1)
    dst = torch.empty_like(src)

    def run():
        dst.copy_(src)

    timing = time_repeats(run, repeats=repeats, warmup=1, repeat_seconds=seconds, device=device)
    moved = 2.0 * nbytes * timing.calls_per_repeat  # each byte is read once and written once
    return {"copy_bytes": nbytes, "bandwidth_gbs": moved / timing.median_seconds / 1e9}
