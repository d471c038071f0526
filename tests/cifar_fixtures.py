"""Small CIFAR-format archives built on the fly (this machine cannot download CIFAR).

The files follow the official layouts byte for byte in structure (python pickles with
bytes keys, binary records), only with fewer images; `learnable=True` draws each image
from a per-class colour pattern plus noise so a small net can learn the task quickly.
"""
from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from fastcifar.datasets import DATASETS


def make_images(num_classes: int, count: int, seed: int, learnable: bool):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, size=count).astype(np.int64)
    if not learnable:
        return rng.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8), labels
    # Per-class 4x4 colour patterns upsampled to 32x32: learnable, yet shifted crops differ.
    patterns = np.random.default_rng(1234).integers(0, 256, size=(num_classes, 4, 4, 3))
    base = patterns[labels].repeat(8, axis=1).repeat(8, axis=2).astype(np.int16)
    noise = rng.integers(-60, 61, size=base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8), labels


def _split_sizes(total: int, parts: int):
    sizes = [total // parts] * parts
    sizes[-1] += total - sum(sizes)
    return sizes


def make_cifar_folder(root: Path, dataset: str = "cifar10", layout: str = "python",
                      train_size: int = 500, test_size: int = 100, seed: int = 0,
                      learnable: bool = False):
    """Write an extracted CIFAR folder under root; return (folder, {split: (images, labels)})."""
    spec = DATASETS[dataset]
    archive = spec.archive(layout)
    folder = Path(root) / archive.folder
    folder.mkdir(parents=True, exist_ok=True)
    train = make_images(spec.num_classes, train_size, seed, learnable)
    test = make_images(spec.num_classes, test_size, seed + 1, learnable)
    truth = {"train": train, "test": test}
    for split, files in (("train", archive.train_files), ("test", archive.test_files)):
        images, labels = truth[split]
        start = 0
        for name, size in zip(files, _split_sizes(len(labels), len(files))):
            part = slice(start, start + size)
            start += size
            (folder / name).write_bytes(
                _encode(spec, layout, images[part], labels[part], name))
    (folder / archive.meta_file).write_bytes(_meta(spec, layout))
    return folder, truth


def _encode(spec, layout, images, labels, name) -> bytes:
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), 3 * 32 * 32)  # 1024 R, G, B
    if layout == "binary":
        if spec.num_classes == 10:
            heads = labels[:, None]
        else:
            heads = np.stack([labels // 5, labels], axis=1)  # coarse, fine
        return np.concatenate([heads.astype(np.uint8), rows], axis=1).tobytes()
    batch = {b"batch_label": name.encode(), b"data": rows,
             b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))]}
    if spec.num_classes == 10:
        batch[b"labels"] = labels.tolist()
    else:
        batch[b"fine_labels"] = labels.tolist()
        batch[b"coarse_labels"] = (labels // 5).tolist()
    return pickle.dumps(batch, protocol=4)


def _meta(spec, layout) -> bytes:
    names = [f"class_{i}" for i in range(spec.num_classes)]
    if layout == "binary":
        return ("\n".join(names) + "\n").encode()
    key = b"label_names" if spec.num_classes == 10 else b"fine_label_names"
    return pickle.dumps({key: [n.encode() for n in names], b"num_cases_per_batch": 10000},
                        protocol=4)


def make_cifar_archive(path: Path, dataset: str = "cifar10", layout: str = "python",
                       train_size: int = 500, test_size: int = 100, seed: int = 0,
                       learnable: bool = False):
    """Write a .tar.gz like the official one; return (path, {split: (images, labels)})."""
    path = Path(path)
    staging = path.parent / (path.name + ".staging")
    folder, truth = make_cifar_folder(staging, dataset, layout, train_size, test_size, seed,
                                      learnable)
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return path, truth


def add_tar_member(path: Path, name: str, payload: bytes = b"x") -> None:
    """Append a member with an arbitrary (possibly hostile) name to an uncompressed copy."""
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))


def rewrite_as_python3_protocol2(folder: Path) -> None:
    """Rewrite every pickle of an extracted python-layout folder the way py2-compatible
    converters write them from Python 3: protocol 2 (bytes go through _codecs.encode),
    str keys, class names as str, file names still bytes."""
    for path in sorted(Path(folder).iterdir()):
        batch = pickle.loads(path.read_bytes(), encoding="bytes")
        rewritten = {}
        for key, value in batch.items():
            if key.endswith(b"label_names"):
                value = [name.decode() for name in value]
            rewritten[key.decode()] = value
        path.write_bytes(pickle.dumps(rewritten, protocol=2))
