"""Generated CIFAR-format data, for benchmarks and demos on machines without CIFAR.

`write_python_folder` writes an extracted folder in the official python layout (pickled
dicts with bytes keys, `data` uint8 [n, 3072] as 1024 R, 1024 G, 1024 B), so the real
`fastcifar prepare` reads it like the official archive (with checksum=False: the md5s are
not the official ones). Images are a per-class 4x4 colour pattern blown up to 32x32 plus
noise: a net can learn them, and they are as large as real CIFAR images, which is all a
speed measurement needs.

    data_dir = prepare_synthetic(tmp, "cifar10", formats=("native", "ffcv"), train_size=50000)
"""
from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np

from fastcifar.datasets import get_dataset
from fastcifar.prepare import PrepareConfig, prepare

_PATTERN_SEED = 20240601
_NOISE = 48


def make_images(num_classes: int, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [count, 32, 32, 3] HWC, labels int64 [count]) drawn from `seed`."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, size=count, dtype=np.int64)
    patterns = np.random.default_rng(_PATTERN_SEED).integers(
        _NOISE, 256 - _NOISE, size=(num_classes, 4, 4, 3), dtype=np.int16)
    images = np.empty((count, 32, 32, 3), dtype=np.uint8)
    for start in range(0, count, 4096):  # in chunks: int16 temporaries stay small
        part = slice(start, start + 4096)
        base = patterns[labels[part]].repeat(8, axis=1).repeat(8, axis=2)
        noise = rng.integers(-_NOISE, _NOISE + 1, size=base.shape, dtype=np.int16)
        images[part] = (base + noise).astype(np.uint8)  # stays in [0, 255] by construction
    return images, labels


def _to_rows(images: np.ndarray) -> np.ndarray:
    """HWC images to the official row layout: 1024 R, then 1024 G, then 1024 B values."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), -1))


def _pickle(path: Path, payload: dict) -> None:
    path.write_bytes(pickle.dumps(payload, protocol=4))


def write_python_folder(root, dataset: str = "cifar10", *, train_size: int = 50000,
                        test_size: int = 10000, seed: int = 0) -> Path:
    """Write an extracted python-layout folder under `root`; return its path."""
    spec = get_dataset(dataset)
    layout = spec.python
    folder = Path(root) / layout.folder
    folder.mkdir(parents=True, exist_ok=True)
    splits = {"train": (layout.train_files, train_size, seed),
              "test": (layout.test_files, test_size, seed + 1)}
    for files, size, split_seed in splits.values():
        images, labels = make_images(spec.num_classes, size, split_seed)
        bounds = np.linspace(0, size, len(files) + 1).astype(int)
        for name, start, stop in zip(files, bounds[:-1], bounds[1:]):
            batch = {b"batch_label": name.encode(), b"data": _to_rows(images[start:stop]),
                     b"filenames": [f"synthetic_{i}.png".encode() for i in range(start, stop)]}
            if spec.num_classes == 10:
                batch[b"labels"] = labels[start:stop].tolist()
            else:
                batch[b"fine_labels"] = labels[start:stop].tolist()
                batch[b"coarse_labels"] = (labels[start:stop] // 5).tolist()
            _pickle(folder / name, batch)
    names = [f"class_{i}".encode() for i in range(spec.num_classes)]
    if spec.num_classes == 10:
        meta = {b"label_names": names, b"num_cases_per_batch": 10000}
    else:
        meta = {b"fine_label_names": names,
                b"coarse_label_names": [f"superclass_{i}".encode() for i in range(20)]}
    _pickle(folder / layout.meta_file, meta)
    return folder


def prepare_synthetic(data_dir, dataset: str = "cifar10", *, formats=("native",),
                      train_size: int = 50000, test_size: int = 10000, seed: int = 0) -> Path:
    """Generate a CIFAR-format set and prepare it into `data_dir` in `formats`
    (through fastcifar.prepare, as a user's data would be); return `data_dir`."""
    data_dir = Path(data_dir)
    staging = data_dir / ".synthetic-source"
    try:
        folder = write_python_folder(staging, dataset, train_size=train_size,
                                     test_size=test_size, seed=seed)
        prepare(PrepareConfig(dataset=dataset, source=str(folder), data_dir=str(data_dir),
                              formats=tuple(formats), force=True, checksum=False),
                log=lambda *_: None)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return data_dir
