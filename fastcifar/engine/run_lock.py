"""RUNDIR/run.lock: held by the process that trains in RUNDIR for as long as it runs.

An advisory flock on an empty file. The kernel releases it when its holder ends, however
it ends (a SIGKILL or a lost machine included), so a held lock means a live run and a
stale one cannot exist: `fastcifar runs` reports a folder whose lock is held as running,
and a second `fastcifar train` into a folder in use is refused in one line. The file
itself stays (removing it while others may open it would let two holders in).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

from fastcifar.errors import UserError

LOCK_NAME = "run.lock"
# `fastcifar runs` takes the lock for an instant to test it: a trainer starting at that
# moment retries for this long before it concludes that the folder is in use.
_ACQUIRE_SECONDS = 0.5


@contextlib.contextmanager
def holding_run_lock(run_dir: str | os.PathLike):
    """Create run_dir if needed and hold its lock inside the block; UserError when
    another process holds it."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UserError(f"cannot use run directory {run_dir}: {exc.strerror}") from None
    try:
        deadline = time.monotonic() + _ACQUIRE_SECONDS
        while not _try_lock(fd, fcntl.LOCK_EX):
            if time.monotonic() > deadline:
                raise UserError(f"{run_dir} is in use: another fastcifar process is training "
                                "there; wait for it to end or choose another --out")
            time.sleep(0.05)
        yield run_dir
    finally:
        os.close(fd)  # releases the lock


def is_running(run_dir: str | os.PathLike) -> bool:
    """Whether a live process holds run_dir's lock."""
    try:
        fd = os.open(Path(run_dir) / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return False  # never locked (or written before run.lock existed)
    try:
        return not _try_lock(fd, fcntl.LOCK_SH)
    finally:
        os.close(fd)


def _try_lock(fd: int, kind: int) -> bool:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
