"""A run directory as a usable model, read with the engine's own pieces.

config.json goes through TrainConfig.from_json (older schemas are migrated), checkpoint.pt
through load_checkpoint (torch.load with weights_only=True: plain tensors and containers,
never code from the file; older formats are migrated), and the model is built the way the
trainer built it (build_model: registry model, the run's options, channels_last as the
run had it). The weights are the EMA copy when the run used EMA: the model it evaluated.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from fastcifar.datasets import get_dataset
from fastcifar.engine.build import build_model
from fastcifar.engine.checkpoint import CHECKPOINT_NAME, load_checkpoint
from fastcifar.engine.config import TrainConfig
from fastcifar.engine.run_dir import CONFIG_NAME
from fastcifar.errors import UserError
from fastcifar.storage import read_manifest

DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainedRun:
    """A run's trained model (eval mode) and what using it takes."""

    run_dir: Path
    config: TrainConfig
    model: nn.Module
    class_names: list[str]
    epoch: int  # epochs the checkpoint has seen whole
    weights: str  # "ema" or "model": which weights of the checkpoint were loaded
    history: list[dict]  # the run's metrics records up to this checkpoint
    batch: int = 0  # batches of the next epoch (a run stopped mid-epoch), else 0

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def num_classes(self) -> int:
        return get_dataset(self.config.dataset).num_classes

    @property
    def mean(self) -> tuple[float, float, float]:
        return get_dataset(self.config.dataset).mean

    @property
    def std(self) -> tuple[float, float, float]:
        return get_dataset(self.config.dataset).std

    @property
    def position(self) -> str:
        """Where in the run the checkpoint was saved, in words."""
        if not self.batch:
            return f"epoch {self.epoch}"
        return f"epoch {self.epoch + 1} batch {self.batch}, saved mid-epoch"

    @property
    def recorded_test_acc(self) -> float | None:
        """The test accuracy the run recorded for these weights: after this checkpoint's
        epoch; None for a checkpoint saved mid-epoch (nothing was evaluated there)."""
        return self.history[-1]["test_acc"] if self.history and not self.batch else None


def load_model(run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """The trained model of a run as a plain nn.Module in eval mode, fp32.

    Attached: `class_names` (list), `normalization` ({"mean": ..., "std": ...}: the model
    expects images as (x / 255 - mean) / std, NCHW; it does not normalise by itself, the
    exported models do), `model_name` and `dataset`.
    """
    return open_run(run_dir, device).model


def open_run(run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> TrainedRun:
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    checkpoint = run_dir / CHECKPOINT_NAME
    if not checkpoint.exists():
        raise UserError(f"{run_dir} has no {CHECKPOINT_NAME} (the run stopped before its "
                        "first epoch ended)")
    state = load_checkpoint(checkpoint)
    weights = "ema" if config.ema and state.get("ema") else "model"
    tensors = state["ema"]["model"] if weights == "ema" else state["model"]
    device = resolve_device(device)
    # Building draws initial weights (then overwritten): the caller's CPU random stream is
    # left as it was. SyncBatchNorm is a training matter: plain BN in eval mode.
    with torch.random.fork_rng(devices=[]):
        model = build_model(dataclasses.replace(config, sync_bn=False), device)
    try:
        model.load_state_dict(tensors)
    except RuntimeError:
        raise UserError(f"{checkpoint} does not hold {config.model} weights for "
                        f"{config.dataset}, which {CONFIG_NAME} says it does") from None
    model.eval()
    class_names = read_class_names(config.dataset, config.data_dir)
    mean, std = get_dataset(config.dataset).mean, get_dataset(config.dataset).std
    model.class_names = class_names
    model.normalization = {"mean": mean, "std": std}
    model.model_name = config.model
    model.dataset = config.dataset
    return TrainedRun(run_dir=run_dir, config=config, model=model, class_names=class_names,
                      epoch=int(state["epoch"]), weights=weights,
                      history=list(state.get("history", [])), batch=int(state.get("batch", 0)))


def read_run_config(run_dir: Path) -> TrainConfig:
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a run directory (a folder written by fastcifar train)")
    path = run_dir / CONFIG_NAME
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{run_dir} holds no run ({CONFIG_NAME} is missing)") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    return TrainConfig.from_json(data, str(path))


def read_class_names(dataset: str, data_dir: str | None) -> list[str]:
    """The class names the prepared dataset's source gave, else the official ones."""
    spec = get_dataset(dataset)
    manifest = read_manifest(dataset, data_dir)
    names = (manifest or {}).get("class_names")
    if isinstance(names, list) and len(names) == spec.num_classes:
        return [str(n) for n in names]
    return list(spec.class_names)


def resolve_device(device: str | torch.device) -> torch.device:
    """"auto" is CUDA when there is a GPU, else the CPU; "cuda" without one is refused."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in DEVICES:
        raise UserError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available (try --device cpu)")
    return torch.device(device)
