"""Local multi-process runs (`--gpus N`, `--device cpu --nproc N`): start, watch, report.

launch_local() spawns one process per device; each joins a process group over a local TCP
port and runs the worker. The parent waits for all of them:

- SIGTERM or SIGINT sent to the parent is passed on to every worker; the workers stop
  together at a step boundary after rank 0 saved a checkpoint (signals.py, checks.py).
  Workers also get SIGTERM when the parent dies (Linux PR_SET_PDEATHSIG).
- A worker that ends other than cleanly writes a report (stopped, user error, or its
  traceback) before it aborts the process group, then exits.
- Once a worker has failed, the others get FAILURE_GRACE_S to end on their own (a rank
  blocked in a collective errors out when its peer aborts), then they are killed.
- One outcome comes back, the root cause: the earliest stop, user error or unexplained
  death (a crash, an os._exit); failing that, the earliest traceback. A rank that failed
  only because a peer left the group is reported last, if at all.
"""
from __future__ import annotations

import ctypes
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch.distributed

from fastcifar.atomic import atomic_write
from fastcifar.engine.dist import init_process, shutdown
from fastcifar.engine.signals import STOP_SIGNALS, exit_status, signal_name
from fastcifar.errors import RunStopped, UserError

FAILURE_GRACE_S = 15
EXIT_USER_ERROR = 3
_PR_SET_PDEATHSIG = 1
# Outcomes that explain themselves, and those that may only follow another's failure.
_ROOT_KINDS = ("stopped", "user_error", "died")
_LATER_KINDS = ("error", "peer_lost")


class WorkerFailed(UserError):
    """A training process died or failed; the others were stopped."""


@dataclass(frozen=True)
class Outcome:
    rank: int
    time: float
    kind: str  # stopped | user_error | died | error | peer_lost
    message: str
    exit_status: int = 1


def launch_local(worker, world_size: int, device_type: str, args: tuple = (), *,
                 graph: bool = False) -> None:
    """Run worker(ctx, *args) in `world_size` spawned processes, one per device.

    `worker` must be importable (a module-level function). Returns when all finished;
    raises RunStopped, the worker's UserError, or WorkerFailed otherwise.
    """
    port = _free_port()
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="fastcifar-workers-") as report_dir:
        processes = [
            context.Process(target=_worker_entry, name=f"fastcifar-rank{rank}", args=(
                rank, worker, world_size, device_type, graph, port, report_dir, args))
            for rank in range(world_size)
        ]
        with _SignalForwarding(processes) as forwarding:
            for process in processes:
                process.start()
            exit_times, killed = _wait(processes)
        outcome = _root_cause(processes, Path(report_dir), exit_times, killed,
                              forwarding.received)
    if outcome is not None:
        raise _as_exception(outcome)


def _worker_entry(rank, worker, world_size, device_type, graph, port, report_dir, args):
    _die_with_parent()
    ctx = None
    try:
        ctx = init_process(device_type, rank=rank, world_size=world_size, local_rank=rank,
                           local_world_size=world_size,
                           init_method=f"tcp://127.0.0.1:{port}", graph=graph)
        worker(ctx, *args)
        shutdown(ctx)
        status = 0
    except BaseException as exc:  # every way out is reported, then the group aborted
        status = _report(Path(report_dir), rank, exc)
        if ctx is not None:
            shutdown(ctx, clean=False)
    # The group is gone: nothing is left for interpreter shutdown to tear down except
    # what can only go wrong there (native threads of the backends).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _report(report_dir: Path, rank: int, exc: BaseException) -> int:
    """Write this rank's outcome for the parent; returns the exit status."""
    if isinstance(exc, RunStopped):
        outcome = ("stopped", str(exc), exc.exit_status)
    elif isinstance(exc, KeyboardInterrupt):  # before the run installed its handlers
        outcome = ("stopped", "interrupted (SIGINT) before training started",
                   exit_status(signal.SIGINT))
    elif isinstance(exc, UserError):
        outcome = ("user_error", str(exc), EXIT_USER_ERROR)
    else:
        kind = "peer_lost" if is_peer_failure(exc) else "error"
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        outcome = (kind, text, 1)
    kind, message, status = outcome
    with atomic_write(report_dir / f"rank{rank}.json") as f:
        json.dump({"rank": rank, "time": time.time(), "kind": kind, "message": message,
                   "exit_status": status}, f)
    return status


