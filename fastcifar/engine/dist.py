"""Processes: one per device, one code path for every way a run can start.

- one process:                 DistContext.single(device)
- `--gpus N` / `--nproc N`:    launch_local() spawns N workers that join a process group
                               (NCCL on CUDA, gloo on the CPU) over a local TCP port
- torchrun:                    RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR are set; each
                               process joins from the environment (init_from_env)

When a local worker dies or fails, torch's spawn terminates the others; launch_local then
raises one clear error naming the rank (a UserError raised inside a worker comes back as
that same one-line message).
"""
from __future__ import annotations

import gc
import os
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from fastcifar.errors import UserError

_EXIT_USER_ERROR = 3


class WorkerFailed(UserError):
    """A training process died or failed; the others were stopped."""


@dataclass(frozen=True)
class DistContext:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def single(cls, device_type: str) -> "DistContext":
        device = torch.device("cuda", torch.cuda.current_device()) if device_type == "cuda" \
            else torch.device("cpu")
        return cls(device=device)


def init_from_env(device_type: str, *, graph: bool = False) -> DistContext:
    """Join the process group torchrun (or any launcher setting its variables) set up."""
    env = os.environ
    return init_process(
        device_type,
        rank=int(env["RANK"]),
        world_size=int(env["WORLD_SIZE"]),
        local_rank=int(env["LOCAL_RANK"]),
        local_world_size=int(env.get("LOCAL_WORLD_SIZE", env["WORLD_SIZE"])),
        init_method="env://",
        graph=graph,
    )


def init_process(device_type: str, *, rank: int, world_size: int, local_rank: int,
                 local_world_size: int, init_method: str, graph: bool = False) -> DistContext:
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
        backend = "nccl"
        if graph:
            # A full-backward capture under DDP needs NCCL's async error handling off
            # (torch CUDA-graph notes, "Usage with DistributedDataParallel"). Assigned,
            # not defaulted: torchrun's agent sets it to 1 in every worker.
            os.environ["TORCH_NCCL_ASYNC_ERROR_HANDLING"] = "0"
    else:
        device = torch.device("cpu")
        backend = "gloo"
        # Share the cores instead of every process starting one thread per core.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world_size))
    if world_size > 1:
        dist.init_process_group(
            backend,
            init_method=init_method,
            rank=rank,
            world_size=world_size,
            device_id=device if device_type == "cuda" else None,
        )
    return DistContext(device=device, rank=rank, world_size=world_size,
                       local_rank=local_rank, local_world_size=local_world_size)


def shutdown(ctx: DistContext, *, clean: bool = True) -> None:
    """Leave the process group; `clean` when this rank finished its work.

    A clean exit waits for every rank (no rank tears down while another is still in a
    collective) and first collects what still holds the group (DDP's reducer sits in
    reference cycles), so gloo's threads are joined here and not during interpreter
    shutdown, where they abort the process ("terminate called without an active
    exception"). A failing rank must not wait: the others may never arrive.
    """
    if not (ctx.distributed and dist.is_initialized()):
        return
    if clean:
        gc.collect()
        dist.barrier()
    dist.destroy_process_group()
    gc.collect()


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum `tensor` over ranks in place (a no-op on one process)."""
    if ctx.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def average_buffers(module: torch.nn.Module, ctx: DistContext) -> None:
    """Average floating-point buffers (BN running statistics) over ranks, in place.

    Each rank's BN statistics follow its own shard after the last forward; averaging
    them once per epoch makes evaluation, checkpoints and ranks agree.
    """
    if not ctx.distributed:
        return
    buffers = [b for b in module.buffers() if b.is_floating_point()]
    if not buffers:
        return
    flat = torch.cat([b.detach().reshape(-1) for b in buffers])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= ctx.world_size
    offset = 0
    for b in buffers:
        b.copy_(flat[offset:offset + b.numel()].view_as(b))
        offset += b.numel()


def all_gather_objects(obj, ctx: DistContext) -> list:
    if not ctx.distributed:
        return [obj]
    gathered = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def launch_local(worker, world_size: int, device_type: str, args: tuple = (), *,
                 graph: bool = False) -> None:
    """Run worker(ctx, *args) in `world_size` spawned processes, one per device.

    `worker` must be importable (a module-level function); it returns nothing. Blocks
    until all workers finish; raises WorkerFailed (or the worker's own UserError message)
    when any of them fails.
    """
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="fastcifar-workers-") as error_dir:
        try:
            torch.multiprocessing.spawn(
                _worker_entry,
                args=(worker, world_size, device_type, graph, port, error_dir, args),
                nprocs=world_size,
                join=True,
            )
        except torch.multiprocessing.ProcessExitedException as exc:
            user_message = _first_user_error(Path(error_dir))
            if user_message is not None:
                raise UserError(user_message) from None
            how = f"was killed by {exc.signal_name}" if exc.signal_name else \
                f"exited with code {exc.exit_code}"
            raise WorkerFailed(
                f"training process rank {exc.error_index} {how}; the run was stopped "
                "(continue it with --resume)"
            ) from None
        except torch.multiprocessing.ProcessRaisedException as exc:
            last_line = str(exc).strip().splitlines()[-1]
            print(str(exc), file=sys.stderr)
            raise WorkerFailed(
                f"training process rank {exc.error_index} failed: {last_line} (traceback above)"
            ) from None


def _worker_entry(rank, worker, world_size, device_type, graph, port, error_dir, args):
    try:
        ctx = init_process(
            device_type,
            rank=rank,
            world_size=world_size,
            local_rank=rank,
            local_world_size=world_size,
            init_method=f"tcp://127.0.0.1:{port}",
            graph=graph,
        )
        try:
            worker(ctx, *args)
        except BaseException:
            shutdown(ctx, clean=False)
            raise
        shutdown(ctx)
    except UserError as exc:
        (Path(error_dir) / f"rank{rank}.txt").write_text(str(exc))
        sys.exit(_EXIT_USER_ERROR)
    # The work is done and the group is gone: nothing is left for interpreter shutdown
    # to tear down except what can only go wrong there (native threads of the backends).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _first_user_error(error_dir: Path) -> str | None:
    files = sorted(error_dir.glob("rank*.txt"), key=lambda p: int(p.stem[4:]))
    return files[0].read_text() if files else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
