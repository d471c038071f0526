"""The engine's training pieces, put together as `fastcifar train` puts them together.

train_config() resolves a TrainConfig through the engine's own resolve_config (so the
bench accepts and rejects what `train` does), build_step() builds the model, buffers,
optimizer and runner with the engine's own builders (as Trainer does), and
kernel_settings_restored() undoes the process-wide cuDNN/TF32 choices
(engine.build.configure_backends) after each measurement, so one configuration's
settings do not leak into the next one's figure.
"""
from __future__ import annotations

import contextlib
import gc
from dataclasses import dataclass

import torch
import torch._dynamo

from fastcifar.datasets import get_dataset
from fastcifar.engine import build
from fastcifar.engine.dist import DistContext
from fastcifar.engine.resolve import resolve_config


def train_config(model: str, dataset: str, device: str, **options):
    """The TrainConfig `fastcifar train --model M --dataset D --device X ...` would run."""
    given = {"model": model, "dataset": dataset, "device": device, "out": "(bench: unused)",
             "progress": False, **options}
    return resolve_config({k: v for k, v in given.items() if v is not None})


@dataclass
class BuiltStep:
    runner: object  # EagerRunner | GraphRunner
    buffers: object  # StepBuffers


def build_step(config, seed: int = 0) -> BuiltStep:
    """Model, static buffers holding a synthetic batch, optimizer and runner for `config`."""
    ctx = DistContext.single(config.device)
    build.configure_backends(config, ctx.device)
    torch.manual_seed(seed)
    model = build.build_model(config, ctx.device)
    buffers, optimizer, scaler = build.build_step_state(config, model, ctx.device)
    buffers.lr.fill_(config.peak_lr)
    fill_synthetic_batch(buffers, get_dataset(config.dataset).num_classes, seed)
    runner = build.build_runner(config, ctx, model, optimizer, buffers, scaler)
    return BuiltStep(runner=runner, buffers=buffers)


def fill_synthetic_batch(buffers, num_classes: int, seed: int) -> None:
    """Normalised-looking images and random labels, written into the static buffers."""
    generator = torch.Generator(device=buffers.images.device).manual_seed(seed)
    images = torch.randn(buffers.images.shape, generator=generator,
                         device=buffers.images.device)
    buffers.images.copy_(images)
    if buffers.targets.is_floating_point():  # soft targets: rows of a random distribution
        weights = torch.rand(buffers.targets.shape, generator=generator,
                             device=buffers.targets.device)
        buffers.targets.copy_(weights / weights.sum(dim=1, keepdim=True))
    else:
        buffers.targets.copy_(torch.randint(0, num_classes, buffers.targets.shape,
                                            generator=generator,
                                            device=buffers.targets.device))


@contextlib.contextmanager
def kernel_settings_restored():
    """Restore cuDNN benchmark/TF32 flags and free compiled code and cached memory after."""
    saved = (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
             torch.backends.cuda.matmul.allow_tf32)
    try:
        yield
    finally:
        (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
         torch.backends.cuda.matmul.allow_tf32) = saved
        release_memory()


def release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def reset_compiled() -> None:
    """Forget compiled graphs: every model instance would otherwise add recompilations
    to the same code objects until dynamo's cache limit silently falls back to eager."""
    torch._dynamo.reset()


def variant_name(config) -> str:
    """A short name of a TrainConfig's execution choices, e.g. bf16-cl-graph."""
    parts = [config.dtype, "cl" if config.channels_last else "nchw"]
    if config.dtype == "fp16":
        parts.append("scaler")
    if config.compile:
        parts.append("compile")
    if config.graph:
        parts.append("graph")
    return "-".join(parts)
