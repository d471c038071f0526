"""`fastcifar prepare`: turn an official CIFAR source into verified shards, atomically.

Everything is written into a temporary folder beside the target and renamed into place
once the manifest (written last) is complete, so an interrupted or failed prepare never
leaves something that looks prepared.
"""
from __future__ import annotations

import errno
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from fastcifar.datasets import DATASETS, SPLITS, get_dataset
from fastcifar.download import download, is_url
from fastcifar.errors import UserError
from fastcifar.shard_writers import WRITERS
from fastcifar.sources import file_digest, read_source
from fastcifar.storage import (
    FORMAT_VERSION, FORMATS, dataset_dir, read_manifest, sha256_of, shard_names,
    write_manifest,
)


@dataclass(frozen=True)
class PrepareConfig:
    dataset: str = "cifar10"
    source: str | None = None  # path or URL; None: the official python archive
    data_dir: str | None = None
    formats: tuple[str, ...] = ("native",)
    force: bool = False
    checksum: bool = True


@dataclass
class PrepareResult:
    folder: Path
    skipped: bool
    seconds: dict = field(default_factory=dict)  # step -> seconds
    counts: dict = field(default_factory=dict)


def parse_formats(text: str) -> tuple[str, ...]:
    formats = tuple(dict.fromkeys(f.strip() for f in text.split(",") if f.strip()))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise UserError(f"unknown format {','.join(unknown) or repr(text)}; "
                        f"choose from: {','.join(FORMATS)}")
    return formats if "native" in formats else ("native",) + formats


def prepare(config: PrepareConfig, log=print) -> PrepareResult:
    spec = get_dataset(config.dataset)
    formats = parse_formats(",".join(config.formats))
    target = dataset_dir(spec.name, config.data_dir)
    existing = read_manifest(spec.name, config.data_dir)
    if existing and not config.force and set(formats) <= set(existing["formats"]):
        log(f"{spec.name} is already prepared in {target} ({', '.join(existing['formats'])}); "
            "nothing to do (--force rewrites it)")
        return PrepareResult(folder=target, skipped=True)

    seconds = {}
    started = time.perf_counter()
    source_path, source_md5, verified = _resolve_source(spec, config, target.parent, log)
    seconds["verify source"] = time.perf_counter() - started

    started = time.perf_counter()
    data = read_source(spec, source_path, verify_members=config.checksum)
    seconds["read source"] = time.perf_counter() - started

    _make_parent(target.parent)
    tmp = target.parent / f".{spec.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        for fmt in formats:
            started = time.perf_counter()
            for split in SPLITS:
                WRITERS[fmt](tmp, split, data.images[split], data.labels[split])
            seconds[fmt] = time.perf_counter() - started
        manifest = {
            "format_version": FORMAT_VERSION,
            "dataset": spec.name,
            "num_classes": spec.num_classes,
            "class_names": data.class_names,
            "counts": {split: int(len(data.labels[split])) for split in SPLITS},
            "formats": list(formats),
            "shards": {name: sha256_of(tmp / name) for fmt in formats for split in SPLITS
                       for name in shard_names(fmt, split)},
            "source": {"path": str(source_path), "layout": data.layout, "md5": source_md5,
                       "verified": verified},
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        write_manifest(tmp, manifest)
        _swap_into_place(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(_describe_os_error(exc, target.parent)) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PrepareResult(folder=target, skipped=False, seconds=seconds, counts=manifest["counts"])


def _resolve_source(spec, config: PrepareConfig, data_root: Path, log):
    """(local path, md5 of the archive or None for a folder, whether it was verified)."""
    source = config.source or spec.python.url
    if is_url(source):
        name = source.rstrip("/").rsplit("/", 1)[-1] or f"{spec.name}.tar.gz"
        _make_parent(data_root)
        path = download(source, data_root / "downloads" / name)
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise UserError(f"{path}: no such file or folder")
    if path.is_dir():
        # Extracted folders are checked member by member (python layout) while reading.
        return path, None, config.checksum
    official = {spec.python.md5: "python", spec.binary.md5: "binary"}
    md5 = file_digest(path, "md5")
    for other in DATASETS.values():
        if other.name != spec.name and md5 in (other.python.md5, other.binary.md5):
            raise UserError(f"{path} is the {other.name} archive; use --dataset {other.name}")
    if config.checksum and md5 not in official:
        raise UserError(
            f"{path}: md5 {md5} is not the official {spec.name} archive "
            f"({spec.python.md5} python, {spec.binary.md5} binary); "
            "pass --no-checksum to use it anyway"
        )
    if not config.checksum:
        log(f"warning: checksum not verified for {path} (--no-checksum)")
    return path, md5, md5 in official


def _make_parent(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(_describe_os_error(exc, folder)) from None
    if not os.access(folder, os.W_OK):
        raise UserError(f"{folder}: not writable; choose another --data-dir")


def _swap_into_place(tmp: Path, target: Path) -> None:
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _describe_os_error(exc: OSError, folder: Path) -> str:
    if exc.errno == errno.ENOSPC:
        return f"{folder}: disk full while writing shards; nothing was left behind"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"{folder}: not writable ({exc.strerror}); choose another --data-dir"
    return f"{folder}: {exc.strerror or exc}"
