"""Pipeline suite: each loader alone, then the bare augmentation op per implementation.

Loaders run with the same augmentation (pad-4 crop, flip, cutout, normalise) into the
compute dtype on the chosen device; nothing consumes the batches, so the figure is the
most images/s that backend could feed a step. A repeat is one whole epoch (every epoch
pays its own start-up: worker processes, pipeline builds), the first epoch is warm-up,
and the torchvision DataLoader runs first so every other loader is set against it.

The augmentation op (reference torch ops as its baseline; numba on the CPU, Triton on
CUDA, and that again with each augmentation policy, set against the same op without one)
is timed by fastcifar.bench.augment_op.measure_augment; its bytes/s (uint8 read + output
written) is set against the device's copy bandwidth measured in the same run.
"""
from __future__ import annotations

import dataclasses
import gc
from functools import partial

import torch

from fastcifar.augment import AugmentConfig
from fastcifar.augment_policies import AUGMENT_POLICIES
from fastcifar.backends import BASELINE_BACKEND, missing_extra
from fastcifar.bench.augment_op import measure_augment
from fastcifar.bench.context import (
    TORCH_DTYPES,
    Skip,
    SuiteContext,
    Task,
    make_result,
    set_ratio,
)
from fastcifar.bench.loader import measure_loader
from fastcifar.bench.timing import Timing
from fastcifar.datasets import get_dataset
from fastcifar.pipelines import create_loader

BASELINE_IMPL = "reference"


def pipeline_tasks(ctx: SuiteContext) -> list[Task]:
    baselines: dict[str, float] = {}
    tasks = [Task("pipeline", "loader", partial(measure_one_loader, ctx, baselines),
                  backend=backend)
             for backend in ctx.config.pipeline_backends()]
    impls = (BASELINE_IMPL, "triton" if ctx.device.type == "cuda" else "numba")
    tasks += [Task("pipeline", f"augment-op:{impl}",
                   partial(measure_augment_op, ctx, baselines, impl)) for impl in impls]
    fast = impls[-1]
    # The kernel itself, past the launch cost: at the loader's batch (512) a CUDA launch
    # moves ~5 MB, about 1 us of memory traffic against ~50 us of host-side launch
    # (measured on an H200, 2026-11-29), so only a large batch shows the bandwidth.
    large = ctx.config.budget.augment_large_batch
    tasks.append(Task("pipeline", f"augment-op:{fast}@{large}",
                      partial(measure_augment_op, ctx, baselines, fast, batch_size=large)))
    # Each augmentation policy inside the fastest implementation, against it without one;
    # on CUDA also at the large batch (the GPU target: 1M images/s past the launch cost).
    policies = [p for p in AUGMENT_POLICIES if p != "none"]
    tasks += [Task("pipeline", f"augment-op:{fast}+{policy}",
                   partial(measure_augment_op, ctx, baselines, fast, policy=policy))
              for policy in policies]
    if ctx.device.type == "cuda":
        tasks += [Task("pipeline", f"augment-op:{fast}+{policy}@{large}",
                       partial(measure_augment_op, ctx, baselines, fast, policy=policy,
                               batch_size=large))
                  for policy in policies]
    return tasks


def bench_augment_config(dataset: str):
    """crop + flip + cutout (the dataset's default size) + normalise: every backend's job."""
    return AugmentConfig.for_dataset(dataset, cutout=get_dataset(dataset).default_cutout)


def measure_one_loader(ctx: SuiteContext, baselines: dict, task: Task) -> dict:
    reason = missing_extra(task.backend)
    if reason:
        raise Skip(reason)
    config, budget = ctx.config, ctx.config.budget
    batch_size = config.batch_size or budget.loader_batch_size
    dtype = ctx.compute_dtype
    data = ctx.data.get()
    loader = create_loader(task.backend, config.dataset, "train", batch_size=batch_size,
                           train=True, augment=bench_augment_config(config.dataset),
                           device=ctx.device, dtype=TORCH_DTYPES[dtype],
                           data_dir=data.data_dir, seed=config.seed, num_workers=config.workers)
    try:
        batches = len(loader)
        if batches == 0:
            raise Skip(f"batch size {batch_size} is larger than the training set")
        seconds = []
        for repeat in range(budget.repeats):
            # One epoch per repeat; the first call also runs one untimed warm-up epoch.
            measured = measure_loader(loader, epochs=1, warmup_epochs=int(repeat == 0),
                                      device=ctx.device)
            seconds.append(measured["seconds"])
    finally:
        del loader
        gc.collect()  # ends worker processes and frees device memory before the next one
    timing = Timing(seconds=tuple(seconds), calls_per_repeat=batches,
                    items_per_call=batch_size, warmup_calls=batches)
    row = make_result(task, device=ctx.device, dtype=dtype, batch_size=batch_size,
                      images_per_sec=timing.items_per_sec, timing=timing,
                      num_workers=0 if task.backend == "native" else config.workers,
                      data="synthetic" if data.synthetic else "prepared")
    if task.backend == BASELINE_BACKEND:
        baselines["loader"] = row["images_per_sec"]
    return set_ratio(row, BASELINE_BACKEND, baselines.get("loader"))


def measure_augment_op(ctx: SuiteContext, baselines: dict, impl: str, task: Task, *,
                       policy: str = "none", batch_size: int | None = None) -> dict:
    config, budget = ctx.config, ctx.config.budget
    default_batch = config.batch_size or budget.loader_batch_size
    batch_size = batch_size or default_batch
    dtype = ctx.compute_dtype
    augment_config = dataclasses.replace(bench_augment_config(config.dataset),
                                         augment_policy=policy)
    measured = measure_augment(impl, batch_size, ctx.device, TORCH_DTYPES[dtype],
                               seconds=budget.augment_seconds, config=augment_config,
                               dataset_size=budget.augment_dataset_size)
    if ctx.device.type == "cuda":
        torch.cuda.empty_cache()
    bandwidth = ctx.bandwidth_gbs() * 1e9
    row = make_result(task, device=ctx.device, dtype=dtype, batch_size=batch_size,
                      images_per_sec=measured["images_per_sec"], impl=impl,
                      repeats=measured.get("repeats"),
                      calls_per_repeat=measured.get("calls_per_repeat"),
                      bytes_per_sec=measured["bytes_per_sec"],
                      bandwidth_fraction=measured["bytes_per_sec"] / bandwidth)
    datasheet = ctx.env.get("datasheet_bandwidth_gbs")
    if datasheet:
        row["datasheet_bandwidth_fraction"] = measured["bytes_per_sec"] / (datasheet * 1e9)
    name = f"augment-op:{impl}" + ("" if batch_size == default_batch else f"@{batch_size}")
    if policy != "none":  # the policy's cost: against the same op (and batch) without one
        row["augment_policy"] = policy
        return set_ratio(row, name, baselines.get(name))
    if impl == BASELINE_IMPL:
        baselines["augment"] = row["images_per_sec"]
    else:
        baselines[name] = row["images_per_sec"]
    return set_ratio(row, f"augment-op:{BASELINE_IMPL}", baselines.get("augment"))
