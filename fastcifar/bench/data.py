"""The data the pipeline and e2e suites read: the user's prepared set, or a generated one.

A prepared dataset (--data-dir, $FASTCIFAR_DATA or ~/.cache/fastcifar) is used when it
has every shard format the chosen backends read; otherwise a CIFAR-format set is
generated and prepared into a temporary folder (removed afterwards) and the report says
so. Speed does not depend on what the pixels show, only on there being as many of them.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from fastcifar.backends import SHARD_FORMATS, get_backend
from fastcifar.storage import dataset_dir, read_manifest
from fastcifar.synthetic import prepare_synthetic


@dataclass(frozen=True)
class BenchData:
    data_dir: str
    synthetic: bool
    description: str


def formats_for(backends) -> tuple[str, ...]:
    """The shard formats the backends read (native always: prepare writes it first)."""
    formats = {"native"} | {get_backend(b).shard_format for b in backends}
    return tuple(f for f in SHARD_FORMATS if f in formats)


class DataProvider:
    """Finds or generates the data once, on first use; `close()` removes a generated set."""

    def __init__(self, dataset: str, data_dir: str | None, formats, *, train_size: int,
                 test_size: int, seed: int = 0, log=print):
        self.dataset, self.data_dir, self.formats = dataset, data_dir, tuple(formats)
        self.train_size, self.test_size, self.seed, self.log = train_size, test_size, seed, log
        self._data: BenchData | None = None
        self._tmp: Path | None = None

    @property
    def description(self) -> str | None:
        """What data the suites read, once some suite asked for it."""
        return None if self._data is None else self._data.description

    def get(self) -> BenchData:
        if self._data is None:
            self._data = self._find() or self._generate()
        return self._data

    def _find(self) -> BenchData | None:
        manifest = read_manifest(self.dataset, self.data_dir)
        if manifest is None or not set(self.formats) <= set(manifest.get("formats", ())):
            return None
        where = dataset_dir(self.dataset, self.data_dir)
        counts = manifest.get("counts", {})
        return BenchData(data_dir=str(where.parent), synthetic=False,
                         description=f"prepared {self.dataset} in {where} "
                                     f"({counts.get('train', '?')} train images)")

    def _generate(self) -> BenchData:
        where = dataset_dir(self.dataset, self.data_dir)
        self._tmp = Path(tempfile.mkdtemp(prefix="fastcifar-bench-"))
        self.log(f"no {self.dataset} prepared in {'/'.join(self.formats)} at {where}: "
                 f"generating a CIFAR-format set of {self.train_size} train images "
                 f"(random class patterns) in {self._tmp}")
        started = time.perf_counter()
        prepare_synthetic(self._tmp, self.dataset, formats=self.formats,
                          train_size=self.train_size, test_size=self.test_size, seed=self.seed)
        self.log(f"generated and prepared in {time.perf_counter() - started:.1f}s")
        return BenchData(data_dir=str(self._tmp), synthetic=True,
                         description=f"generated CIFAR-format {self.dataset} "
                                     f"({self.train_size} train images), prepared in "
                                     f"{'/'.join(self.formats)}")

    def close(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
