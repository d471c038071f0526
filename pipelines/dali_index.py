"""Index files for DALI's webdataset reader, cached outside the prepared dataset folder.

Without an index DALI scans the whole tar on every pipeline build (and we build one per
epoch, see dali_loader.py); with one it seeks straight to each member. The format is
DALI's v1.2 (tools/wds2idx.py): a header line "v1.2 <num_samples>", then one line per
sample listing "<ext> <data offset> <size> <member name>" for each of its components.

Indexes live in DIR/.cache/dali-index/ (DIR: the data dir), named by the tar's sha256 from
the manifest, so a re-prepared shard never meets a stale index; a read-only data dir
falls back to the temp folder.
"""
from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path

from fastcifar.atomic import atomic_write

INDEX_VERSION = "v1.2"


def index_lines(tar_path: Path) -> list[str]:
    """One line per sample: its components in archive order, grouped by base name."""
    samples: list[list[str]] = []
    last_base = None
    with tarfile.open(tar_path, "r:") as tar:
        for member in tar:
            if not member.isfile():
                continue
            folder, _, name = member.name.rpartition("/")
            base, dot, ext = name.partition(".")
            if not base or not dot:
                continue  # hidden files and names without an extension are not samples
            key = f"{folder}/{base}"
            if key != last_base:
                samples.append([])
                last_base = key
            samples[-1].append(f"{ext} {member.offset_data} {member.size} {member.name}")
    return [" ".join(parts) for parts in samples]


def write_index(lines: list[str], index_path: Path) -> None:
    index_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(index_path) as f:  # a concurrent reader sees no half-written index
        f.write(f"{INDEX_VERSION} {len(lines)}\n" + "\n".join(lines) + "\n")


def cached_index(tar_path: Path, sha256: str, data_root: Path) -> Path:
    """Path of an index for tar_path, writing it first if needed."""
    name = f"{sha256[:32]}.idx"
    lines = None  # the tar is scanned once, even when the first folder is read-only
    for folder in (data_root / ".cache" / "dali-index",
                   Path(tempfile.gettempdir()) / "fastcifar-dali-index"):
        path = folder / name
        if path.exists():
            return path
        try:
            if lines is None:
                lines = index_lines(tar_path)
            write_index(lines, path)
            return path
        except OSError:
            continue
    raise OSError(f"cannot write a DALI index for {tar_path} anywhere")
