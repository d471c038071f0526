"""e2e suite: a short real training run (loader + step) per model and backend.

The run is built by the engine's Trainer exactly as `fastcifar train --model M --backend
B --device X [--recipe R]` builds it (on CUDA bf16 channels_last CUDA-graph, on the
CPU fp32 channels_last eager) and driven batch by batch with the loop's per-batch body
(Trainer.train_batch). Then the same warm step runs on its static buffers with no loader:
ratio = e2e images/s / step-alone images/s, so 1 - ratio is what the data path costs.
Batches come from consecutive epochs; epoch start-up (worker processes, pipeline
builds) falls inside the timed repeats as it does in training.
"""
from __future__ import annotations

from functools import partial

from fastcifar.backends import BASELINE_BACKEND, missing_extra
from fastcifar.bench.context import Skip, SuiteContext, Task, make_result, set_ratio
from fastcifar.bench.timing import time_repeats
from fastcifar.bench.training import kernel_settings_restored, train_config, variant_name
from fastcifar.engine.dist import DistContext
from fastcifar.engine.loop import Trainer
from fastcifar.errors import UserError

STEP_ALONE = "step alone"


def e2e_tasks(ctx: SuiteContext) -> list[Task]:
    tasks = []
    backends = ctx.config.e2e_backends()
    # The baseline loader first, so each model's other backends can be set against it.
    backends = sorted(backends, key=lambda b: b != BASELINE_BACKEND)
    for model in ctx.config.e2e_models():
        baselines: dict[str, float] = {}
        for backend in backends:
            tasks.append(Task("e2e", "train", partial(measure_e2e, ctx, baselines),
                              backend=backend, model=model))
    return tasks


def batch_stream(loader):
    """Batches of consecutive epochs, without end."""
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        count = 0
        for batch in loader:
            count += 1
            yield batch
        if count == 0:
            raise UserError("the training loader yields no batches (batch size too large?)")
        epoch += 1


def measure_e2e(ctx: SuiteContext, baselines: dict, task: Task) -> dict:
    reason = missing_extra(task.backend)
    if reason:
        raise Skip(reason)
    config, budget = ctx.config, ctx.config.budget
    data = ctx.data.get()
    train = train_config(task.model, config.dataset, ctx.device.type, backend=task.backend,
                         recipe=config.recipe, data_dir=data.data_dir,
                         num_workers=config.workers,
                         batch_size=config.batch_size or budget.step_batch_size,
                         seed=config.seed)
    task.config = variant_name(train)
    with kernel_settings_restored():
        trainer = Trainer(DistContext.single(train.device), train)
        stream = batch_stream(trainer.train_loader)

        def loader_and_step():
            images, targets = next(stream)
            trainer.train_batch(images, targets)

        def step_alone():
            trainer.train_batch(trainer.buffers.images, trainer.buffers.targets)

        warmup = budget.step_warmup + trainer.runner.warmup_calls
        common = dict(repeats=budget.repeats, repeat_seconds=budget.repeat_seconds,
                      items_per_call=train.per_rank_batch_size, device=ctx.device)
        try:
            # A real run's worth of steps (epoch boundaries included) ...
            timing = time_repeats(loader_and_step, warmup=warmup,
                                  calls_per_repeat=budget.e2e_min_steps, **common)
            # ... then, with the loader stopped (no worker or prefetch still competing),
            # the same warm step alone on the last batch, as many steps per repeat.
            stream.close()
            alone = time_repeats(step_alone, warmup=1, calls_per_repeat=budget.e2e_min_steps,
                                 **common)
        finally:
            stream.close()  # idempotent: ends the loader's iterator if timing failed
            # Drop the references (closures included) so the next measurement starts clean.
            trainer = stream = loader_and_step = step_alone = None
    row = make_result(task, device=ctx.device, dtype=train.dtype,
                      batch_size=train.per_rank_batch_size,
                      images_per_sec=timing.items_per_sec, timing=timing,
                      recipe=train.recipe, graph=train.graph, compile=train.compile,
                      channels_last=train.channels_last, num_workers=train.num_workers,
                      step_alone_images_per_sec=alone.items_per_sec,
                      steps_timed=timing.calls_per_repeat * len(timing.seconds),
                      data="synthetic" if data.synthetic else "prepared")
    set_ratio(row, STEP_ALONE, alone.items_per_sec)
    if task.backend == BASELINE_BACKEND:
        baselines["e2e"] = row["images_per_sec"]
    if baselines.get("e2e"):
        row["vs_torchvision"] = row["images_per_sec"] / baselines["e2e"]
    return row
