"""TrainConfig: every choice a training run makes, resolved once, frozen, and written to
RUNDIR/config.json.

resolve_config() starts from the named recipe, applies the options the user gave (a
mapping with only the given ones), resolves "auto" values (device, dtype, graph, run
directory) and checks everything, raising UserError with one line for bad input.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Mapping

from fastcifar.datasets import get_dataset
from fastcifar.engine.recipes import Hyperparameters, default_recipe, get_recipe
from fastcifar.errors import UserError, close_names_hint

BACKENDS = ("native", "ffcv", "dali", "torchvision")
DTYPES = ("bf16", "fp16", "fp32")
SCHEDULES = ("multistep", "cosine", "linear")

# Fields that may change when a run is resumed; every other field must match the saved
# config, so that a resumed run is the run that was started.
RUNTIME_FIELDS = frozenset(
    {"out", "data_dir", "num_workers", "resume", "force", "progress", "log_every"}
)
# Keys resolve_config accepts besides TrainConfig fields.
INPUT_ONLY_KEYS = frozenset({"gpus", "nproc", "amp"})
# Set by torchrun (or any launcher using its protocol); here, not in dist.py, so that
# resolving a config does not import torch.distributed.
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")


@dataclass(frozen=True, kw_only=True)
class TrainConfig(Hyperparameters):
    """Hyperparameters (defaults come from the recipe) plus everything else a run needs."""

    model: str
    dataset: str
    recipe: str
    out: str
    # data
    backend: str = "native"
    data_dir: str | None = None
    num_workers: int = 2
    # optimisation beyond the recipe's choices
    batch_size: int = 128  # global, summed over processes
    reference_batch_size: int = 128  # the batch the recipe's lr is quoted at
    base_lr: float = 0.1  # lr at reference_batch_size
    lr_scaling: str = "linear"  # "linear" | "none"
    lr: float = 0.1  # peak lr actually used (see lr_rule)
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
    # this invocation
    resume: bool = False
    force: bool = False
    progress: bool = True
    log_every: int = 20  # steps between progress-bar updates

    @property
    def per_rank_batch_size(self) -> int:
        return self.batch_size // self.world_size

    @property
    def lr_rule(self) -> str:
        if self.lr_scaling == "linear":
            return (
                f"lr = base_lr * global_batch / reference_batch = {self.base_lr:g} * "
                f"{self.batch_size} / {self.reference_batch_size} = {self.lr:g}"
            )
        return f"lr = base_lr = {self.lr:g} (no scaling with the batch size)"

    @property
    def soft_targets(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["milestones"] = list(self.milestones)
        data["per_rank_batch_size"] = self.per_rank_batch_size
        data["lr_rule"] = self.lr_rule
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "TrainConfig":
        """The config a run saved; a hand-edited or foreign file raises UserError."""
        if not isinstance(data, Mapping):
            raise UserError("config.json does not hold a fastcifar run config (not an object)")
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        missing = sorted(required - set(data))
        if missing:
            raise UserError(f"config.json is not a complete fastcifar run config "
                            f"(missing: {', '.join(missing)})")
        values = {k: v for k, v in data.items() if k in names}
        values["milestones"] = tuple(values.get("milestones", ()))
        return cls(**values)

    def identity(self) -> dict:
        """The fields a resumed run must share with the run it continues."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in RUNTIME_FIELDS}


