"""--tensorboard: the run's metrics as TensorBoard event files in RUNDIR/tb/.

metrics.jsonl stays the record; this is a view of it. The x axis of every tag is the
optimizer step (TensorBoard has one step axis per run):

    epoch/<key>   each numeric field of an epoch's metrics.jsonl record (test_acc,
                  train_loss, images_per_sec, ..., and epoch), at the epoch's last step
                  (record["step"] - 1: steps count from 0 and the record holds how many)
    step/lr       the lr of every optimizer step

The per-step lr costs the training step nothing: the schedule is a pure function of the
step (schedule.py), so the lrs an epoch used are recomputed and written when it ends.
A resumed run rebuilds the view from its checkpoint's history: the writer starts with
purge_step 0, so TensorBoard drops what earlier attempts wrote (an epoch whose checkpoint
was written but whose events were not, or events past the checkpoint), and the view
always holds exactly the epochs metrics.jsonl holds.
"""
from __future__ import annotations

import numbers
from pathlib import Path

from fastcifar.engine.run_dir import TB_DIR_NAME
from fastcifar.engine.schedule import lr_at
from fastcifar.extras import require_module

# Fields of a record that are the axis, not a scalar.
_AXIS_KEYS = ("step",)


def open_command(run_dir: str | Path) -> str:
    return f"tensorboard --logdir {Path(run_dir) / TB_DIR_NAME}"


class TensorBoardLog:
    """Writes each finished epoch's record and the lr of its steps."""

    def __init__(self, run_dir: str | Path, schedule, history: list[dict]):
        """`history`: the epochs a resumed run has done (empty for a new run)."""
        tensorboard = require_module("torch.utils.tensorboard", "tb", package="tensorboard")
        self.schedule = schedule
        self.writer = tensorboard.SummaryWriter(
            log_dir=str(Path(run_dir) / TB_DIR_NAME), purge_step=0 if history else None)
        first_step = 0
        for record in history:
            self.write_epoch(record, first_step)
            first_step = record["step"]

    def write_epoch(self, record: dict, first_step: int) -> None:
        """The epoch that took steps first_step .. record["step"] - 1."""
        for step in range(first_step, record["step"]):
            self.writer.add_scalar("step/lr", lr_at(self.schedule, step), step)
        last_step = record["step"] - 1  # the epoch's last step (steps count from 0)
        for key, value in record.items():
            if key not in _AXIS_KEYS and isinstance(value, numbers.Real):
                self.writer.add_scalar(f"epoch/{key}", value, last_step)
        self.writer.flush()  # one epoch's worth: a crash later loses nothing written

    def close(self) -> None:
        self.writer.close()
