"""Prepared shards on disk: where they live, the manifest, and loading them back.

Layout of DIR/<dataset>/ (DIR: --data-dir, else $FASTCIFAR_DATA, else ~/.cache/fastcifar):

    manifest.json              written last; its presence means "prepared"
    native/{split}_images.npy  uint8 [N,32,32,3] RGB HWC, official order (np.load mmap-able)
    native/{split}_labels.npy  int64 [N]
    ffcv/{split}.beton         FFCV fields: image NDArray uint8 (32,32,3), label int
    dali/{split}.tar           webdataset tar: {i:06d}.rgb (3072 raw HWC bytes),
                               {i:06d}.cls (int64 little-endian); read by fn.readers.webdataset
"""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np

from fastcifar.atomic import atomic_write
from fastcifar.backends import SHARD_FORMATS
from fastcifar.datasets import SPLITS, get_dataset
from fastcifar.errors import UserError
from fastcifar.sources import file_digest

FORMAT_VERSION = 1
FORMATS = SHARD_FORMATS  # one per backend kind: see fastcifar/backends.py
MANIFEST = "manifest.json"


def default_data_dir() -> Path:
    return Path(os.environ.get("FASTCIFAR_DATA") or Path.home() / ".cache" / "fastcifar")


def dataset_dir(dataset: str, data_dir: str | os.PathLike | None = None) -> Path:
    get_dataset(dataset)
    return Path(data_dir or default_data_dir()).expanduser() / dataset


def shard_names(fmt: str, split: str) -> list[str]:
    """Paths (relative to the dataset folder) of the shards of one format and split."""
    return {
        "native": [f"native/{split}_images.npy", f"native/{split}_labels.npy"],
        "ffcv": [f"ffcv/{split}.beton"],
        "dali": [f"dali/{split}.tar"],
    }[fmt]


def foreign_entries(folder: Path) -> list[str]:
    """What a dataset folder holds that fastcifar did not write (paths relative to it):
    anything but the manifest and the known shard files in their format folders."""
    shards = {name for fmt in FORMATS for split in SPLITS for name in shard_names(fmt, split)}
    foreign = []
    for entry in sorted(folder.iterdir()):
        if entry.is_symlink():  # fastcifar writes no links
            foreign.append(entry.name)
        elif entry.name == MANIFEST and entry.is_file():
            continue
        elif entry.name in FORMATS and entry.is_dir():
            foreign += [f"{entry.name}/{p.name}" for p in sorted(entry.iterdir())
                        if f"{entry.name}/{p.name}" not in shards or p.is_symlink()
                        or not p.is_file()]
        else:
            foreign.append(entry.name)
    return foreign


def require_free_space(folder: Path, needed_bytes: int) -> None:
    """Refuse in one line, before anything is written, when `folder` lacks the space."""
    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        raise UserError(
            f"needs about {math.ceil(needed_bytes / 1e6)} MB free in {folder}, has "
            f"{free // 10**6} MB; free some space or choose another --data-dir"
        )


def sha256_of(path: Path) -> str:
    return file_digest(path, "sha256")


def prepare_command(dataset: str, data_dir=None, fmt: str = "native") -> str:
    command = f"fastcifar prepare --dataset {dataset}"
    if data_dir:
        command += f" --data-dir {data_dir}"
    if fmt != "native":
        command += f" --formats native,{fmt}"
    return command


def read_manifest(dataset: str, data_dir=None) -> dict | None:
    """The manifest of a prepared dataset, or None when there is no valid one."""
    path = dataset_dir(dataset, data_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("format_version") != FORMAT_VERSION or manifest.get("dataset") != dataset:
        return None
    return manifest


def require_manifest(dataset: str, data_dir=None, fmt: str = "native") -> dict:
    manifest = read_manifest(dataset, data_dir)
    if manifest is None or fmt not in manifest.get("formats", []):
        where = dataset_dir(dataset, data_dir)
        raise UserError(
            f"{dataset} is not prepared in the {fmt} format at {where}; "
            f"run: {prepare_command(dataset, data_dir, fmt)}"
        )
    return manifest


def shard_path(dataset: str, fmt: str, split: str, data_dir=None, verify: bool = True) -> Path:
    """The (first) shard file of a format and split, checked against the manifest."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    manifest = require_manifest(dataset, data_dir, fmt)
    root = dataset_dir(dataset, data_dir)
    names = shard_names(fmt, split)
    if verify:
        for name in names:
            verify_shard(root, name, manifest, dataset, data_dir)
    return root / names[0]


def verify_shard(root: Path, name: str, manifest: dict, dataset: str, data_dir=None) -> None:
    path = root / name
    expected = manifest["shards"].get(name)
    if not path.exists() or expected != sha256_of(path):
        raise UserError(
            f"{path} is missing or does not match its checksum in the manifest; "
            f"re-create it with: {prepare_command(dataset, data_dir)} --force"
        )


def load(dataset: str, split: str, data_dir=None, verify: bool = True, mmap: bool = False):
    """(images uint8 [N,32,32,3] RGB HWC, labels int64 [N]) in the official order."""
    images_path = shard_path(dataset, "native", split, data_dir, verify=verify)
    labels_path = dataset_dir(dataset, data_dir) / shard_names("native", split)[1]
    images = np.load(images_path, mmap_mode="r" if mmap else None)
    labels = np.load(labels_path)
    return images, labels


def write_manifest(folder: Path, manifest: dict) -> None:
    """Write the manifest atomically: a reader sees the old file or the whole new one."""
    with atomic_write(folder / MANIFEST) as f:
        f.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
