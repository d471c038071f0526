"""resolve_config: the user's options (or a saved run) -> one checked, frozen TrainConfig.

Order: the named recipe's values, then the options the user gave (epochs rescale the
recipe's milestones and warmup unless those are given too), then what this machine
decides (runtime.py), then the lr scaling rule; --resume starts from the run's saved
config instead and lets only runtime fields change; --config takes a saved run's settings
as options that the flags override (rerun.py). Every bad input is one UserError line.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Mapping

from fastcifar.datasets import get_dataset
from fastcifar.engine.config import TrainConfig
from fastcifar.engine.recipes import Recipe, default_recipe, get_recipe
from fastcifar.engine.rerun import options_from_saved, read_config
from fastcifar.engine.run_dir import read_saved_config
from fastcifar.engine.runtime import cuda_device_count, resolve_execution
from fastcifar.engine.validate import check_config
from fastcifar.errors import UserError, close_names_hint
from fastcifar.models import list_models, model_options

# Keys resolve_config accepts besides TrainConfig fields.
INPUT_ONLY_KEYS = frozenset({"gpus", "nproc", "amp", "config", "autoaugment"})
# Fields resolve_config derives; they are never options.
DERIVED_FIELDS = frozenset({"peak_lr", "reference_batch_size"})


def default_run_dir(model: str, dataset: str, now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return f"runs/{model}-{dataset}-{stamp}"


def resolve_config(options: Mapping[str, Any], *, cuda_devices: int | None = None,
                   known_models: list[str] | None = None) -> TrainConfig:
    """Build the TrainConfig for `options` (only the options the user gave).

    cuda_devices and known_models default to what this machine and the model registry
    say; tests pass them to stay independent of both.
    """
    options = {k: v for k, v in options.items() if v is not None}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(options) - (fields - DERIVED_FIELDS) - INPUT_ONLY_KEYS
    if unknown:
        raise UserError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    if cuda_devices is None:
        cuda_devices = cuda_device_count()
    if "config" in options:
        config = _resolve_rerun(options, cuda_devices, known_models)
    elif options.get("resume"):
        config = _resolve_resumed(options, cuda_devices, known_models)
    else:
        config = _resolve_new(options, cuda_devices, known_models)
    given = [f"--{key.replace('_', '-')}" for key in ("ra_n", "ra_m") if key in options]
    if given and config.augment_policy != "randaugment":
        what = "are RandAugment settings" if len(given) == 2 else "is a RandAugment setting"
        raise UserError(f"{' and '.join(given)} {what}: it needs --augment-policy randaugment "
                        f"(the policy is {config.augment_policy})")
    return config


def _resolve_new(options: Mapping[str, Any], cuda_devices: int,
                 known_models: list[str] | None) -> TrainConfig:
    """A new run: TrainConfig's defaults, the recipe's, then the options given."""
    options = {k: v for k, v in options.items() if v is not None}
    for key in ("model", "dataset"):
        if key not in options:
            raise UserError(f"--{key} is required")

    model, dataset = options["model"], options["dataset"]
    get_dataset(dataset)
    known_models = list_models() if known_models is None else known_models
    if model not in known_models:
        raise UserError(f"unknown model {model!r}; {close_names_hint(model, known_models)} "
                        "(see `fastcifar models`)")
    recipe = get_recipe(options.get("recipe", default_recipe(model)))
    values = _recipe_values(recipe, model, options)
    values.update((k, v) for k, v in options.items() if k not in INPUT_ONLY_KEYS)
    _apply_autoaugment_alias(values, options)
    _rescale_schedule(values, options, recipe)
    resolve_execution(values, options, cuda_devices)
    scale = values["batch_size"] / values["reference_batch_size"]
    values["peak_lr"] = values["base_lr"] * (scale if values["lr_scaling"] == "linear" else 1.0)
    values.setdefault("out", default_run_dir(model, dataset))
    config = TrainConfig(**values)
    check_config(config)
    return config


def _recipe_values(recipe: Recipe, model: str, options: Mapping[str, Any]) -> dict:
    """TrainConfig's defaults overlaid with the recipe's."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values: dict[str, Any] = {
        f.name: f.default for f in dataclasses.fields(TrainConfig)
        if f.default is not dataclasses.MISSING and f.name not in ("device", "dtype", "graph")
    }
    values.update((f.name, getattr(recipe, f.name)) for f in dataclasses.fields(recipe)
                  if f.name in fields)
    values.update(model=model, recipe=recipe.name, reference_batch_size=recipe.batch_size)
    if values["zero_init_residual"] and "zero_init_residual" not in options:
        # A recipe's zero-gamma init applies where the model has residual BN gammas
        # (not resnet9/airbench94); asked for explicitly, create_model refuses it.
        values["zero_init_residual"] = _takes_option(model, "zero_init_residual")
    return values


def _apply_autoaugment_alias(values: dict, options: Mapping[str, Any]) -> None:
    """--autoaugment is --augment-policy autoaugment; --no-autoaugment turns a recipe's
    policy off."""
    if "autoaugment" not in options:
        return
    alias = "autoaugment" if options["autoaugment"] else "none"
    given = options.get("augment_policy", alias)
    if given != alias:
        flag = "--autoaugment" if options["autoaugment"] else "--no-autoaugment"
        raise UserError(f"{flag} contradicts --augment-policy {given}")
    values["augment_policy"] = alias


def _takes_option(model: str, option: str) -> bool:
    return model not in list_models() or option in model_options(model)


def _rescale_schedule(values: dict, options: Mapping[str, Any], recipe: Recipe) -> None:
    """Keep the recipe's shape: milestones and warmup scale with --epochs unless given."""
    if values["epochs"] != recipe.epochs:
        ratio = values["epochs"] / recipe.epochs
        if "milestones" not in options:
            values["milestones"] = tuple(m * ratio for m in recipe.milestones)
        if "warmup_epochs" not in options:
            values["warmup_epochs"] = recipe.warmup_epochs * ratio
    values["milestones"] = tuple(float(m) for m in values.get("milestones", ()))
    values["triangle"] = tuple(float(v) for v in values["triangle"])
    epochs = values["epochs"]
    values["epochs"] = int(epochs) if float(epochs).is_integer() else float(epochs)
    values["tta"] = int(values["tta"])  # a bool from older callers: True is level 1


def _resolve_resumed(options, cuda_devices, known_models) -> TrainConfig:
    """--resume: the saved config, with only runtime fields (RUNTIME_FIELDS) changeable."""
    if "out" not in options:
        raise UserError("--resume needs --out RUNDIR: the run directory to continue")
    saved = TrainConfig.from_json(read_saved_config(options["out"]),
                                  what=f"{options['out']}/config.json")
    # Everything as saved (runtime fields too, e.g. data_dir) unless given now; the
    # derived fields are derived again.
    base = {k: v for k, v in dataclasses.asdict(saved).items()
            if k not in DERIVED_FIELDS | {"resume", "force"}}
    config = _resolve_new({**base, **options, "resume": False}, cuda_devices, known_models)
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


def _resolve_rerun(options, cuda_devices, known_models) -> TrainConfig:
    """--config: a new run with a saved run's settings, the flags given now over them."""
    if options.get("resume"):
        raise UserError("--config starts a new run from a saved one and --resume continues "
                        "one (--resume --out RUNDIR): give one of them")
    file, saved = read_config(options["config"])
    given = {k: v for k, v in options.items() if k != "config"}
    config = _resolve_new(options_from_saved(saved, given), cuda_devices, known_models)
    return dataclasses.replace(config, from_config=str(file.absolute()))
