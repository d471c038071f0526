"""The loader backends: the one table every layer reads (torch-free).

A backend is a name users pass (`--backend`), the module that builds its loader, the
shard format it reads from a prepared dataset, and, for optional ones, the pip extra and
the package it needs. Adding a backend is one row here plus one loader module exposing
`build(spec, **options)`.
"""
from __future__ import annotations

from dataclasses import dataclass

from fastcifar.errors import UserError, close_names_hint
from fastcifar.extras import has_module, require_module


@dataclass(frozen=True)
class Backend:
    name: str
    loader_module: str  # exposes build(spec: LoaderSpec, **options) -> loader
    shard_format: str  # what `fastcifar prepare --formats` writes for it
    summary: str  # one line for help texts
    extra: str | None = None  # pip extra: pip install 'fastcifar[<extra>]'
    import_name: str | None = None  # the package the extra provides
    # Draws flips per sample, not per batch position (alternating flip needs that).
    alternating_flip: bool = False

    @property
    def install_hint(self) -> str | None:
        return f"pip install 'fastcifar[{self.extra}]'" if self.extra else None


BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("native", "fastcifar.pipelines.native", "native",
            "uint8 dataset on the device, one fused augment launch per batch (default)",
            alternating_flip=True),
    Backend("ffcv", "fastcifar.pipelines.ffcv_loader", "ffcv",
            "FFCV's Loader over the .beton, the fused op as an FFCV operation",
            extra="ffcv", import_name="ffcv"),
    Backend("dali", "fastcifar.pipelines.dali_loader", "dali",
            "DALI's webdataset reader and its own operators",
            extra="dali", import_name="nvidia.dali"),
    Backend("torchvision", "fastcifar.pipelines.torchvision_loader", "native",
            "Dataset + DataLoader + transforms v2 per image: the baseline"),
)}
BACKEND_NAMES = tuple(BACKENDS)
DEFAULT_BACKEND = "native"
BASELINE_BACKEND = "torchvision"  # what `fastcifar bench` sets every loader against
# Prepared shard formats, in the order prepare writes and lists them.
SHARD_FORMATS = tuple(dict.fromkeys(b.shard_format for b in BACKENDS.values()))


def get_backend(name: str) -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise UserError(f"unknown backend {name!r}; {close_names_hint(name, BACKEND_NAMES)}") \
            from None


def missing_extra(name: str) -> str | None:
    """Why backend `name` cannot run here (its extra is not installed), or None."""
    backend = get_backend(name)
    if backend.import_name is None or has_module(backend.import_name):
        return None
    return f"{name} is not installed ({backend.install_hint})"


def require_extra(name: str):
    """Import backend `name`'s optional package (the module), or raise one UserError line."""
    backend = get_backend(name)
    if backend.import_name is None:
        return None
    return require_module(backend.import_name, backend.extra, package=backend.name)


def format_extra(fmt: str) -> Backend | None:
    """The backend whose optional package writes and reads shard format `fmt`, if any."""
    return next((b for b in BACKENDS.values() if b.shard_format == fmt and b.extra), None)


def check_flip_support(name: str, alternating_flip: bool) -> None:
    """One UserError line when backend `name` cannot run alternating flip."""
    if alternating_flip and not get_backend(name).alternating_flip:
        able = ", ".join(b.name for b in BACKENDS.values() if b.alternating_flip)
        raise UserError(f"alternating flip (airbench's, the airbench94 recipe) runs on the "
                        f"{able} backend only, not {name}")
