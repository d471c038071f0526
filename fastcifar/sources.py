"""Reading the official CIFAR archives: python pickles or binary records, packed or extracted.

Everything here is defensive: a pickle may only build the few types CIFAR uses, tar
members that would escape their folder are refused, and sizes and label ranges are
checked, so a bad source becomes one clear UserError instead of a traceback.
"""
from __future__ import annotations

import codecs
import contextlib
import copyreg
import functools
import hashlib
import io
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct

from fastcifar.datasets import DATASETS, IMAGE_BYTES, ArchiveSpec, DatasetSpec
from fastcifar.errors import UserError


@dataclass
class SourceData:
    """What a source holds, already decoded: uint8 NHWC images and int64 labels per split."""

    images: dict  # split -> np.ndarray uint8 [N,32,32,3]
    labels: dict  # split -> np.ndarray int64 [N]
    class_names: list
    layout: str
    members_verified: bool  # every member's md5 was checked against the official one


def file_digest(path: Path, algorithm: str, chunk: int = 1 << 22) -> str:
    """Hex digest of a file read in 4 MiB blocks (md5 for sources, sha256 for shards)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def reading(path: Path):
    """Turn an OSError while reading a source (permissions, I/O) into one line naming it."""
    try:
        yield
    except OSError as exc:
        raise UserError(f"{exc.filename or path}: cannot read ({exc.strerror or exc})") from None


# --- restricted unpickling -------------------------------------------------------------

def _latin1_encode(text, encoding):
    """`_codecs.encode` as pickle uses it, and only that: a Python 3 pickle of protocol
    2 or lower stores each bytes object as `_codecs.encode(text, "latin1")`."""
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError(
            f"refused to call _codecs.encode with ({type(text).__name__}, {encoding!r})")
    return codecs.encode(text, "latin1")


@functools.lru_cache(maxsize=1)
def _allowed_globals() -> dict:
    """The only callables a CIFAR pickle needs: numpy's array rebuilders, object, and the
    latin1 bytes rebuilder of pickles written by Python 3 with protocol 2."""
    return {
        ("_codecs", "encode"): _latin1_encode,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("copy_reg", "_reconstructor"): copyreg._reconstructor,
        ("copyreg", "_reconstructor"): copyreg._reconstructor,
        ("__builtin__", "object"): object,
        ("builtins", "object"): object,
    }


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds only numpy arrays, dtypes and plain containers; anything else is refused."""

    def find_class(self, module, name):
        allowed = _allowed_globals()
        if (module, name) in allowed:
            return allowed[(module, name)]
        raise pickle.UnpicklingError(f"refused to load {module}.{name}")


def load_restricted(data: bytes, what: str):
    """Unpickle numpy arrays and plain containers only (Python 2 strings as bytes)."""
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise UserError(f"{what}: not a CIFAR pickle ({exc})") from None
    except Exception as exc:  # truncated or garbage bytes
        raise UserError(f"{what}: corrupt or truncated pickle ({type(exc).__name__})") from None


def unpickle_restricted(data: bytes, what: str) -> dict:
    obj = load_restricted(data, what)
    if not isinstance(obj, dict):
        raise UserError(f"{what}: not a CIFAR batch (expected a dict)")
    return obj


# --- members: from a tar archive or from a folder ----------------------------------------

