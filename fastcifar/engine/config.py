"""TrainConfig: every choice a training run makes, resolved once, frozen, and written to
RUNDIR/config.json (with its schema_version; older files are migrated, see migrate.py).

The schema only: resolve.py builds a TrainConfig from a recipe and the user's flags (or a
saved run), runtime.py decides the device, dtype, graph and process count.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from fastcifar.backends import DEFAULT_BACKEND
from fastcifar.engine.migrate import CONFIG_SCHEMA_VERSION, migrate_config
from fastcifar.engine.recipes import Hyperparameters
from fastcifar.errors import UserError

# Fields that may change when a run is resumed; every other field must match the saved
# config, so that a resumed run is the run that was started.
RUNTIME_FIELDS = frozenset(
    {"out", "data_dir", "num_workers", "resume", "force", "progress", "log_every",
     "target_acc", "tensorboard"}
)
# Written to config.json for the reader, recomputed from the fields when read back.
DERIVED_KEYS = frozenset({"schema_version", "per_rank_batch_size", "lr_rule"})


@dataclass(frozen=True, kw_only=True)
class TrainConfig(Hyperparameters):
    """Hyperparameters (defaults come from the recipe) plus everything else a run needs."""

    model: str
    dataset: str
    recipe: str
    out: str
    # data
    backend: str = DEFAULT_BACKEND
    data_dir: str | None = None
    num_workers: int = 2
    # optimisation beyond the recipe's choices
    batch_size: int = 128  # global, summed over processes
    reference_batch_size: int = 128  # the batch the recipe's base_lr is quoted at
    base_lr: float = 0.1  # lr at reference_batch_size (what --lr sets)
    lr_scaling: str = "linear"  # "linear" | "none"
    peak_lr: float = 0.1  # base_lr scaled to batch_size (see lr_rule): the schedule's peak
    # model
    drop_path: float = 0.0
    sync_bn: bool = False
    eval_batch_size: int = 500
    # execution
    device: str = "cpu"  # "cuda" | "cpu" (resolved)
    world_size: int = 1  # local processes (--gpus / --nproc), or torchrun's
    dtype: str = "fp32"  # compute dtype of the forward/backward
    graph: bool = False  # capture the train step in a CUDA graph
    compile: bool = False
    # NHWC model and inputs: channels_last feeds cuDNN's NHWC tensor-core kernels, and
    # oneDNN's on the CPU: resnet20 fwd+bwd+SGD, batch 100-128, 2 threads, 2-core VM, torch
    # 2.14.1 (2026-11-29, quiet machine): 364-407 images/s NCHW vs 484-529 channels_last.
    channels_last: bool = True
    seed: int = 0
    # experiments (see README "Experiments")
    from_config: str | None = None  # the config.json this run was resolved from (--config)
    target_acc: float | None = None  # summary.json records when test_acc first reached it
    stop_at_target: bool = False  # end the run (finished) at the epoch that reached it
    tensorboard: bool = False  # also write the metrics and the lr per step to RUNDIR/tb/
    # this invocation
    resume: bool = False
    force: bool = False
    progress: bool = True
    log_every: int = 20  # steps between progress-bar updates and agreed stop/NaN checks

    @property
    def per_rank_batch_size(self) -> int:
        return self.batch_size // self.world_size

    @property
    def lr_rule(self) -> str:
        if self.lr_scaling == "linear":
            return (
                f"peak_lr = base_lr * global_batch / reference_batch = {self.base_lr:g} * "
                f"{self.batch_size} / {self.reference_batch_size} = {self.peak_lr:g}"
            )
        return f"peak_lr = base_lr = {self.peak_lr:g} (no scaling with the batch size)"

    @property
    def mixing(self) -> bool:
        """mixup or cutmix: the loader then yields soft targets."""
        return self.mixup > 0 or self.cutmix > 0

    def to_json(self) -> dict:
        data = {"schema_version": CONFIG_SCHEMA_VERSION, **dataclasses.asdict(self)}
        data["milestones"] = list(self.milestones)
        data["triangle"] = list(self.triangle)
        data["per_rank_batch_size"] = self.per_rank_batch_size
        data["lr_rule"] = self.lr_rule
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], what: str = "config.json") -> "TrainConfig":
        """The config a run saved (any schema version); a foreign file raises UserError."""
        data = migrate_config(data, what)
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING}
        missing = sorted(required - set(data))
        if missing:
            raise UserError(f"{what} is not a complete fastcifar run config "
                            f"(missing: {', '.join(missing)})")
        unknown = sorted(set(data) - names - DERIVED_KEYS)
        if unknown:
            raise UserError(f"{what} has fields this fastcifar does not know: "
                            f"{', '.join(unknown)}")
        values = {k: v for k, v in data.items() if k in names}
        values["milestones"] = tuple(values.get("milestones", ()))
        if "triangle" in values:
            values["triangle"] = tuple(values["triangle"])
        return cls(**values)

    def identity(self) -> dict:
        """The fields a resumed run must share with the run it continues."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in RUNTIME_FIELDS}
