"""What a benchmark ran on: software versions, the device, the commit, the machine's load.

Everything is read on demand (no import-time work); a probe that fails leaves its field
out rather than failing the benchmark.
"""
from __future__ import annotations

import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

import torch

_SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the checkout, for editable installs


def capture_env(device: torch.device) -> dict:
    env = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "device": device.type,
        "device_name": device_name(device),
        "cpu_name": cpu_name(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "load_average": load_average(),
        # inductor's autotuning, when the environment turns it on (benchmarks/resnext_levers.sh)
        "inductor_max_autotune": os.environ.get("TORCHINDUCTOR_MAX_AUTOTUNE"),
    }
    env.update(_package_versions())
    env.update(git_state())
    if device.type == "cuda":
        env.update(cuda_env(device))
    return {k: v for k, v in env.items() if v is not None}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name() or platform.processor() or "cpu"


def cpu_name() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _package_versions() -> dict:
    versions = {}
    for package in ("numpy", "numba", "triton", "torchvision", "ffcv", "nvidia-dali-cuda130"):
        try:
            versions[package.replace("-", "_")] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    try:
        versions["fastcifar"] = metadata.version("fastcifar")
    except metadata.PackageNotFoundError:
        pass
    return versions


def git_state(root: Path = _SOURCE_ROOT) -> dict:
    """{"commit", "dirty"} of the source checkout, or {} outside a git checkout."""
    def git(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": commit, "dirty": dirty}


def cuda_env(device: torch.device) -> dict:
    props = torch.cuda.get_device_properties(device)
    env = {
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "capability": f"{props.major}.{props.minor}",
        "gpu_memory_gib": round(props.total_memory / 2**30, 1),
        "sm_count": props.multi_processor_count,
        "gpu_count": torch.cuda.device_count(),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
    }
    env["driver"] = _driver_version()
    return env


def _driver_version() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        return out.strip().splitlines()[0] or None
    except (OSError, subprocess.SubprocessError, IndexError):
        pass
    try:
        version = torch._C._cuda_getDriverVersion()  # e.g. 12040 for 12.4
        return f"{version // 1000}.{version % 1000 // 10} (CUDA driver API)"
    except (AttributeError, RuntimeError):
        return None
