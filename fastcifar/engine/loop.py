"""The run: processes, epochs, metrics, checkpoints, summary.

train(config) is the one entry point. It starts the processes the config asks for (see
dist.py) and each runs Trainer(ctx, config).run(): build, restore (--resume), then per
epoch: train over the loader with the step runner, evaluate, all-reduce the metrics once,
and (rank 0) write metrics.jsonl and the checkpoint; summary.json comes last.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import time
from pathlib import Path

import torch

from fastcifar.engine import build, dist
from fastcifar.engine.checkpoint import (
    CHECKPOINT_NAME,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from fastcifar.engine.ema import EMA
from fastcifar.engine.epoch_end import EpochEnd
from fastcifar.engine.evaluate import evaluate
from fastcifar.engine.lookahead import Lookahead
from fastcifar.engine.optim import epoch_lr_scales
from fastcifar.engine.progress import EpochProgress, epoch_line, rates
from fastcifar.engine.run_dir import (
    CONFIG_NAME,
    SUMMARY_NAME,
    claimed_run_dir,
    write_diverged_marker,
    write_json_atomic,
    write_metrics,
)
from fastcifar.engine.runtime import in_torchrun
from fastcifar.engine.schedule import build_schedule, lr_at
from fastcifar.engine.step import SEEN
from fastcifar.engine.target import target_summary
from fastcifar.errors import UserError
from fastcifar.models import count_params


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def train(config) -> dict:
    """Run training as `config` says; returns the summary (also in RUNDIR/summary.json)."""
    if in_torchrun():
        ctx = dist.init_from_env(config.device, graph=config.graph)
        try:
            # Each process resolved its own config; a default run directory carries a
            # timestamp, so everyone takes rank 0's.
            config = dataclasses.replace(config, out=dist.all_gather_objects(config.out, ctx)[0])
            with claimed_run_dir(config, prepare=ctx.is_main):
                dist.barrier(ctx)
                summary = Trainer(ctx, config).run()
        except BaseException:
            dist.shutdown(ctx, clean=False)
            raise
        dist.shutdown(ctx)
        return summary
    with claimed_run_dir(config) as run_dir:
        if config.world_size > 1:
            dist.launch_local(run_worker, config.world_size, config.device, (config,),
                              graph=config.graph)
            return json.loads((run_dir / SUMMARY_NAME).read_text())
        return Trainer(dist.DistContext.single(config.device), config).run()

def run_worker(ctx, config) -> None:
    """One spawned process of a local multi-process run (module level: picklable)."""
    Trainer(ctx, config).run()


class Trainer:
    """Everything one process holds during a run."""

    def __init__(self, ctx, config):
        self.ctx, self.config = ctx, config
        self.run_dir = Path(config.out)
        device = ctx.device
        build.configure_backends(config, device)
        torch.manual_seed(config.seed)  # the same initial weights on every rank

        self.model = build.build_model(config, device)
        self.train_loader, self.test_loader = build.build_loaders(config, ctx)
        self.steps_per_epoch = len(self.train_loader)
        if self.steps_per_epoch == 0:
            raise UserError(
                f"--batch-size {config.batch_size} is larger than this process's share of "
                f"the {config.dataset} training set: no full batch per epoch"
            )
        self.schedule = build_schedule(config, self.steps_per_epoch)
        # Fractional epochs (airbench's 9.9): the last epoch stops at the schedule's end.
        self.num_epochs = math.ceil(self.schedule.total_steps / self.steps_per_epoch)
        # A checkpoint holds the initialised weights: a resumed run needs no data for them.
        self.init_seconds = 0.0 if config.resume else build.init_from_data(
            config, self.model, device)

        self.buffers, self.optimizer, self.grad_scaler = build.build_step_state(
            config, self.model, device)
        self.ema = EMA(self.model, config.ema_decay, config.ema_every) if config.ema else None
        self.lookahead = Lookahead(
            self.model, total_steps=self.schedule.total_steps, decay=config.lookahead_decay,
            every=config.lookahead_every) if config.lookahead else None

        self.epoch, self.step, self.history = 0, 0, []
        rng = None
        if config.resume:
            rng = self._restore(load_checkpoint(self.run_dir / CHECKPOINT_NAME))
        self.runner = build.build_runner(config, ctx, self.model, self.optimizer,
                                         self.buffers, self.grad_scaler)
        # Restored last: building above may draw random numbers, the epochs must not see it.
        if rng is not None:
            set_rng_state(rng, device)
        else:
            torch.manual_seed(config.seed + ctx.rank)  # per-rank streams (drop-path)

    # -- the run ---------------------------------------------------------------------

    def run(self) -> dict | None:
        config = self.config
        if self.ctx.is_main:
            # Written once everything is built: a run that could not start (missing data,
            # bad model option) leaves nothing behind that blocks the next attempt.
            if not config.resume:
                write_json_atomic(self.run_dir / CONFIG_NAME, config.to_json())
            write_metrics(self.run_dir, self.history)
        # TensorBoard and --stop-at-target (epoch_end.py)
        epoch_end = EpochEnd(config, self.run_dir, self.schedule, is_main=self.ctx.is_main,
                             history=self.history)
        while self.epoch < self.num_epochs and not epoch_end.should_stop(self.history):
            record = self._train_epoch()
            self.history.append(record)
            self.epoch += 1
            self._save()
            if self.ctx.is_main:
                write_metrics(self.run_dir, self.history)
                print(epoch_line(record, self.num_epochs), flush=True)
            epoch_end(self.history)
        epoch_end.close()
        return self._finish()

    def _train_epoch(self) -> dict:
        config, ctx, buffers = self.config, self.ctx, self.buffers
        self.train_loader.set_epoch(self.epoch)
        for group, scale in epoch_lr_scales(config, self.epoch).items():
            self.optimizer.set_lr_scale(group, scale)
        steps = min(self.steps_per_epoch, self.schedule.total_steps - self.step)
        buffers.reset_metrics()
        progress = EpochProgress(
            epoch=self.epoch, epochs=self.num_epochs, steps=steps,
            metrics=buffers.metrics, images_per_step=config.batch_size,
            log_every=config.log_every, enabled=config.progress and ctx.is_main,
        )
        lr = self.schedule.peak_lr
        start = time.perf_counter()
        cut_short = steps < self.steps_per_epoch  # the last epoch of a fractional run
        batches = None
        try:
            batches = iter(self.train_loader)
            for index, (images, targets) in enumerate(
                    itertools.islice(batches, steps) if cut_short else batches):
                lr = self.train_batch(images, targets)
                running_loss = progress.step(index, lr)
                if running_loss is not None and not ctx.distributed and \
                        not math.isfinite(running_loss):
                    self._diverged(running_loss)
        finally:
            progress.close()
            if cut_short and hasattr(batches, "close"):
                batches.close()  # stop the loader's generator now, not when collected
        self._synchronize()
        train_seconds = time.perf_counter() - start
        train = dist.all_reduce_sum(buffers.metrics.clone(), ctx).tolist()
        with torch.no_grad():
            dist.average_buffers(self.model, ctx)
            if self.ema is not None:
                dist.average_buffers(self.ema.model, ctx)

        start = time.perf_counter()
        test = evaluate(self.ema.model if self.ema else self.model, self.test_loader,
                        device=ctx.device, dtype=config.dtype, tta=config.tta,
                        channels_last=config.channels_last)
        test = dist.all_reduce_sum(test, ctx).tolist()
        eval_seconds = time.perf_counter() - start

        train_loss, train_acc = rates(train)
        test_loss, test_acc = rates(test)
        if not math.isfinite(train_loss) or not math.isfinite(test_loss):
            self._diverged(train_loss if not math.isfinite(train_loss) else test_loss)
        return {
            "epoch": self.epoch + 1,
            "step": self.step,
            "lr": lr,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "test_loss": test_loss,
            "test_acc": test_acc,
            "images_per_sec": train[SEEN] / max(train_seconds, 1e-9),
            "epoch_seconds": train_seconds,
            "eval_seconds": eval_seconds,
        }

    def train_batch(self, images, targets) -> float:
        """One optimizer step on a loader batch; returns the lr it used. No host sync."""
        lr = lr_at(self.schedule, self.step)
        self.buffers.lr.fill_(lr)  # a kernel argument: no host read, safe between replays
        self.runner(images, targets)
        self.step += 1
        if self.ema is not None:
            self.ema.maybe_update(self.step - 1)
        if self.lookahead is not None:
            self.lookahead.maybe_update(self.step)
        return lr

    def _diverged(self, value: float) -> None:
        path = self.run_dir / CHECKPOINT_NAME
        kept = (f"the last good checkpoint is {path} (epoch {self.epoch})" if self.epoch
                else "no checkpoint was written")
        message = (f"training loss became {value} in epoch {self.epoch + 1} (step {self.step}); "
                   f"stopped, {kept}; try a lower --lr or a longer --warmup-epochs")
        if self.ctx.is_main:  # `fastcifar runs` reads it: the state "diverged"
            write_diverged_marker(self.run_dir, self.epoch + 1, self.step, message)
        raise TrainingDiverged(message)

    def _synchronize(self) -> None:
        if self.ctx.device.type == "cuda":
            torch.cuda.synchronize(self.ctx.device)

    # -- checkpoints -------------------------------------------------------------------

    def _save(self) -> None:
        rngs = dist.all_gather_objects(rng_state(self.ctx.device), self.ctx)
        if not self.ctx.is_main:
            return
        save_checkpoint(self.run_dir / CHECKPOINT_NAME, {
            "epoch": self.epoch,
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "lookahead": self.lookahead.state_dict() if self.lookahead else None,
            "grad_scaler": self.grad_scaler.state_dict() if self.grad_scaler else None,
            "rng": rngs,
            "history": self.history,
        })

    def _restore(self, state: dict) -> dict:
        """Load a checkpoint into the built objects; returns this rank's RNG state."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        if self.lookahead is not None and state.get("lookahead") is not None:
            self.lookahead.load_state_dict(state["lookahead"])
        if self.grad_scaler is not None and state.get("grad_scaler") is not None:
            self.grad_scaler.load_state_dict(state["grad_scaler"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.history = list(state["history"])
        rngs = state["rng"]
        if len(rngs) != self.ctx.world_size:
            raise UserError(
                f"the checkpoint was written by {len(rngs)} processes; resume it with as many"
            )
        return rngs[self.ctx.rank]

    # -- the end ---------------------------------------------------------------------

    def _finish(self) -> dict | None:
        checksums = dist.all_gather_objects(state_checksum(self.model), self.ctx)
        if not self.ctx.is_main:
            return None
        summary = summarize(self.config, self.history, self.model)
        summary.update(target_summary(self.config, self.history))
        summary["init_seconds"] = self.init_seconds
        summary["param_checksums"] = checksums
        summary["ranks_in_sync"] = len(set(checksums)) == 1
        write_json_atomic(self.run_dir / SUMMARY_NAME, summary)
        print(f"done: test acc {100 * summary['test_acc']:.2f}% "
              f"(best {100 * summary['best_test_acc']:.2f}% at epoch {summary['best_epoch']}); "
              f"run in {self.run_dir}", flush=True)
        return summary


def summarize(config, history: list[dict], model) -> dict:
    last = history[-1]
    best = max(history, key=lambda r: r["test_acc"])
    train_seconds = sum(r["epoch_seconds"] for r in history)
    images = sum(r["images_per_sec"] * r["epoch_seconds"] for r in history)
    return {
        "model": config.model,
        "dataset": config.dataset,
        "recipe": config.recipe,
        "epochs": last["epoch"],
        "steps": last["step"],
        "test_acc": last["test_acc"],
        "test_loss": last["test_loss"],
        "train_acc": last["train_acc"],
        "train_loss": last["train_loss"],
        "best_test_acc": best["test_acc"],
        "best_epoch": best["epoch"],
        "train_seconds": train_seconds,
        "images_per_sec": images / max(train_seconds, 1e-9),
        "params": count_params(model),
        "device": config.device,
        "world_size": config.world_size,
        "dtype": config.dtype,
        "global_batch_size": config.batch_size,
        "peak_lr": config.peak_lr,
    }


def state_checksum(model) -> str:
    """sha256 of every parameter and buffer (layout-independent): equal across ranks
    exactly when their models are bit-identical."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