class _Members:
    """Read-only access to the member files of one layout folder, packed or extracted."""

    def __init__(self, root: Path):
        self.root = root
        self._tar = None
        self._index = {}

    @classmethod
    def open(cls, path: Path) -> "_Members":
        members = cls(path)
        if path.is_dir():
            return members
        not_an_archive = UserError(f"{path} is not a readable .tar.gz archive")
        try:
            members._tar = tarfile.open(path, "r:*")
            infos = members._tar.getmembers()
        except OSError as exc:
            if exc.errno is not None:  # a real I/O failure (permissions...), not bad data
                raise
            raise not_an_archive from None  # gzip's BadGzipFile is an errno-less OSError
        except (tarfile.TarError, EOFError, zlib.error):
            raise not_an_archive from None
        for info in infos:
            _check_member_is_safe(path, info)
            if info.isfile():
                members._index[PurePosixPath(info.name).as_posix().lstrip("./")] = info
        return members

    def names(self) -> set:
        if self._tar is None:
            return {p.relative_to(self.root).as_posix() for p in self.root.rglob("*")
                    if p.is_file()}
        return set(self._index)

    def position(self, name: str) -> int:
        """Where a member starts in the tar (0 in a folder): reading in this order never
        rewinds the gzip stream, which would decompress it again from the start."""
        return 0 if self._tar is None else self._info(name).offset

    def is_folder(self) -> bool:
        return self._tar is None

    def read(self, name: str) -> bytes:
        if self._tar is None:
            try:
                return (self.root / name).read_bytes()
            except FileNotFoundError:
                raise UserError(f"{self.root}: member {name} is missing") from None
        info = self._info(name)
        try:
            return self._tar.extractfile(info).read()
        except Exception as exc:  # tarfile, gzip and zlib each fail their own way on bad data
            raise UserError(f"{self.root}: cannot read {name}: truncated or corrupt ({exc})") \
                from None

    def _info(self, name: str) -> tarfile.TarInfo:
        try:
            return self._index[name]
        except KeyError:
            raise UserError(f"{self.root}: member {name} is missing") from None

    def close(self):
        if self._tar is not None:
            self._tar.close()


def _check_member_is_safe(archive: Path, info: tarfile.TarInfo) -> None:
    name = PurePosixPath(info.name)
    if name.is_absolute() or ".." in name.parts:
        raise UserError(f"{archive}: refused: member {info.name!r} would escape the target folder")
    if info.issym() or info.islnk():
        target = PurePosixPath(info.linkname)
        if target.is_absolute() or ".." in target.parts:
            raise UserError(f"{archive}: refused: link {info.name!r} points outside the archive")
    if info.isdev():
        raise UserError(f"{archive}: refused: member {info.name!r} is a device file")


# --- locating the layout ----------------------------------------------------------------

def _find_layout(spec: DatasetSpec, names: set, where: Path) -> tuple[ArchiveSpec, str]:
    """Which layout (python/binary) the member names hold, and the folder prefix."""
    for archive in (spec.python, spec.binary):
        wanted = archive.train_files[0]
        for name in names:
            path = PurePosixPath(name)
            if path.name == wanted and (path.parent.name == archive.folder or len(path.parts) == 1):
                prefix = path.parent.as_posix()
                return archive, "" if prefix == "." else prefix + "/"
    for other in DATASETS.values():
        if other.name == spec.name:
            continue
        for archive in (other.python, other.binary):
            if any(PurePosixPath(n).parent.name == archive.folder for n in names):
                raise UserError(
                    f"{where}: this source holds {other.name}, not {spec.name}; "
                    f"use --dataset {other.name}"
                )
    raise UserError(
        f"{where}: no CIFAR {spec.name} files found (expected {spec.python.folder}/ or "
        f"{spec.binary.folder}/)"
    )


# --- decoding ------------------------------------------------------------------------------

def _field(batch: dict, name: str):
    """batch[name]: the official pickles (Python 2) have bytes keys, pickles written by
    Python 3 converters have str keys."""
    value = batch.get(name.encode())
    return batch.get(name) if value is None else value


