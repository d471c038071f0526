"""A trainer's checkpoints: what is saved where the run stands, and how --resume gets it
back (the file format is checkpoint.py's, older formats are migrate.py's).

At an epoch boundary the ranks agree on everything but their RNG states (BN statistics
were just averaged), so the checkpoint holds rank 0's model, optimizer and EMA plus one
RNG state per rank. Mid-epoch (a signal stopped the run after batch k) each rank also has
its own partial metric sums and BN running statistics (DDP does not broadcast buffers:
they are averaged at the epoch's end), so those are gathered per rank too; with them a
resumed run ends bit for bit where an uninterrupted one would (deterministic kernels).

Only rank 0 reads or writes the file: on resume it reads it and broadcasts it.
"""
from __future__ import annotations

import torch

from fastcifar.engine import dist
from fastcifar.engine.checkpoint import (
    CHECKPOINT_NAME,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from fastcifar.errors import AgreedError, UserError

PARTIAL_KEYS = ("metrics", "buffers", "ema_buffers")


def save_checkpoint_of(trainer, train_seconds: float | None = None) -> None:
    """Every rank calls this (its own state is gathered); rank 0 writes. Mid-epoch
    (trainer.batch > 0) `train_seconds` is the epoch's training time so far."""
    ctx, mid_epoch = trainer.ctx, trainer.batch > 0
    mine = {"rng": rng_state(ctx.device)}
    if mid_epoch:
        ema_model = trainer.ema.model if trainer.ema else None
        mine.update(metrics=trainer.buffers.metrics.tolist(), buffers=_buffers(trainer.model),
                    ema_buffers=_buffers(ema_model) if ema_model is not None else None)
    ranks = dist.all_gather_objects(mine, ctx)
    if ctx.is_main:
        partial = None
        if mid_epoch:
            partial = {"train_seconds": train_seconds,
                       "ranks": [{k: r[k] for k in PARTIAL_KEYS} for r in ranks]}
        save_checkpoint(trainer.run_dir / CHECKPOINT_NAME, {
            "epoch": trainer.epoch,
            "batch": trainer.batch,
            "step": trainer.step,
            "model": trainer.model.state_dict(),
            "optimizer": trainer.optimizer.state_dict(),
            "ema": trainer.ema.state_dict() if trainer.ema else None,
            "lookahead": trainer.lookahead.state_dict() if trainer.lookahead else None,
            "grad_scaler": trainer.grad_scaler.state_dict() if trainer.grad_scaler else None,
            "rng": [r["rng"] for r in ranks],
            "partial_epoch": partial,
            "history": trainer.history,
        })
    trainer.saved_at = (trainer.epoch, trainer.batch)


def read_checkpoint(ctx, run_dir) -> dict:
    """Rank 0 reads the checkpoint and every rank receives it (no other machine needs
    the run directory); an unreadable one is the same line on every rank."""
    state = error = None
    if ctx.is_main:
        try:
            state = load_checkpoint(run_dir / CHECKPOINT_NAME)
        except UserError as exc:
            error = str(exc)
    state, error = dist.broadcast_object((state, error), ctx)
    if error is not None:
        raise AgreedError(error)
    if len(state["rng"]) != ctx.world_size:
        raise AgreedError(f"the checkpoint was written by {len(state['rng'])} processes; "
                          "resume it with as many")
    return state


def restore_shared(trainer, state: dict) -> None:
    """What every rank shares: rank 0's model, optimizer, EMA, lookahead, and the
    position."""
    trainer.model.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    if trainer.ema is not None and state.get("ema") is not None:
        trainer.ema.load_state_dict(state["ema"])
    if trainer.lookahead is not None and state.get("lookahead") is not None:
        trainer.lookahead.load_state_dict(state["lookahead"])
    if trainer.grad_scaler is not None and state.get("grad_scaler") is not None:
        trainer.grad_scaler.load_state_dict(state["grad_scaler"])
    trainer.epoch, trainer.batch, trainer.step = (int(state[k])
                                                  for k in ("epoch", "batch", "step"))
    trainer.saved_at = (trainer.epoch, trainer.batch)
    trainer.history = list(state["history"])


def restore_rank(trainer, state: dict) -> dict | None:
    """This rank's own state: its RNG and, mid-epoch, its BN buffers; returns its partial
    epoch ({"metrics", "train_seconds"}) or None at an epoch boundary. Call it after DDP
    is built (its construction may copy rank 0's module state to every rank)."""
    rank = trainer.ctx.rank
    partial, resumed = state["partial_epoch"], None
    if partial is not None:
        mine = partial["ranks"][rank]
        resumed = {"metrics": mine["metrics"], "train_seconds": partial["train_seconds"]}
        _load_buffers(trainer.model, mine["buffers"])
        if trainer.ema is not None:
            _load_buffers(trainer.ema.model, mine["ema_buffers"])
    set_rng_state(state["rng"][rank], trainer.ctx.device)
    return resumed


def position_in_words(epoch: int, batch: int) -> str | None:
    """Where a checkpoint stands ("epoch 2", "epoch 3, batch 5"); None before any."""
    if batch:
        return f"epoch {epoch + 1}, batch {batch}"
    return f"epoch {epoch}" if epoch else None


def _buffers(module) -> dict:
    """A CPU copy of a module's buffers by name."""
    return {name: b.detach().to("cpu", copy=True) for name, b in module.named_buffers()}


@torch.no_grad()
def _load_buffers(module, saved: dict) -> None:
    for name, b in module.named_buffers():
        b.copy_(saved[name])
