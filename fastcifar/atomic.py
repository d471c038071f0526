"""Atomic writes: a reader sees the old file (or folder) or the whole new one, never a part.

Temporaries are siblings named `.<name>.tmp-<pid>` (and `.<name>.old-<pid>` for a folder
being replaced), so one left behind by a killed process can be recognised and removed.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path


def temp_sibling(path: Path, kind: str = "tmp") -> Path:
    """The temporary beside `path` that this process uses: .<name>.<kind>-<pid>."""
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w"):
    """Yield a file open on a temporary sibling; on success flush, fsync and rename it
    over `path` (then fsync the folder so the rename survives a crash)."""
    path = Path(path)
    tmp = temp_sibling(path)
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):  # e.g. a read-only folder: keep the first error
            tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def check_writable(path: str | os.PathLike) -> None:
    """Raise the OSError that writing `path` would meet (a read-only or full folder, no
    permission), by creating and removing a temporary beside it; the file is not touched."""
    probe = temp_sibling(Path(path), "probe")
    with open(probe, "xb"):
        pass
    probe.unlink()


def replace_folder(tmp: Path, target: Path) -> None:
    """Rename the finished folder `tmp` over `target` (the old one is moved aside first,
    then removed: a folder cannot be renamed over a non-empty one)."""
    old = None
    if target.exists():
        old = temp_sibling(target, "old")
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)  # put the previous folder back
        raise
    _fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove_stale_temps(path: Path, warn) -> None:
    """Remove the temporary folders of `path` (.<name>.tmp-<pid>, .<name>.old-<pid>) left
    by processes that are gone; a live process's are kept. `warn` gets one line per
    temporary that cannot be removed."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?:tmp|old)-(\d+)")
    try:
        entries = list(path.parent.iterdir())
    except OSError:  # no folder yet (nothing to clean) or unreadable (prepare says so later)
        return
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or _is_alive(int(match.group(1))):
            continue
        try:
            shutil.rmtree(entry)
        except OSError as exc:
            warn(f"warning: could not remove {entry}, left by a killed run "
                 f"({exc.strerror or exc})")


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: checks that the process exists, sends nothing
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    except (OverflowError, ValueError):  # not a pid this system can have
        return False
    return True


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a folder; the rename itself is still atomic
    finally:
        os.close(fd)
