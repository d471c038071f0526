"""Runs started by torchrun: every process joins the process group from its environment.

    torchrun --nnodes 2 --nproc-per-node 8 ... -m fastcifar train --model M ... --out RUNDIR

Before the process group exists, every rank checks what could stop it: rank 0 resolves
the config and claims the run directory, the others check it (when they resolve a config
themselves), so a run directory that may not be used ends every process at once with one
line (printed by the first process of each machine), not with ranks waiting in a set-up
that rank 0 has left.

Only rank 0 touches the run directory. It writes every file and, on --resume, reads the
saved config and the checkpoint and broadcasts them: machines other than rank 0's need
the prepared data, not the run directory (RUNDIR lives on rank 0's machine; no shared
filesystem is needed). So that no rank needs a file to join the group, its device comes
from the options alone (--device, else CUDA where present), the same rule on every rank;
a resumed run that was trained on another device is one line.

A failure every rank agrees on (divergence, a stop, rank 0's unreadable checkpoint) is
reported by rank 0 alone; the others exit with the same status, quietly. torchrun passes
SIGTERM on to every worker and kills them 30 s later (its shutdown timeout): enough for
the agreed stop and the checkpoint of the CIFAR models here.
"""
from __future__ import annotations

import contextlib
import os
import time
from typing import Any, Callable, Mapping

from fastcifar.engine import dist
from fastcifar.engine.config import TrainConfig
from fastcifar.engine.resolve import resolve_config
from fastcifar.engine.run_dir import check_run_dir, claimed_run_dir
from fastcifar.engine.runtime import cuda_device_count
from fastcifar.engine.workers import is_peer_failure
from fastcifar.errors import AgreedError, RunStopped, UserError

# What the CLI exits with for a UserError; a quiet rank exits alike.
EXIT_USER_ERROR = 2
# A quiet rank waits this long before it exits: torchrun stops every worker as soon as
# one exits with an error, and the rank that reports the reason must get to print it
# first (seen lost on a loaded 2-core machine, 2026-12-03).
QUIET_EXIT_DELAY_S = 5.0


def train(source: TrainConfig | Mapping[str, Any], run_process: Callable) -> dict | None:
    """Run this torchrun process's part: `source` is a resolved config (library use:
    every rank resolved its own) or the CLI's options (rank 0 resolves for everyone)."""
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    try:
        config = _resolve_here(source, rank)
        if config is not None and rank != 0:
            check_run_dir(config)
    except UserError:
        if local_rank != 0:  # the first process of this machine says it
            _quiet_exit(EXIT_USER_ERROR)
        raise
    device, graph = _group_settings(source, config)
    with claimed_run_dir(config) if rank == 0 else contextlib.nullcontext():
        ctx = dist.init_from_env(device, graph=graph)
        try:
            config = _agreed_config(config, device, ctx)
            summary = run_process(ctx, config)
            dist.shutdown(ctx)
            return summary
        except BaseException as exc:
            # run_process released the captured graph already: the group can go.
            dist.shutdown(ctx, clean=False)
            if not ctx.is_main and isinstance(exc, (AgreedError, RunStopped)):
                _quiet_exit(_exit_status(exc))
            if is_peer_failure(exc):
                raise UserError(f"rank {ctx.rank} lost contact with another training "
                                "process, which failed or was stopped (its output says "
                                "why)") from None
            raise


def _quiet_exit(status: int) -> None:
    time.sleep(QUIET_EXIT_DELAY_S)
    raise SystemExit(status) from None


def _resolve_here(source, rank: int) -> TrainConfig | None:
    """This rank's config before the group exists; None where only rank 0 may resolve
    it (a resumed run: the files are on rank 0's machine)."""
    if isinstance(source, TrainConfig):
        return source
    if source.get("resume") and rank != 0:
        return None
    return resolve_config(source)


def _group_settings(source, config: TrainConfig | None) -> tuple[str, bool]:
    """(device type, graph) of the process group, the same on every rank."""
    if isinstance(source, TrainConfig) or not source.get("resume"):
        return config.device, config.graph  # every rank resolved the same options
    device = source.get("device") or "auto"
    if device == "auto":
        device = "cuda" if cuda_device_count() > 0 else "cpu"
    graph = source.get("graph")
    return device, device == "cuda" if graph is None else bool(graph)


def _agreed_config(config: TrainConfig | None, device: str, ctx) -> TrainConfig:
    """Rank 0's config on every rank (a default run directory carries a timestamp, so
    each rank's own may differ), checked against the group's device."""
    agreed = dist.broadcast_object(config if ctx.is_main else None, ctx)
    if agreed.device != device:
        raise AgreedError(f"the run in {agreed.out} trains on {agreed.device}: pass --device "
                          f"{agreed.device} to resume it under torchrun")
    return agreed


def _exit_status(exc: BaseException) -> int:
    return exc.exit_status if isinstance(exc, RunStopped) else EXIT_USER_ERROR
