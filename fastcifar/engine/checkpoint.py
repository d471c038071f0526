"""Checkpoints: everything needed to continue a run exactly, written atomically.

One file, RUNDIR/checkpoint.pt, replaced after every epoch and when a signal stops the
run mid-epoch: written to a temporary file in the same folder, fsynced, then
os.replace'd over the old one, so a crash at any point leaves either the previous
checkpoint or the new one, never a torn file. A failed write (disk full) is one line and
keeps the previous checkpoint.

Contents (plain tensors, dicts, lists and numbers, so torch.load(weights_only=True)
reads it): format (see migrate.py: older checkpoints are migrated on load), config_schema
(the config.json schema of the run), epoch (completed epochs), batch (batches of the
next epoch already trained: 0 at an epoch boundary), step (optimizer steps taken),
model, optimizer, ema (or None), lookahead (or None), grad_scaler (or None), rng (one
entry per rank: CPU and CUDA generator states), partial_epoch (None at an epoch
boundary; mid-epoch: the epoch's train_seconds so far and, per rank, its metric sums and
the BN buffers of the model and the EMA, which differ between ranks until the epoch's end
averages them) and history (the metrics.jsonl records so far).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from fastcifar.atomic import atomic_write
from fastcifar.engine.migrate import CHECKPOINT_FORMAT, CONFIG_SCHEMA_VERSION, migrate_checkpoint
from fastcifar.engine.run_dir import CHECKPOINT_NAME
from fastcifar.errors import UserError

__all__ = ["CHECKPOINT_NAME", "load_checkpoint", "save_checkpoint", "rng_state",
           "set_rng_state"]


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    try:
        with atomic_write(path, "wb") as f:
            torch.save({"format": CHECKPOINT_FORMAT, "config_schema": CONFIG_SCHEMA_VERSION,
                        **state}, f)
    except (OSError, RuntimeError) as exc:
        # torch's zip writer turns a failed write (a full disk) into a RuntimeError
        # ("unexpected pos"); the OSError it hit is its context.
        cause = _os_error(exc)
        if cause is None:
            raise
        raise UserError(f"cannot write checkpoint {path}: {cause.strerror or cause} (the "
                        "previous checkpoint, if any, is kept)") from None


def _os_error(exc: BaseException | None) -> OSError | None:
    while exc is not None and not isinstance(exc, OSError):
        exc = exc.__context__
    return exc


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    path = Path(path)
    if not path.exists():
        raise UserError(f"no checkpoint to resume from: {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # a torn or foreign file: say which, not torch's advice
        # (torch's message suggests weights_only=False, which would run the file's code)
        raise UserError(f"cannot read checkpoint {path}: not a readable torch checkpoint "
                        f"({type(exc).__name__})") from None
    if not isinstance(state, dict) or "format" not in state:
        raise UserError(f"{path} is not a fastcifar checkpoint")
    return migrate_checkpoint(state, str(path))


def rng_state(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
