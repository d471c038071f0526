"""The run: processes, epochs, metrics, checkpoints, summary.

train(config) is the one entry point (train_from_options, the CLI's, resolves first). It
starts the processes the config asks for (one here; workers.launch_local for --gpus and
--nproc; torchrun.py under torchrun) and each runs run_process(): Trainer(ctx,
config).run() under StopSignals, then Trainer.close(), which releases the captured graph,
on every way out and before the caller leaves the process group.

Trainer.run(): build, restore (--resume; rank 0 reads the checkpoint for everyone), then
per epoch: train over the loader with the step runner, every log_every steps agreeing
with the other ranks whether to stop or whether the loss diverged (checks.py), evaluate,
all-reduce the metrics once, and (rank 0) write metrics.jsonl and the checkpoint;
summary.json comes last. A SIGTERM/SIGINT stops every rank after the same step: rank 0
saves a checkpoint recording the position inside the epoch, and --resume continues from
that batch with the same order and augmentation.
"""
from __future__ import annotations

import itertools
import json
import math
import shlex
import time
from pathlib import Path

import torch

from fastcifar.engine import build, dist, resume, torchrun
from fastcifar.engine.checkpoint import CHECKPOINT_NAME
from fastcifar.engine.checks import StepChecks
from fastcifar.engine.ema import EMA
from fastcifar.engine.epoch_end import EpochEnd
from fastcifar.engine.evaluate import evaluate
from fastcifar.engine.lookahead import Lookahead
from fastcifar.engine.optim import epoch_lr_scales
from fastcifar.engine.progress import EpochProgress, epoch_line, rates
from fastcifar.engine.resolve import resolve_config
from fastcifar.engine.run_dir import (
    CONFIG_NAME,
    SUMMARY_NAME,
    claimed_run_dir,
    seed_group_of,
    write_diverged_marker,
    write_json_atomic,
    write_metrics,
)
from fastcifar.engine.runtime import in_torchrun
from fastcifar.engine.schedule import build_schedule, lr_at
from fastcifar.engine.signals import StopRequested, StopSignals, exit_status, signal_name
from fastcifar.engine.step import SEEN
from fastcifar.engine.summary import state_checksum, summarize
from fastcifar.engine.target import target_summary
from fastcifar.engine.workers import launch_local
from fastcifar.errors import AgreedError, RunStopped, UserError
from fastcifar.pipelines.native import NativeLoader


class TrainingDiverged(AgreedError):
    """The loss became NaN or infinite (agreed by every rank after the same step); the
    last good checkpoint is kept."""


def train(config) -> dict | None:
    """Run training as `config` says; returns the summary (also in RUNDIR/summary.json;
    None on torchrun ranks other than 0)."""
    if in_torchrun():
        return torchrun.train(config, run_process)
    with claimed_run_dir(config) as run_dir:
        if config.world_size > 1:
            launch_local(run_worker, config.world_size, config.device, (config,),
                         graph=config.graph)
            return json.loads((run_dir / SUMMARY_NAME).read_text())
        return run_process(dist.DistContext.single(config.device), config)


def train_from_options(options) -> dict | None:
    """`fastcifar train`: resolve the user's options, then train. Under torchrun only rank
    0 reads a resumed run's files; it resolves for everyone (torchrun.py)."""
    if in_torchrun():
        return torchrun.train(options, run_process)
    return train(resolve_config(options))


def run_worker(ctx, config) -> None:
    """One spawned process of a local multi-process run (module level: picklable)."""
    run_process(ctx, config)


def run_process(ctx, config) -> dict | None:
    """This process's part of the run. The trainer is closed (its captured graph released)
    on every way out, before the caller leaves the process group."""
    with StopSignals() as signals:
        trainer = None
        try:
            trainer = Trainer(ctx, config)
            return trainer.run(signals)
        except StopRequested as stop:  # before training: nothing new to save
            saved = (f"; {resume_hint(config)}" if config.resume
                     else "; nothing was saved: run the same command again")
            raise RunStopped(f"stopped by {signal_name(stop.signum)} before training "
                             f"started{saved}", exit_status(stop.signum)) from None
        finally:
            if trainer is not None:
                trainer.close()


