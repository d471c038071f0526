"""`fastcifar prepare`: turn an official CIFAR source into verified shards, atomically.

Everything is written into a temporary folder beside the target and renamed into place
once the manifest (written last) is complete, so an interrupted or failed prepare never
leaves something that looks prepared. The target folder is replaced as a whole, so
prepare refuses to touch one that holds anything it did not write itself.
"""
from __future__ import annotations

import errno
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from fastcifar.atomic import remove_stale_temps, replace_folder, temp_sibling
from fastcifar.datasets import DATASETS, SPLITS, get_dataset
from fastcifar.download import download, is_url
from fastcifar.errors import UserError
from fastcifar.shard_writers import WRITERS, estimate_bytes
from fastcifar.sources import file_digest, read_source, reading
from fastcifar.storage import (
    FORMAT_VERSION,
    FORMATS,
    dataset_dir,
    foreign_entries,
    read_manifest,
    require_free_space,
    sha256_of,
    shard_names,
    write_manifest,
)

_SPACE_HEADROOM = 16 << 20  # the manifest, folder entries, filesystem rounding


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
    local_source = _local_source(config.source)  # a typo is an error even when prepared
    existing = read_manifest(spec.name, config.data_dir)
    if existing:
        if not config.force and set(formats) <= set(existing["formats"]):
            log(f"{spec.name} is already prepared in {target} "
                f"({', '.join(existing['formats'])}); nothing to do (--force rewrites it)")
            return PrepareResult(folder=target, skipped=True)
        # Formats prepared earlier are rebuilt from this source too, never dropped.
        earlier = [f for f in existing["formats"] if f in FORMATS]
        formats = parse_formats(",".join((*earlier, *formats)))
    remove_stale_temps(target, log)
    _check_target(target, local_source)

    seconds = {}
    started = time.perf_counter()
    source_path, source_md5, archive_verified = _resolve_source(
        spec, config, local_source, target.parent, log)
    seconds["verify source"] = time.perf_counter() - started

    started = time.perf_counter()
    data = read_source(spec, source_path, verify_members=config.checksum)
    seconds["read source"] = time.perf_counter() - started

    _make_parent(target.parent)
    counts = {split: int(len(data.labels[split])) for split in SPLITS}
    needed = sum(estimate_bytes(fmt, n) for fmt in formats for n in counts.values())
    require_free_space(target.parent, needed + _SPACE_HEADROOM)
    tmp = temp_sibling(target)
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
            "counts": counts,
            "formats": list(formats),
            "shards": {name: sha256_of(tmp / name) for fmt in formats for split in SPLITS
                       for name in shard_names(fmt, split)},
            "source": {"path": str(source_path), "layout": data.layout, "md5": source_md5,
                       "verified": archive_verified or data.members_verified},
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        write_manifest(tmp, manifest)
        _check_target(target, local_source)  # again: files may have appeared meanwhile
        replace_folder(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(_describe_os_error(exc, target.parent)) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PrepareResult(folder=target, skipped=False, seconds=seconds, counts=counts)


def _local_source(source: str | None) -> Path | None:
    """The --source path, which must exist; None for a URL or the default download."""
    if not source or is_url(source):
        return None
    path = Path(source).expanduser()
    with reading(path):
        if not path.exists():
            raise UserError(f"{path}: no such file or folder")
    return path


def _check_target(target: Path, source: Path | None) -> None:
    """Refuse to replace a target folder that holds anything fastcifar did not write."""
    if source is not None and _is_within(source, target):
        raise UserError(f"the source {source} lies inside {target}, which prepare replaces; "
                        "move it elsewhere or choose another --data-dir")
    try:
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            raise UserError(f"{target} is not a folder fastcifar wrote; move it away or "
                            "choose another --data-dir")
        foreign = foreign_entries(target) if target.exists() else []
    except OSError as exc:
        raise UserError(_describe_os_error(exc, target)) from None
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        shown = ", ".join(foreign[:3]) + more
        raise UserError(f"{target} holds files fastcifar did not write ({shown}); prepare "
                        "replaces that folder, so move them away or choose another --data-dir")


def _is_within(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def _resolve_source(spec, config: PrepareConfig, local: Path | None, data_root: Path, log):
    """(local path, md5 of the archive or None for a folder, whether that md5 is official)."""
    official = {spec.python.md5: "python", spec.binary.md5: "binary"}
    if local is None:
        source = config.source or spec.python.url
        name = source.rstrip("/").rsplit("/", 1)[-1] or f"{spec.name}.tar.gz"
        _make_parent(data_root)
        local = download(source, data_root / "downloads" / name,
                         accept_md5=set(official) if config.checksum else None, log=log)
    with reading(local):
        if local.is_dir():
            return local, None, False  # a folder is checked member by member while reading
        md5 = file_digest(local, "md5")
    for other in DATASETS.values():
        if other.name != spec.name and md5 in (other.python.md5, other.binary.md5):
            raise UserError(f"{local} is the {other.name} archive; use --dataset {other.name}")
    if config.checksum and md5 not in official:
        raise UserError(
            f"{local}: md5 {md5} is not the official {spec.name} archive "
            f"({spec.python.md5} python, {spec.binary.md5} binary); "
            "pass --no-checksum to use it anyway"
        )
    if not config.checksum:
        log(f"warning: checksum not verified for {local} (--no-checksum)")
    return local, md5, md5 in official


def _make_parent(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(_describe_os_error(exc, folder)) from None
    if not os.access(folder, os.W_OK):
        raise UserError(f"{folder}: not writable; choose another --data-dir")


def _describe_os_error(exc: OSError, folder: Path) -> str:
    # A short write (np.save on a full disk) raises an OSError without an errno.
    if exc.errno == errno.ENOSPC or exc.errno is None:
        return f"{folder}: disk full while writing shards ({exc}); nothing was left behind"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"{folder}: not writable ({exc.strerror}); choose another --data-dir"
    return f"{folder}: {exc.strerror or exc}"
