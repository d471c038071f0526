"""The model registry: names to builders, with pattern listing and friendly errors.

A builder is a function ``builder(num_classes=10, **options) -> nn.Module`` registered
under its own function name with ``@register_model`` (timm style). The family modules
register their variants when ``fastcifar.models`` imports them.
"""
from __future__ import annotations

import fnmatch
import inspect
import re
import typing
from typing import Callable

from torch import nn

from fastcifar.errors import UserError, close_names_hint

ModelBuilder = Callable[..., nn.Module]

_BUILDERS: dict[str, ModelBuilder] = {}
_RATE_OPTIONS = ("drop_path", "dropout")


def register_model(builder: ModelBuilder) -> ModelBuilder:
    """Register ``builder`` under its function name; a name can be registered only once."""
    name = builder.__name__
    if name in _BUILDERS:
        owner = _BUILDERS[name]
        raise ValueError(
            f"model name {name!r} is already registered by "
            f"{owner.__module__}.{owner.__qualname__}; every model needs a unique name"
        )
    _BUILDERS[name] = builder
    return builder


def _natural_key(name: str) -> list:
    # resnet20 < resnet32 < resnet110, not the plain string order resnet110 < resnet20.
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_models(pattern: str | None = None) -> list[str]:
    """Registered names in natural order, optionally filtered by an fnmatch ``pattern``."""
    names = sorted(_BUILDERS, key=_natural_key)
    return fnmatch.filter(names, pattern) if pattern else names


def matching_models(pattern: str | None) -> list[str]:
    """list_models(pattern), where matching nothing is a UserError naming close names."""
    names = list_models(pattern)
    if not names:
        hint = close_names_hint(pattern, list_models())
        raise UserError(f"no model matches {pattern!r}; {hint}")
    return names


def get_builder(name: str) -> ModelBuilder:
    """The builder registered as ``name``; an unknown name is a UserError naming close matches."""
    try:
        return _BUILDERS[name]
    except KeyError:
        pass
    raise UserError(f"unknown model {name!r}; {close_names_hint(name, list_models())}")


def model_options(name: str) -> frozenset[str]:
    """The options ``create_model(name, ...)`` takes besides ``num_classes``.

    A variant's builder forwards ``**options`` to its family's class, named by the
    builder's return annotation; the class's keyword-only parameters are its options (the
    positional ones, depth or cardinality, are what the variant's name fixes).
    """
    builder = get_builder(name)
    parameters = inspect.signature(builder).parameters
    names = {p.name for p in parameters.values() if p.kind is p.KEYWORD_ONLY}
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        family = typing.get_type_hints(builder).get("return")
        if family is None:
            raise TypeError(f"builder {name!r} forwards **options but names no model class")
        names |= {p.name for p in inspect.signature(family.__init__).parameters.values()
                  if p.kind is p.KEYWORD_ONLY}
    return frozenset(names - {"num_classes"})


def create_model(name: str, num_classes: int = 10, **options) -> nn.Module:
    """Build the registered model ``name`` with a ``num_classes``-way head.

    ``options`` go to the family builder (``zero_init_residual``, ``drop_path``,
    ``dropout``, ... where the family has them); an option the model does not take is a
    UserError, so a CLI flag that does not apply reads as one line, not a traceback.
    """
    builder = get_builder(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise UserError(f"num_classes must be a positive integer, got {num_classes!r}")
    for option in _RATE_OPTIONS:
        rate = options.get(option)
        if rate is not None and not (isinstance(rate, (int, float)) and 0.0 <= rate < 1.0):
            raise UserError(f"{option} must be in [0, 1), got {rate!r}")
    unknown = set(options) - model_options(name)
    if unknown:  # also e.g. depth=56 for resnet20: the variant's name fixes it
        raise UserError(f"model {name!r} does not take the option {sorted(unknown)[0]!r}")
    return builder(num_classes=num_classes, **options)
