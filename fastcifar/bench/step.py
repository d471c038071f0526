"""Step suite: the training step alone, on a synthetic batch already on the device.

Each configuration is a set of `fastcifar train` flags (dtype, channels_last, graph,
compile) resolved by the engine and built from the engine's own pieces (training.py), so
the figure is the real step's. Eager fp32 NCHW runs first and every other configuration
of the model is set against it. Achieved TFLOP/s is 3 x forward FLOPs per image
(fastcifar.models.model_info; backward ~ 2 x forward) x images/s, set against the dense
matmul peak measured in the same run (bf16 on CUDA; on the CPU in the step's dtype).
"""
from __future__ import annotations

from functools import partial

import torch

from fastcifar.bench.config import BASELINE_STEP, StepVariant
from fastcifar.bench.context import Skip, SuiteContext, Task, make_result, set_ratio
from fastcifar.bench.timing import time_repeats
from fastcifar.bench.training import (
    build_step,
    kernel_settings_restored,
    reset_compiled,
    train_config,
)
from fastcifar.datasets import get_dataset
from fastcifar.models import model_info

BACKWARD_FACTOR = 3  # forward + backward (about 2 x forward) FLOPs per trained image


def step_tasks(ctx: SuiteContext) -> list[Task]:
    tasks = []
    for model in ctx.config.step_models():
        baselines: dict[str, float] = {}
        for variant in ctx.config.variants():
            if variant.cuda_only and ctx.device.type != "cuda":
                continue
            if variant.cpu_only and ctx.device.type != "cpu":
                continue
            tasks.append(Task("step", variant.name, partial(measure_step, ctx, baselines, variant),
                              model=model))
    return tasks


def model_gflops(model: str, dataset: str) -> float:
    return model_info(model, num_classes=get_dataset(dataset).num_classes)["gflops"]


def measure_step(ctx: SuiteContext, baselines: dict, variant: StepVariant, task: Task) -> dict:
    config, budget = ctx.config, ctx.config.budget
    train = train_config(task.model, config.dataset, ctx.device.type,
                         batch_size=config.batch_size or budget.step_batch_size,
                         **variant.train_options)
    if variant.dtype == "bf16" and ctx.device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise Skip("this GPU has no bf16 support")
    if ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(ctx.device)
    with kernel_settings_restored():
        built = build_step(train, seed=config.seed)

        def run():
            built.runner(built.buffers.images, built.buffers.targets)

        try:
            timing = time_repeats(run, repeats=budget.repeats,
                                  warmup=built.runner.warmup_calls + budget.step_warmup,
                                  repeat_seconds=budget.repeat_seconds,
                                  items_per_call=train.per_rank_batch_size, device=ctx.device)
            finite = bool(torch.isfinite(built.buffers.metrics).all())
        finally:
            built = run = None  # release the model and its buffers before the next one
            if variant.compile:
                reset_compiled()
    ips = timing.items_per_sec
    achieved = BACKWARD_FACTOR * model_gflops(task.model, config.dataset) * ips / 1e3
    peak = ctx.peak_tflops(variant.dtype)
    extra = {"channels_last": variant.channels_last, "graph": variant.graph,
             "compile": variant.compile, "tflops": achieved, "peak_tflops": peak,
             "peak_fraction": achieved / peak if peak else None,
             "loss_finite": finite}
    if ctx.device.type == "cuda":
        extra["peak_memory_gib"] = torch.cuda.max_memory_allocated(ctx.device) / 2**30
        datasheet = ctx.env.get("datasheet_bf16_tflops")
        if datasheet:
            extra["datasheet_fraction"] = achieved / datasheet
    row = make_result(task, device=ctx.device, dtype=variant.dtype,
                      batch_size=train.per_rank_batch_size, images_per_sec=ips, timing=timing,
                      **extra)
    if variant.name == BASELINE_STEP:
        baselines["step"] = ips
    return set_ratio(row, BASELINE_STEP, baselines.get("step"))
