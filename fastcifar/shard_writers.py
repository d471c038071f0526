"""Writers for the three shard formats. Each writes one split into a folder it is given."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

from fastcifar.errors import MissingExtraError


def write_native(folder: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    (folder / "native").mkdir(parents=True, exist_ok=True)
    np.save(folder / f"native/{split}_images.npy", np.ascontiguousarray(images, dtype=np.uint8))
    np.save(folder / f"native/{split}_labels.npy", labels.astype(np.int64))


class _Pairs:
    """The indexed dataset FFCV's writer walks: item i is (image HWC uint8, label int)."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])


def write_ffcv(folder: Path, split: str, images: np.ndarray, labels: np.ndarray,
               num_workers: int = 2) -> None:
    try:
        from ffcv.fields import IntField, NDArrayField
        from ffcv.writer import DatasetWriter
    except ImportError:
        raise MissingExtraError("ffcv", "ffcv") from None
    import torch

    threads = torch.get_num_threads()  # importing ffcv sets torch's thread count to 1
    try:
        (folder / "ffcv").mkdir(parents=True, exist_ok=True)
        fields = {"image": NDArrayField(np.dtype("uint8"), (32, 32, 3)), "label": IntField()}
        writer = DatasetWriter(str(folder / f"ffcv/{split}.beton"), fields, num_workers=num_workers)
        writer.from_indexed_dataset(_Pairs(images, labels), chunksize=1000)
    finally:
        torch.set_num_threads(threads)


def write_dali(folder: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    """A webdataset tar: sample i is {i:06d}.rgb (raw HWC bytes) and {i:06d}.cls (int64 LE)."""
    (folder / "dali").mkdir(parents=True, exist_ok=True)
    labels = labels.astype("<i8")
    with tarfile.open(folder / f"dali/{split}.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
        for i in range(len(labels)):
            for ext, payload in (("rgb", images[i].tobytes()), ("cls", labels[i].tobytes())):
                info = tarfile.TarInfo(f"{i:06d}.{ext}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))


WRITERS = {"native": write_native, "ffcv": write_ffcv, "dali": write_dali}