def _to_nhwc(rows: np.ndarray) -> np.ndarray:
    # CIFAR rows are 1024 R, 1024 G, 1024 B values of a row-major 32x32 image.
    return np.ascontiguousarray(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def _check_labels(labels: np.ndarray, num_classes: int, what: str) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(f"{what}: label outside [0, {num_classes})")


def _decode_python_batch(spec: DatasetSpec, data: bytes, what: str):
    batch = unpickle_restricted(data, what)
    rows = _field(batch, "data")
    labels = _field(batch, "labels" if spec.num_classes == 10 else "fine_labels")
    if rows is None or labels is None:
        keys = sorted(k.decode(errors="replace") if isinstance(k, bytes) else str(k) for k in batch)
        raise UserError(f"{what}: missing data or labels (keys: {', '.join(keys)}); wrong dataset?")
    rows = np.asarray(rows)
    labels = np.asarray(labels, dtype=np.int64)
    if rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != IMAGE_BYTES:
        raise UserError(f"{what}: data is {rows.dtype}{list(rows.shape)}, expected uint8[N, 3072]")
    if len(labels) != len(rows):
        raise UserError(f"{what}: {len(rows)} images but {len(labels)} labels")
    _check_labels(labels, spec.num_classes, what)
    return _to_nhwc(rows), labels


def _decode_binary_batch(spec: DatasetSpec, data: bytes, what: str):
    label_bytes = 1 if spec.num_classes == 10 else 2  # CIFAR-100: coarse, fine
    record = label_bytes + IMAGE_BYTES
    if len(data) == 0 or len(data) % record:
        raise UserError(
            f"{what}: {len(data)} bytes is not a whole number of {record}-byte records "
            "(truncated, or the wrong dataset)"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, record)
    labels = records[:, label_bytes - 1].astype(np.int64)
    _check_labels(labels, spec.num_classes, what)
    return _to_nhwc(records[:, label_bytes:]), labels


def _decode_class_names(spec: DatasetSpec, archive: ArchiveSpec, data: bytes, what: str) -> list:
    if archive.layout == "python":
        meta = unpickle_restricted(data, what)
        key = "label_names" if spec.num_classes == 10 else "fine_label_names"
        names = [n.decode() if isinstance(n, bytes) else str(n)
                 for n in _field(meta, key) or []]
    else:
        lines = data.decode(errors="replace").splitlines()
        names = [line.strip() for line in lines if line.strip()]
    if len(names) != spec.num_classes:
        raise UserError(f"{what}: {len(names)} class names, expected {spec.num_classes}")
    return names


def read_source(spec: DatasetSpec, path: Path, verify_members: bool) -> SourceData:
    """Decode an archive (.tar.gz) or an extracted folder into arrays, in official order."""
    with reading(path):
        return _read_source(spec, path, verify_members)


def _read_source(spec: DatasetSpec, path: Path, verify_members: bool) -> SourceData:
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    members = _Members.open(path)
    try:
        archive, prefix = _find_layout(spec, members.names(), path)
        if verify_members and not archive.member_md5 and members.is_folder():
            raise UserError(
                f"{path}: an extracted binary folder cannot be verified (no official md5s "
                "are published for its files); pass the official .tar.gz, or --no-checksum"
            )
        decode = _decode_python_batch if archive.layout == "python" else _decode_binary_batch

        def load(name: str):  # a function, so a member's raw bytes are freed once decoded
            data = members.read(prefix + name)
            _verify_member(archive, name, data, verify_members, path)
            if name == archive.meta_file:
                return _decode_class_names(spec, archive, data, f"{path}: {name}")
            return decode(spec, data, f"{path}: {name}")

        # Archive order reads the gzip stream once; sorted() asks for every position in
        # official order, so a missing member is reported as if read in official order.
        wanted = (*archive.train_files, *archive.test_files, archive.meta_file)
        decoded = {n: load(n) for n in sorted(wanted, key=lambda n: members.position(prefix + n))}
    finally:
        members.close()
    images, labels = {}, {}
    for split, files in (("train", archive.train_files), ("test", archive.test_files)):
        parts = [decoded.pop(name) for name in files]
        images[split] = np.concatenate([p[0] for p in parts])
        labels[split] = np.concatenate([p[1] for p in parts])
        if len(labels[split]) == 0:
            raise UserError(f"{path}: the {split} split holds no images")
    names = decoded.pop(archive.meta_file)
    return SourceData(images=images, labels=labels, class_names=names, layout=archive.layout,
                      members_verified=verify_members and bool(archive.member_md5))


def _verify_member(archive: ArchiveSpec, name: str, data: bytes, verify: bool, where: Path):
    expected = archive.member_md5.get(name)
    if not (verify and expected):
        return
    actual = hashlib.md5(data).hexdigest()
    if actual != expected:
        raise UserError(
            f"{where}: {name} has md5 {actual}, not the official {expected}; "
            "pass --no-checksum to use it anyway"
        )
