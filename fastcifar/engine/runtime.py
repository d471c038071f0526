"""Where and how a run executes: device, processes, compute dtype, CUDA-graph capture.

resolve_execution() turns the user's "auto" choices into concrete ones for this machine
and refuses impossible combinations in one line each. The torchrun protocol (its
environment variables) is read here too, so resolving a config never imports
torch.distributed.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import torch

from fastcifar.errors import UserError

DTYPES = ("bf16", "fp16", "fp32")
# Set by torchrun (or any launcher using its protocol).
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")


def in_torchrun() -> bool:
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def torchrun_world_size() -> int | None:
    return int(os.environ["WORLD_SIZE"]) if in_torchrun() else None


def cuda_device_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_execution(values: dict, options: Mapping[str, Any], cuda_devices: int) -> None:
    """Set values' device, world_size, dtype and graph from the user's `options`."""
    device = values.get("device", "auto")
    if device == "auto":
        device = "cuda" if cuda_devices > 0 else "cpu"
    if device not in ("cuda", "cpu"):
        raise UserError(f"--device must be auto, cuda or cpu, not {device!r}")
    if device == "cuda" and cuda_devices == 0:
        raise UserError("--device cuda: no CUDA device is available (try --device cpu)")
    values["device"] = device
    values["world_size"] = _world_size(values, options, device, cuda_devices)
    values["dtype"] = _dtype(values.get("dtype", "auto"), options.get("amp"), device)
    values["graph"] = _graph(values.get("graph"), device, values["dtype"])


def _world_size(values: dict, options: Mapping[str, Any], device: str, cuda_devices: int) -> int:
    gpus, nproc = options.get("gpus"), options.get("nproc")
    if gpus is not None and nproc is not None and gpus != nproc:
        raise UserError("give either --gpus or --nproc, not both")
    if gpus is not None and device != "cuda":
        raise UserError("--gpus needs CUDA; on the CPU use --device cpu --nproc N")
    world_size = gpus or nproc or values.get("world_size", 1)
    if world_size < 1:
        raise UserError("--gpus/--nproc must be at least 1")
    torchrun_world = torchrun_world_size()
    if torchrun_world is not None:
        if (gpus or nproc or 1) > 1:
            raise UserError(
                "under torchrun, --gpus/--nproc do not apply: torchrun starts the processes"
            )
        return torchrun_world
    if device == "cuda" and world_size > cuda_devices:
        raise UserError(f"--gpus {world_size}: only {cuda_devices} CUDA device(s) are visible")
    return world_size


def _dtype(dtype: str, amp: bool | None, device: str) -> str:
    if amp is not None and dtype != "auto" and (dtype == "fp32") == amp:
        raise UserError(f"--{'' if amp else 'no-'}amp contradicts --dtype {dtype}")
    if dtype == "auto":
        # --amp means bf16 autocast (fp16 only when asked: it needs GradScaler).
        dtype = "bf16" if (amp if amp is not None else device == "cuda") else "fp32"
    if dtype not in DTYPES:
        raise UserError(f"--dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    if dtype == "fp16" and device != "cuda":
        raise UserError("--dtype fp16 needs CUDA; use bf16 or fp32 on the CPU")
    return dtype


def _graph(graph, device: str, dtype: str) -> bool:
    if graph is None or graph == "auto":
        # fp16 needs GradScaler, which reads found-inf on the host: eager only.
        graph = device == "cuda" and dtype != "fp16"
    if graph and device != "cuda":
        raise UserError("CUDA-graph capture needs --device cuda")
    if graph and dtype == "fp16":
        raise UserError("fp16 uses GradScaler, which cannot run in a CUDA graph: use bf16")
    return bool(graph)
