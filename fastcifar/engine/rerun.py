"""--config RUNDIR/config.json: a new run with the settings of a saved one.

The saved config (any schema version: TrainConfig.from_json migrates it) supplies every
option, as if the user had typed each; the flags given now override it. So the rerun
goes through the same resolution as any run (resolve.py) and, with the same seed on the
same machine, repeats the original epoch for epoch. What it does not take over: where
the original ran (out, resume, force) and what is derived again (peak_lr from base_lr).

Two choices keep a partial override meaningful:
- --epochs without --milestones / --warmup-epochs rescales the saved ones, as a recipe's
  are rescaled (a 300-epoch schedule's milestones would lie outside a 30-epoch run);
- another --device drops the saved CUDA-graph choice and process count, which belong to
  the machine the original ran on (the new device's defaults apply unless given).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Mapping

from fastcifar.engine.config import TrainConfig
from fastcifar.engine.run_dir import CONFIG_NAME, SEEDS_NAME
from fastcifar.errors import UserError

# Never taken from the saved run: this run's own.
_NOT_TAKEN = frozenset({"out", "resume", "force", "from_config", "peak_lr",
                        "reference_batch_size"})
_MACHINE_FIELDS = ("graph", "world_size")


def config_path(path: str) -> Path:
    """The config.json that `--config PATH` names (a run directory names its own)."""
    given = Path(path)
    if given.is_dir():
        if (given / SEEDS_NAME).exists() and not (given / CONFIG_NAME).exists():
            raise UserError(f"--config: {given} is a seed group; give one of its runs, e.g. "
                            f"{given / 'seed-0' / CONFIG_NAME}")
        given = given / CONFIG_NAME
    return given


def read_config(path: str) -> tuple[Path, TrainConfig]:
    """(the file, the TrainConfig it holds) for `--config PATH`; one line if unreadable."""
    file = config_path(path)
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError:
        raise UserError(f"--config: {file} does not exist") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"--config: cannot read {file}: {exc}") from None
    return file, TrainConfig.from_json(data, what=str(file))


def options_from_saved(saved: TrainConfig, options: Mapping[str, Any]) -> dict:
    """The options that resolve `saved` again, with `options` (the flags given now) over
    them."""
    taken = {k: v for k, v in dataclasses.asdict(saved).items() if k not in _NOT_TAKEN}
    epochs = options.get("epochs", saved.epochs)
    if epochs != saved.epochs:
        ratio = epochs / saved.epochs
        taken["milestones"] = tuple(m * ratio for m in saved.milestones)
        taken["warmup_epochs"] = saved.warmup_epochs * ratio
    if options.get("device") not in (None, "auto", saved.device):
        for key in _MACHINE_FIELDS:
            taken.pop(key)
    if "amp" in options or "dtype" in options:
        taken.pop("dtype")
    if "gpus" in options or "nproc" in options:
        taken.pop("world_size", None)
    if (_policy_given(options) or saved.augment_policy) != "randaugment":
        taken.pop("ra_n")  # RandAugment's knobs only go with it (else: as if given now)
        taken.pop("ra_m")
    return {**taken, **options}


def _policy_given(options: Mapping[str, Any]) -> str | None:
    """The augmentation policy the flags given now ask for (None: not given)."""
    if "autoaugment" in options:
        return "autoaugment" if options["autoaugment"] else "none"
    return options.get("augment_policy")
