"""What every suite shares: the resolved config, the device, the data, the device probes,
and the shape of a task and of a result row."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from fastcifar.bench.config import BenchConfig
from fastcifar.bench.data import DataProvider
from fastcifar.bench.probes import copy_bandwidth, matmul_tflops
from fastcifar.bench.timing import Timing
from fastcifar.engine.step import TORCH_DTYPES


class Skip(Exception):
    """This measurement cannot run here; the message says why (shown, not a failure)."""


@dataclass
class Task:
    """One measurement: its identity (for the skip/failure row) and how to run it."""

    suite: str
    config: str
    measure: Callable[["Task"], dict]  # called with the task itself; returns a result row
    backend: str | None = None
    model: str | None = None

    def run(self) -> dict:
        return self.measure(self)

    def label(self) -> dict:
        return {"suite": self.suite, "config": self.config, "backend": self.backend,
                "model": self.model}


@dataclass
class SuiteContext:
    config: BenchConfig
    device: torch.device
    env: dict
    data: DataProvider
    log: Callable[[str], None] = print
    _probes: dict = field(default_factory=dict)

    @property
    def compute_dtype(self) -> str:
        """What `fastcifar train` computes in on this device (bf16 on CUDA, fp32 on CPU)."""
        return "bf16" if self.device.type == "cuda" else "fp32"

    def bandwidth_gbs(self) -> float:
        """Measured device-to-device copy bandwidth (measured once, kept in env)."""
        if "bandwidth" not in self._probes:
            probe = copy_bandwidth(self.device)
            self._probes["bandwidth"] = probe
            self.env["measured_bandwidth_gbs"] = round(probe["bandwidth_gbs"], 2)
            self.log(f"device copy bandwidth: {probe['bandwidth_gbs']:.1f} GB/s "
                     f"(read + write of {probe['copy_bytes'] / 2**20:.0f} MiB)")
        return self._probes["bandwidth"]["bandwidth_gbs"]

    def peak_tflops(self, dtype: str = "bf16") -> float:
        """Measured dense matmul TFLOP/s, once per run and dtype: on CUDA always bf16 (the
        tensor-core peak, the usual reference), on the CPU in the step's own dtype."""
        dtype = "bf16" if self.device.type == "cuda" else dtype
        key = f"matmul_{dtype}"
        if key not in self._probes:
            probe = matmul_tflops(self.device, TORCH_DTYPES[dtype])
            self._probes[key] = probe
            self.env.setdefault("measured_matmul_tflops", {})[dtype] = round(
                probe["matmul_tflops"], 3)
            self.log(f"device matmul peak: {probe['matmul_tflops']:.3g} TFLOP/s "
                     f"({dtype} {probe['matmul_size']}^3)")
        return self._probes[key]["matmul_tflops"]


def make_result(task: Task, *, device: torch.device, dtype: str, batch_size: int,
                images_per_sec: float, timing: Timing | None = None, **extra) -> dict:
    """A result row: the keys every row has, then the timing, then suite-specific extras."""
    row = {**task.label(), "device": device.type, "dtype": dtype, "batch_size": batch_size,
           "images_per_sec": images_per_sec}
    if timing is not None:
        row.update(timing.to_json())
    row.update(extra)
    return row


def set_ratio(row: dict, baseline_name: str, baseline_rate: float | None) -> dict:
    row["baseline"] = baseline_name
    row["ratio"] = row["images_per_sec"] / baseline_rate if baseline_rate else None
    return row