def is_peer_failure(exc: BaseException) -> bool:
    """An error of the collective itself: another rank left (crashed, aborted)."""
    if isinstance(exc, torch.distributed.DistError):
        return True
    # gloo reports a vanished peer as a plain RuntimeError from its transport.
    return isinstance(exc, RuntimeError) and "gloo/transport" in str(exc)


def _wait(processes) -> tuple[dict[int, float], set[int]]:
    """Wait for every process; kill the rest FAILURE_GRACE_S after the first failure.
    Returns when each one exited (time.time()) and the ranks that were killed."""
    exit_times: dict[int, float] = {}
    killed: set[int] = set()
    failed_at = None
    while len(exit_times) < len(processes):
        running = [p for rank, p in enumerate(processes) if rank not in exit_times]
        multiprocessing.connection.wait([p.sentinel for p in running], timeout=0.5)
        for rank, process in enumerate(processes):
            if rank not in exit_times and process.exitcode is not None:
                exit_times[rank] = time.time()
                if process.exitcode != 0 and failed_at is None:
                    failed_at = time.monotonic()
        if failed_at is not None and time.monotonic() - failed_at > FAILURE_GRACE_S:
            for rank, process in enumerate(processes):
                if rank not in exit_times and rank not in killed:
                    process.kill()
                    killed.add(rank)
    return exit_times, killed


def _root_cause(processes, report_dir: Path, exit_times, killed, forwarded) -> Outcome | None:
    outcomes = []
    for rank, process in enumerate(processes):
        path = report_dir / f"rank{rank}.json"
        if path.exists():
            outcomes.append(Outcome(**json.loads(path.read_text())))
        elif process.exitcode != 0 and rank not in killed:
            outcomes.append(_death(rank, process.exitcode, exit_times[rank], forwarded))
    for kinds in (_ROOT_KINDS, _LATER_KINDS):
        candidates = [o for o in outcomes if o.kind in kinds]
        if candidates:
            return min(candidates, key=lambda o: o.time)
    return None


def _death(rank: int, exitcode: int, when: float, forwarded: set[int]) -> Outcome:
    """A worker that exited without a report."""
    if -exitcode in forwarded:  # our own forwarded signal, before its handlers were set
        name = signal_name(-exitcode)
        return Outcome(rank, when, "stopped", f"stopped by {name} before training started",
                       exit_status(-exitcode))
    how = (f"was killed by {signal_name(-exitcode)}" if exitcode < 0
           else f"exited with code {exitcode}")
    return Outcome(rank, when, "died", how)


def _as_exception(outcome: Outcome) -> BaseException:
    if outcome.kind == "stopped":
        return RunStopped(outcome.message, outcome.exit_status)
    if outcome.kind == "user_error":
        return UserError(outcome.message)
    if outcome.kind == "died":
        return WorkerFailed(f"training process rank {outcome.rank} {outcome.message}; the "
                            "run was stopped (continue it with --resume)")
    print(outcome.message, file=sys.stderr, end="")
    last_line = outcome.message.strip().splitlines()[-1]
    return WorkerFailed(f"training process rank {outcome.rank} failed: {last_line} "
                        "(traceback above)")


class _SignalForwarding:
    """While the workers run, SIGTERM/SIGINT to the parent go to every worker instead."""

    def __init__(self, processes):
        self.processes = processes
        self.received: set[int] = set()
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "_SignalForwarding":
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._forward)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _forward(self, signum, frame) -> None:
        self.received.add(signum)
        for process in self.processes:
            if process.pid is not None and process.exitcode is None:
                try:
                    os.kill(process.pid, signum)
                except ProcessLookupError:
                    pass


def _die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent dies (a graceful stop)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
    except (OSError, AttributeError):
        pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