def default_run_dir(model: str, dataset: str, now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return f"runs/{model}-{dataset}-{stamp}"


def resolve_config(
    options: Mapping[str, Any],
    *,
    cuda_device_count: int | None = None,
    known_models: list[str] | None = None,
) -> TrainConfig:
    """Build the TrainConfig for `options` (only the options the user gave).

    cuda_device_count and known_models default to what this machine and the model
    registry say; tests pass them to stay independent of both.
    """
    options = {k: v for k, v in options.items() if v is not None}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(options) - fields - INPUT_ONLY_KEYS
    if unknown:
        raise UserError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    if options.get("resume"):
        return _resolve_resumed(options, cuda_device_count, known_models)
    for key in ("model", "dataset"):
        if key not in options:
            raise UserError(f"--{key} is required")

    model, dataset = options["model"], options["dataset"]
    get_dataset(dataset)
    if known_models is None:
        from fastcifar.models import list_models

        known_models = list(list_models())
    if model not in known_models:
        raise UserError(f"unknown model {model!r}; {close_names_hint(model, known_models)} "
                        "(see `fastcifar models`)")

    # A given name (even an empty one) is what the config records, so it must exist.
    recipe = get_recipe(options.get("recipe", default_recipe(model)))
    values: dict[str, Any] = {
        f.name: f.default
        for f in dataclasses.fields(TrainConfig)
        if f.default is not dataclasses.MISSING
        and f.name not in ("device", "dtype", "graph")
    }
    values.update(
        (f.name, getattr(recipe, f.name)) for f in dataclasses.fields(recipe) if f.name in fields
    )
    values.update(
        model=model,
        dataset=dataset,
        recipe=recipe.name,
        reference_batch_size=recipe.batch_size,
        base_lr=recipe.lr,
    )
    for key, value in options.items():
        if key in INPUT_ONLY_KEYS:
            continue
        if key == "lr":  # --lr sets the base lr; the scaling rule still applies
            values["base_lr"] = value
        else:
            values[key] = value
    if values["epochs"] != recipe.epochs:
        # Keep the schedule's shape: milestones and warmup scale with --epochs unless given.
        ratio = values["epochs"] / recipe.epochs
        if "milestones" not in options:
            values["milestones"] = tuple(m * ratio for m in recipe.milestones)
        if "warmup_epochs" not in options:
            values["warmup_epochs"] = recipe.warmup_epochs * ratio
    values["milestones"] = tuple(float(m) for m in values.get("milestones", ()))
    if values["zero_init_residual"] and "zero_init_residual" not in options:
        # A recipe's zero-gamma init applies where the model has residual BN gammas
        # (not resnet9/airbench94); asked for explicitly, create_model refuses it.
        values["zero_init_residual"] = _takes_option(model, "zero_init_residual")

    _resolve_execution(values, options, cuda_device_count)
    scale = values["batch_size"] / values["reference_batch_size"]
    values["lr"] = values["base_lr"] * (scale if values["lr_scaling"] == "linear" else 1.0)
    if "out" not in values:
        values["out"] = default_run_dir(model, dataset)
    config = TrainConfig(**values)
    _check(config)
    return config


def _resolve_resumed(options, cuda_device_count, known_models) -> TrainConfig:
    """--resume: the saved config, with only runtime fields (RUNTIME_FIELDS) changeable."""
    from fastcifar.engine.run_dir import read_saved_options

    if "out" not in options:
        raise UserError("--resume needs --out RUNDIR: the run directory to continue")
    saved = TrainConfig.from_json(read_saved_options(options["out"]))
    # Everything as saved (runtime fields too, e.g. data_dir) unless given now; lr is
    # derived from base_lr again.
    base = {k: v for k, v in dataclasses.asdict(saved).items()
            if k not in ("lr", "resume", "force")}
    config = resolve_config({**base, **options, "resume": False},
                            cuda_device_count=cuda_device_count, known_models=known_models)
    config = dataclasses.replace(config, resume=True)
    changed = [
        f"{key} (saved {value!r}, now {getattr(config, key)!r})"
        for key, value in saved.identity().items()
        if getattr(config, key) != value
    ]
    if changed:
        raise UserError(
            "--resume continues a run with its saved settings; these differ: "
            + "; ".join(changed)
        )
    return config


def _resolve_execution(values: dict, options: Mapping[str, Any], cuda_device_count) -> None:
    if cuda_device_count is None:
        import torch

        cuda_device_count = torch.cuda.device_count() if torch.cuda.is_available() else 0

    device = values.get("device", "auto")
    if device == "auto":
        device = "cuda" if cuda_device_count > 0 else "cpu"
    if device not in ("cuda", "cpu"):
        raise UserError(f"--device must be auto, cuda or cpu, not {device!r}")
    if device == "cuda" and cuda_device_count == 0:
        raise UserError("--device cuda: no CUDA device is available (try --device cpu)")

    gpus, nproc = options.get("gpus"), options.get("nproc")
    if gpus is not None and nproc is not None and gpus != nproc:
        raise UserError("give either --gpus or --nproc, not both")
    if gpus is not None and device != "cuda":
        raise UserError("--gpus needs CUDA; on the CPU use --device cpu --nproc N")
    world_size = gpus or nproc or values.get("world_size", 1)
    if world_size < 1:
        raise UserError("--gpus/--nproc must be at least 1")
    torchrun_world = _torchrun_world_size()
    if torchrun_world is not None:
        if (gpus or nproc or 1) > 1:
            raise UserError(
                "under torchrun, --gpus/--nproc do not apply: torchrun starts the processes"
            )
        world_size = torchrun_world
    elif device == "cuda" and world_size > cuda_device_count:
        raise UserError(
            f"--gpus {world_size}: only {cuda_device_count} CUDA device(s) are visible"
        )
    values["device"], values["world_size"] = device, world_size

    dtype = values.get("dtype", "auto")
    amp = options.get("amp")
    if amp is not None and dtype != "auto" and (dtype == "fp32") == amp:
        raise UserError(f"--{'' if amp else 'no-'}amp contradicts --dtype {dtype}")
    if dtype == "auto":
        # --amp means bf16 autocast (fp16 only when asked: it needs GradScaler).
        dtype = "bf16" if (amp if amp is not None else device == "cuda") else "fp32"
    if dtype not in DTYPES:
        raise UserError(f"--dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    if dtype == "fp16" and device != "cuda":
        raise UserError("--dtype fp16 needs CUDA; use bf16 or fp32 on the CPU")
    values["dtype"] = dtype

    graph = values.get("graph")
    if graph is None or graph == "auto":
        # fp16 needs GradScaler, which reads found-inf on the host: eager only.
        graph = device == "cuda" and dtype != "fp16"
    if graph and device != "cuda":
        raise UserError("CUDA-graph capture needs --device cuda")
    if graph and dtype == "fp16":
        raise UserError("fp16 uses GradScaler, which cannot run in a CUDA graph: use bf16")
    values["graph"] = bool(graph)


def _takes_option(model: str, option: str) -> bool:
    from fastcifar.models import list_models, model_options

    return model not in list_models() or option in model_options(model)


def in_torchrun() -> bool:
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def _torchrun_world_size() -> int | None:
    return int(os.environ["WORLD_SIZE"]) if in_torchrun() else None


def _check(c: TrainConfig) -> None:
    def need(ok: bool, message: str) -> None:
        if not ok:
            raise UserError(message)

    need(c.backend in BACKENDS, f"--backend must be one of {', '.join(BACKENDS)}")
    need(c.epochs >= 1, "--epochs must be at least 1")
    need(c.batch_size >= 1, "--batch-size must be at least 1")
    need(
        c.batch_size % c.world_size == 0,
        f"--batch-size {c.batch_size} is the global batch and must divide evenly "
        f"over {c.world_size} processes",
    )
    need(c.eval_batch_size >= 1, "--eval-batch-size must be at least 1")
    need(math.isfinite(c.base_lr) and c.base_lr > 0, "--lr must be a positive number")
    need(c.lr_scaling in ("linear", "none"), "--lr-scaling must be linear or none")
    need(c.schedule in SCHEDULES, f"--schedule must be one of {', '.join(SCHEDULES)}")
    need(0 <= c.warmup_epochs < c.epochs, "--warmup-epochs must be in [0, epochs)")
    need(all(0 < m < c.epochs for m in c.milestones), "milestones must lie inside the run")
    need(list(c.milestones) == sorted(c.milestones), "--milestones must be in increasing order")
    need(math.isfinite(c.gamma) and 0 < c.gamma, "--gamma must be a positive number")
    need(0 <= c.min_lr <= c.lr, "--min-lr must be in [0, lr]")
    need(0 <= c.momentum < 1, "--momentum must be in [0, 1)")
    need(not c.nesterov or c.momentum > 0, "Nesterov needs a momentum above 0")
    need(c.weight_decay >= 0, "--wd must be non-negative")
    need(0 <= c.label_smoothing < 1, "--label-smoothing must be in [0, 1)")
    need(c.mixup >= 0 and c.cutmix >= 0, "--mixup/--cutmix alphas must be non-negative")
    need(0 <= c.erase_prob <= 1, "--erase-prob must be in [0, 1]")
    need(c.cutout >= 0, "--cutout must be non-negative")
    need(0 <= c.drop_path < 1, "--drop-path must be in [0, 1)")
    need(0 < c.ema_decay < 1 and c.ema_every >= 1, "EMA decay must be in (0, 1), every >= 1")
    need(c.num_workers >= 0, "--num-workers must be non-negative")
    need(c.log_every >= 1, "--log-every must be at least 1")
    need(
        not (c.sync_bn and c.device == "cpu" and c.world_size > 1),
        "--sync-bn needs CUDA (torch's SyncBatchNorm has no CPU kernel)",
    )
