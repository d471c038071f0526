"""The run directory: what is in it, when it may be (re)used, and atomic JSON writes.

    RUNDIR/config.json     the resolved TrainConfig with its schema_version, the lr rule
                           and the per-rank batch (--resume reads it back, migrate.py)
    RUNDIR/metrics.jsonl   one JSON object per finished epoch
    RUNDIR/checkpoint.pt   the latest epoch's checkpoint (see checkpoint.py)
    RUNDIR/summary.json    written last: its presence means the run finished
    RUNDIR/diverged.json   the loss became NaN/inf: where, and the error (removed when
                           the run is resumed or started over)
    RUNDIR/tb/             TensorBoard event files (--tensorboard, see tensorboard.py)
    RUNDIR/run.lock        held while a process trains here (run_lock.py)

A seed group (--seeds, fastcifar/experiments/seeds.py) is a folder with seeds.json and
one run directory per seed, seed-<k>/; its summary.json holds the statistics over seeds.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping

from fastcifar.atomic import atomic_write
from fastcifar.engine.run_lock import LOCK_NAME, holding_run_lock
from fastcifar.errors import UserError

# The run directory's names: plain strings, so readers of run folders (`fastcifar runs`)
# need not load torch (checkpoint.py, which does, imports its name from here).
CONFIG_NAME = "config.json"
CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"
SUMMARY_NAME = "summary.json"
DIVERGED_NAME = "diverged.json"
TB_DIR_NAME = "tb"
SEEDS_NAME = "seeds.json"
RUN_FILES = (CONFIG_NAME, METRICS_NAME, CHECKPOINT_NAME, SUMMARY_NAME, DIVERGED_NAME)


def seed_group_of(run_dir: str | os.PathLike) -> Path | None:
    """The seed group (--seeds) a run directory belongs to, or None."""
    parent = Path(run_dir).parent
    return parent if (parent / SEEDS_NAME).exists() else None


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_write(path) as f:
        f.write(text)


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def write_metrics(run_dir: Path, records: Iterable[Mapping]) -> None:
    """Rewrite metrics.jsonl from the full history (atomic; a resumed run's file then
    holds exactly the epochs its checkpoint has seen)."""
    write_text_atomic(run_dir / METRICS_NAME, "".join(json.dumps(r) + "\n" for r in records))


def write_diverged_marker(run_dir: Path, epoch: int, step: int, message: str) -> None:
    write_json_atomic(run_dir / DIVERGED_NAME, {"epoch": epoch, "step": step,
                                                "error": message})


def read_saved_config(run_dir: str | os.PathLike) -> dict:
    """The JSON object of a run's config.json, as written (for --resume)."""
    path = Path(run_dir) / CONFIG_NAME
    try:
        saved = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"--resume: {run_dir} holds no run ({CONFIG_NAME} is missing)") from None
    except ValueError as exc:
        raise UserError(f"--resume: cannot read {path}: {exc}") from None
    return saved


def check_run_dir(config) -> Path:
    """Raise UserError unless `config` may use its run directory; changes nothing.

    A finished run (summary.json) is never overwritten without --force; nor is an
    unfinished one with a checkpoint, which --resume continues. A run stopped before its
    first checkpoint has nothing to continue: it starts over. A seed group's folder is
    not a run.
    """
    run_dir = Path(config.out)
    if (run_dir / SEEDS_NAME).exists():
        raise UserError(f"{run_dir} holds a seed group ({SEEDS_NAME}); continue it with "
                        "--resume --out on the group, or choose another --out")
    finished = (run_dir / SUMMARY_NAME).exists()
    has_run = (run_dir / CHECKPOINT_NAME).exists() or finished
    if config.resume:
        if finished:
            raise UserError(
                f"{run_dir} has already finished (summary.json exists); nothing to resume"
            )
        if not (run_dir / CHECKPOINT_NAME).exists():
            raise UserError(
                f"--resume: {run_dir} has no checkpoint yet (stopped in its first epoch); "
                "start it again without --resume"
            )
    elif has_run and not config.force:
        if finished:
            raise UserError(
                f"{run_dir} holds a finished run (summary.json exists); pass --force to "
                "overwrite it or choose another --out"
            )
        raise UserError(
            f"{run_dir} holds an unfinished run; pass --resume to continue it or --force "
            "to start over"
        )
    return run_dir


def prepare_run_dir(config) -> Path:
    """check_run_dir(config), then make the folder ready: created if needed and, for a
    new run, without the previous run's files (--force, or a run stopped before its
    first checkpoint); a resumed run loses only its diverged marker (it runs again)."""
    run_dir = check_run_dir(config)
    if config.resume:
        (run_dir / DIVERGED_NAME).unlink(missing_ok=True)
        return run_dir
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create run directory {run_dir}: {exc.strerror}") from None
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / TB_DIR_NAME, ignore_errors=True)
    return run_dir


@contextlib.contextmanager
def claimed_run_dir(config, prepare: bool = True):
    """prepare_run_dir(config) (when `prepare`: the main process), yielding the folder; a
    run that fails before writing anything leaves no empty folder it created behind."""
    run_dir = Path(config.out)
    created = prepare and not run_dir.exists()
    try:
        # Held for the whole run by the main process: marks the run as live (run_lock.py).
        with holding_run_lock(run_dir) if prepare else contextlib.nullcontext():
            if prepare:
                prepare_run_dir(config)
            yield run_dir
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                if [p.name for p in run_dir.iterdir()] == [LOCK_NAME]:
                    (run_dir / LOCK_NAME).unlink()
                run_dir.rmdir()  # only succeeds on an empty folder
        raise
