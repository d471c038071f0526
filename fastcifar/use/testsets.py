"""Test sets from files users have on disk; nothing is downloaded.

  - an npy pair: images uint8 [N,32,32,3] RGB and integer labels [N] (the layout of the
    CIFAR-10.1 v4/v6 release: cifar10.1_v6_data.npy, cifar10.1_v6_labels.npy)
  - a CIFAR-format python or binary archive (or its extracted folder), read by
    fastcifar.sources as prepare reads it; its test split is used
  - a corruptions folder in the CIFAR-10-C / CIFAR-100-C layout: one <corruption>.npy of
    5 x N images per corruption (severities 1 to 5, in that order) and labels.npy (5 x N
    labels as released, or N)

.npy files are read with allow_pickle=False (no code runs), corruption files memory-mapped
one severity at a time. Every shape, dtype, length and label range is checked, each
mistake being one line that names the file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastcifar.datasets import get_dataset
from fastcifar.errors import UserError
from fastcifar.sources import read_source

SEVERITIES = 5
LABELS_FILE = "labels.npy"


@dataclass(frozen=True)
class ArraySet:
    """Test images and labels in memory (or memory-mapped)."""

    name: str
    images: np.ndarray  # uint8 [N, 32, 32, 3] RGB
    labels: np.ndarray  # int64 [N]


def load_npy_pair(images_path, labels_path, num_classes: int) -> ArraySet:
    images = read_npy(Path(images_path))
    check_images(images, images_path)
    labels = read_npy(Path(labels_path))
    return ArraySet(name=Path(images_path).name, images=images,
                    labels=checked_labels(labels, len(images), num_classes, labels_path))


def load_archive_test_split(path, dataset: str) -> ArraySet:
    """The test split of a CIFAR-format archive or folder (no md5 check: it is not prepared)."""
    source = read_source(get_dataset(dataset), Path(path), verify_members=False)
    return ArraySet(name=Path(path).name, images=source.images["test"],
                    labels=source.labels["test"])


def corruption_files(folder) -> list[tuple[str, Path]]:
    """(corruption name, file) of every <corruption>.npy in a CIFAR-10-C style folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder (expected the CIFAR-10-C layout: "
                        f"<corruption>.npy files and {LABELS_FILE})")
    if not (folder / LABELS_FILE).is_file():
        raise UserError(f"{folder}: {LABELS_FILE} is missing (CIFAR-10-C layout)")
    files = sorted(p for p in folder.glob("*.npy") if p.name != LABELS_FILE)
    if not files:
        raise UserError(f"{folder}: no <corruption>.npy files next to {LABELS_FILE}")
    return [(p.stem, p) for p in files]


def load_corruption(path: Path, num_classes: int) -> list[ArraySet]:
    """The five severities (1 to 5) of one corruption file, memory-mapped."""
    images = read_npy(path, mmap=True)
    check_images(images, path)
    if len(images) % SEVERITIES:
        raise UserError(f"{path}: {len(images)} images do not split into {SEVERITIES} "
                        "severities of equal size")
    per_severity = len(images) // SEVERITIES
    labels_path = path.parent / LABELS_FILE
    labels = read_npy(labels_path)
    if getattr(labels, "ndim", 0) == 1 and len(labels) == per_severity:
        labels = np.tile(labels, SEVERITIES)  # one copy per severity, as released
    labels = checked_labels(labels, len(images), num_classes, labels_path)
    return [ArraySet(name=f"{path.stem} severity {s + 1}",
                     images=images[s * per_severity:(s + 1) * per_severity],
                     labels=labels[s * per_severity:(s + 1) * per_severity])
            for s in range(SEVERITIES)]


def read_npy(path: Path, mmap: bool = False) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
        if magic.startswith(b"PK"):
            raise UserError(f"{path}: an .npz archive; give its arrays as .npy files")
        if magic != b"\x93NUMPY":
            raise UserError(f"{path}: not an .npy file")
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (ValueError, EOFError) as exc:
        if "pickle" in str(exc):
            raise UserError(f"{path}: not a plain .npy array (it holds Python objects, "
                            "which are not loaded)") from None
        raise UserError(f"{path}: not a readable .npy file ({exc})") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None


def check_images(images: np.ndarray, what) -> None:
    shape = list(images.shape)
    if images.ndim == 4 and tuple(shape[1:]) == (3, 32, 32):
        raise UserError(f"{what}: images are channels-first {shape}; expected [N, 32, 32, 3] "
                        "(height, width, RGB)")
    if images.dtype != np.uint8 or images.ndim != 4 or tuple(shape[1:]) != (32, 32, 3):
        raise UserError(f"{what}: images must be uint8 [N, 32, 32, 3] RGB, got "
                        f"{images.dtype} {shape}")
    if shape[0] == 0:
        raise UserError(f"{what}: holds no images")


def checked_labels(labels: np.ndarray, count: int, num_classes: int, what) -> np.ndarray:
    """labels as int64 [count], or one UserError line saying what is wrong with them."""
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"{what}: labels must be integers [N], got {labels.dtype} "
                        f"{list(labels.shape)}")
    if len(labels) != count:
        raise UserError(f"{what}: {len(labels)} labels for {count} images")
    labels = labels.astype(np.int64)
    outside = (labels < 0) | (labels >= num_classes)
    if outside.any():
        first = int(labels[np.argmax(outside)])
        raise UserError(f"{what}: label {first} is outside [0, {num_classes}) (a test set "
                        f"of another dataset?)")
    return labels