def resume_hint(config) -> str:
    """The command that continues this run; for a seed of a group, the whole group."""
    target = seed_group_of(config.out) or config.out
    return f"resume with: fastcifar train --resume --out {shlex.quote(str(target))}"


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
        # Built before the whitening init, as airbench builds its LookaheadState: the
        # first update blends ~1e-6 of the stem's initial filters into the frozen ones.
        self.lookahead = Lookahead(
            self.model, total_steps=self.schedule.total_steps, decay=config.lookahead_decay,
            every=config.lookahead_every) if config.lookahead else None
        # A checkpoint holds the initialised weights: a resumed run needs no data for them.
        resident = self.train_loader.images if isinstance(
            self.train_loader, NativeLoader) else None  # the split, on the device
        self.init_seconds = 0.0 if config.resume else build.init_from_data(
            config, self.model, device, resident)

        self.buffers, self.optimizer, self.grad_scaler = build.build_step_state(
            config, self.model, device)
        self.ema = EMA(self.model, config.ema_decay, config.ema_every) if config.ema else None

        # Position: completed epochs, batches of the next one, optimizer steps; where the
        # checkpoint on disk stands.
        self.epoch, self.batch, self.step, self.history = 0, 0, 0, []
        self.saved_at = (0, 0)
        self.partial_epoch = None  # this rank's sums of an epoch resumed mid-way
        state = resume.read_checkpoint(ctx, self.run_dir) if config.resume else None
        if state is not None:
            resume.restore_shared(self, state)
        self.runner = build.build_runner(config, ctx, self.model, self.optimizer,
                                         self.buffers, self.grad_scaler)
        # Restored last: building above may draw random numbers, the epochs must not see
        # them; this rank's own BN buffers go back after DDP's construction.
        if state is not None:
            self.partial_epoch = resume.restore_rank(self, state)
        else:
            torch.manual_seed(config.seed + ctx.rank)  # per-rank streams (drop-path)
        self.checks = StepChecks(ctx, self.buffers.metrics, config.log_every)

    def close(self) -> None:
        """Release the captured graph (see dist.shutdown for why it must go first)."""
        self.runner.close()

    # -- the run ---------------------------------------------------------------------

    def run(self, signals: StopSignals) -> dict | None:
        config = self.config
        signals.defer()  # from here on a signal stops the run at an agreed step boundary
        if self.ctx.is_main:
            # Written once everything is built: a run that could not start (missing data,
            # bad model option) leaves nothing behind that blocks the next attempt.
            if not config.resume:
                write_json_atomic(self.run_dir / CONFIG_NAME, config.to_json())
            write_metrics(self.run_dir, self.history)
        # TensorBoard and --stop-at-target (epoch_end.py)
        epoch_end = EpochEnd(config, self.run_dir, self.schedule, is_main=self.ctx.is_main,
                             history=self.history)
        try:
            while self.epoch < self.num_epochs and not epoch_end.should_stop(self.history):
                record = self._train_epoch(signals)
                self.history.append(record)
                self.epoch, self.batch = self.epoch + 1, 0
                self._save()
                if self.ctx.is_main:
                    write_metrics(self.run_dir, self.history)
                    print(epoch_line(record, self.num_epochs), flush=True)
                epoch_end(self.history)
                if self.epoch < self.num_epochs:
                    # A signal during evaluation or the save: stop here, the checkpoint is in.
                    verdict = self.checks.now(signals.received)
                    if verdict.stop_signal is not None:
                        self._stop(verdict.stop_signal)
        finally:
            epoch_end.close()
        return self._finish()

    def _train_epoch(self, signals: StopSignals) -> dict:
        config, ctx, buffers = self.config, self.ctx, self.buffers
        self.train_loader.set_epoch(self.epoch, start_batch=self.batch)
        for group, scale in epoch_lr_scales(config, self.epoch).items():
            self.optimizer.set_lr_scale(group, scale)
        # The last epoch of a fractional run stops at the schedule's end.
        steps = min(self.steps_per_epoch,
                    self.schedule.total_steps - self.step + self.batch)
        buffers.reset_metrics()
        seconds_before = 0.0
        if self.partial_epoch is not None:  # resumed mid-epoch: this rank's sums so far
            buffers.metrics.copy_(torch.tensor(self.partial_epoch["metrics"],
                                               dtype=torch.float64))
            seconds_before = self.partial_epoch["train_seconds"]
            self.partial_epoch = None
        progress = EpochProgress(
            epoch=self.epoch, epochs=self.num_epochs, steps=steps,
            metrics=buffers.metrics, images_per_step=config.batch_size,
            log_every=config.log_every, enabled=config.progress and ctx.is_main,
            first_batch=self.batch,
        )
        lr, stop_signal = self.schedule.peak_lr, None
        start = time.perf_counter()
        batches = iter(self.train_loader)
        try:
            for index, (images, targets) in enumerate(
                    itertools.islice(batches, steps - self.batch), start=self.batch):
                lr = self.train_batch(images, targets)
                self.batch = index + 1
                progress.step(index, lr)
                verdict = self.checks.after_step(self.step, signals.received)
                if verdict is None:
                    continue
                if verdict.diverged:
                    self._diverged(verdict.loss)
                if verdict.stop_signal is not None and self.batch < steps:
                    stop_signal = verdict.stop_signal
                    break
        finally:
            progress.close()
            if hasattr(batches, "close"):
                batches.close()  # a loader's threads stop now, not when collected
        self._synchronize()
        train_seconds = seconds_before + time.perf_counter() - start
        if stop_signal is not None:
            self._stop(stop_signal, train_seconds)
        self.checks.discard()
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
        path, saved = self.run_dir / CHECKPOINT_NAME, resume.position_in_words(*self.saved_at)
        kept = f"the last good checkpoint is {path} ({saved})" if saved else \
            "no checkpoint was written"
        message = (f"training loss became {value} in epoch {self.epoch + 1} (step {self.step}); "
                   f"stopped, {kept}; try a lower --lr or a longer --warmup-epochs")
        if self.ctx.is_main:  # `fastcifar runs` reads it: the state "diverged"
            write_diverged_marker(self.run_dir, self.epoch + 1, self.step, message)
        raise TrainingDiverged(message)

    def _stop(self, signum: int, train_seconds: float | None = None) -> None:
        """Every rank stops after the same step: save there (mid-epoch, or nothing new at
        an epoch boundary), wait until rank 0 has written, and leave together."""
        if self.batch:
            self._save(train_seconds)
        dist.barrier(self.ctx)  # no rank reports "stopped" before the checkpoint is in
        epoch = self.epoch + 1 if self.batch else self.epoch
        raise RunStopped(f"stopped at epoch {epoch} step {self.step}; "
                         f"{resume_hint(self.config)}", exit_status(signum))

    def _synchronize(self) -> None:
        if self.ctx.device.type == "cuda":
            torch.cuda.synchronize(self.ctx.device)

    # -- checkpoints (resume.py) -----------------------------------------------------

    def _save(self, train_seconds: float | None = None) -> None:
        resume.save_checkpoint_of(self, train_seconds)

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
