"""The runs under some folders, read from their files alone (no torch): `fastcifar runs`.

A folder holding config.json is a run; one holding seeds.json is a seed group, whose
seed-<k>/ runs are read as part of it (not listed on their own). Other folders are
searched, up to MAX_DEPTH levels down.

The state of a run, from its files (the first rule that holds):
  running   a live process holds RUNDIR/run.lock (the kernel drops the lock when its
            process ends, however it ends, so this never goes stale)
  finished  summary.json exists (written last; --stop-at-target also finishes a run)
  diverged  diverged.json exists (the loss became NaN/inf; the error is in it)
  stopped   anything else: interrupted (a checkpoint and no summary; --resume continues
            it) or ended in its first epoch (no checkpoint)
A seed group is running when its lock or a seed's is held, finished when its own
summary.json exists, diverged when a seed diverged, and stopped otherwise.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from fastcifar.engine.config import TrainConfig
from fastcifar.engine.run_dir import (
    CONFIG_NAME,
    DIVERGED_NAME,
    METRICS_NAME,
    SEEDS_NAME,
    SUMMARY_NAME,
)
from fastcifar.engine.run_lock import is_running
from fastcifar.engine.target import first_reaching
from fastcifar.errors import UserError
from fastcifar.experiments.statistics import summarize_seeds

MAX_DEPTH = 4
STATES = ("running", "finished", "diverged", "stopped")


def find_runs(dirs: Iterable[str]) -> list[tuple[str, Path]]:
    """(name, folder) of every run and seed group under `dirs`; a name is the folder's
    path relative to the directory it was found under (its own name if given itself)."""
    found: dict[Path, str] = {}
    for given in dirs:
        root = Path(given)
        if not root.is_dir():
            what = "is not a folder" if root.exists() else "no such folder"
            raise UserError(f"{given}: {what} (give folders that hold runs)")
        for folder in _walk(root, MAX_DEPTH):
            name = folder.name if folder == root else str(folder.relative_to(root))
            found.setdefault(folder.resolve(), name)
    return sorted(((name, Path(path)) for path, name in found.items()),
                  key=lambda item: item[0])


def _walk(folder: Path, depth: int):
    if (folder / SEEDS_NAME).exists() or (folder / CONFIG_NAME).exists():
        yield folder
        return
    if depth == 0:
        return
    try:
        children = sorted(p for p in folder.iterdir() if p.is_dir())
    except OSError:
        return
    for child in children:
        yield from _walk(child, depth - 1)


def describe_run(name: str, folder: Path) -> dict:
    """One row of the table for a run folder."""
    config = _read_config(folder / CONFIG_NAME)
    records = read_records(folder)
    reached = (first_reaching(records, config.target_acc)
               if config.target_acc is not None else None)
    return {
        **_settings(name, folder, "run", config),
        "epochs_done": len(records),
        "epochs_planned": config.epochs,
        "seeds": None,
        "test_acc": records[-1]["test_acc"] if records else None,
        "test_acc_std": None,
        "images_per_sec": _images_per_sec(records),
        "time_s": sum(r["epoch_seconds"] + r.get("eval_seconds", 0.0) for r in records),
        "epoch_to_target": reached[0] if reached else None,
        "time_to_target_s": reached[1] if reached else None,
        "targets_reached": None,
        "state": run_state(folder),
        "test_acc_per_epoch": [r["test_acc"] for r in records],
    }


def describe_group(name: str, folder: Path) -> dict:
    """One row for a seed group: statistics over its finished seeds."""
    data = _read_json(folder / SEEDS_NAME)
    config = TrainConfig.from_json(data.get("config", {}), what=str(folder / SEEDS_NAME))
    seeds = [int(s) for s in data.get("seeds", [])]
    runs = {seed: describe_run(f"{name}/seed-{seed}", folder / f"seed-{seed}")
            for seed in seeds if (folder / f"seed-{seed}" / CONFIG_NAME).exists()}
    finished = {seed: _read_json(folder / f"seed-{seed}" / SUMMARY_NAME)
                for seed, run in runs.items() if run["state"] == "finished"}
    stats = summarize_seeds(finished, config.target_acc)
    rates = [run["images_per_sec"] for run in runs.values() if run["images_per_sec"]]
    return {
        **_settings(name, folder, "seed group", config),
        "epochs_done": sum(run["epochs_done"] for run in runs.values()),
        "epochs_planned": config.epochs * len(seeds),
        "seeds": {"finished": len(finished), "total": len(seeds)},
        "test_acc": stats["test_acc"]["mean"],
        "test_acc_std": stats["test_acc"]["std"],
        "images_per_sec": sum(rates) / len(rates) if rates else None,
        "time_s": sum(run["time_s"] for run in runs.values()),
        "epoch_to_target": stats["epoch_to_target"]["mean"] if stats["epoch_to_target"] else None,
        "time_to_target_s": (stats["time_to_target_s"]["mean"]
                             if stats["time_to_target_s"] else None),
        "targets_reached": stats["time_to_target_s"]["n"] if stats["time_to_target_s"] else None,
        "state": _group_state(folder, [run["state"] for run in runs.values()]),
        "test_acc_per_epoch": {str(seed): run["test_acc_per_epoch"] for seed, run in runs.items()},
    }


def collect_runs(dirs: Iterable[str], warn=print) -> list[dict]:
    """Rows for every run and group under `dirs`; an unreadable folder is skipped with
    one line through `warn`."""
    rows = []
    for name, folder in find_runs(dirs):
        try:
            describe = describe_group if (folder / SEEDS_NAME).exists() else describe_run
            rows.append(describe(name, folder))
        except (UserError, OSError, ValueError, KeyError, TypeError) as exc:
            warn(f"skipped {folder}: {exc}")
    return rows


def run_state(folder: Path) -> str:
    if is_running(folder):
        return "running"
    if (folder / SUMMARY_NAME).exists():
        return "finished"
    if (folder / DIVERGED_NAME).exists():
        return "diverged"
    return "stopped"


def _group_state(folder: Path, seed_states: list[str]) -> str:
    if is_running(folder) or "running" in seed_states:
        return "running"
    if (folder / SUMMARY_NAME).exists():
        return "finished"
    return "diverged" if "diverged" in seed_states else "stopped"


def read_records(folder: Path) -> list[dict]:
    path = folder / METRICS_NAME
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []
    except ValueError as exc:
        raise UserError(f"cannot read {path}: {exc}") from None


def _settings(name: str, folder: Path, kind: str, config: TrainConfig) -> dict:
    return {"name": name, "path": os.fspath(folder), "kind": kind, "model": config.model,
            "dataset": config.dataset, "recipe": config.recipe,
            "target_acc": config.target_acc}


def _images_per_sec(records: list[dict]) -> float | None:
    seconds = sum(r["epoch_seconds"] for r in records)
    if not seconds:
        return None
    return sum(r["images_per_sec"] * r["epoch_seconds"] for r in records) / seconds


def _read_config(path: Path) -> TrainConfig:
    return TrainConfig.from_json(_read_json(path), what=str(path))


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
