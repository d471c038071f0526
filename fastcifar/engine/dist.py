"""Process groups: one code path for every way a run can start.

- one process:                 DistContext.single(device)
- `--gpus N` / `--nproc N`:    workers.launch_local() spawns N workers that join a process
                               group (NCCL on CUDA, gloo on the CPU) over a local TCP port
- torchrun:                    RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR are set; each
                               process joins from the environment (init_from_env)

Leaving the group (shutdown) is graceful only when every rank finished; any other way
out aborts it, after the captured graph was released (GraphRunner.close).
"""
from __future__ import annotations

import gc
import os
import threading
from dataclasses import dataclass

import torch
import torch.distributed as dist

# An abort that has not returned by then is left behind: the process exits anyway
# (ncclCommAbort has hung in some NCCL versions).
ABORT_TIMEOUT_S = 10


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

    Call it only once the captured graph is released (GraphRunner.close): NCCL's
    shutdown, graceful or not, waits for every graph that captured its collectives.

    A clean exit waits for every rank (no rank tears down while another is still in a
    collective) and first collects what still holds the group (DDP's reducer sits in
    reference cycles), so gloo's threads are joined here and not during interpreter
    shutdown, where they abort the process ("terminate called without an active
    exception"). Any other exit aborts the group: a graceful destroy would wait for
    ranks that may never arrive. The abort runs on a daemon thread, so even an abort
    that hangs cannot keep this process from exiting.
    """
    if not (ctx.distributed and dist.is_initialized()):
        return
    if clean:
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()
        gc.collect()
        return
    aborting = threading.Thread(target=_abort_group, name="fastcifar-abort", daemon=True)
    aborting.start()
    aborting.join(ABORT_TIMEOUT_S)


def _abort_group() -> None:
    try:
        # torch's abort (private, and the only one: destroy_process_group is graceful).
        dist.distributed_c10d._abort_process_group()
    except Exception:  # torn down already, or no abort in this torch: the exit frees it
        pass


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


def broadcast_object(obj, ctx: DistContext):
    """Rank 0's `obj` on every rank (pickled: tensors in it should be on the CPU)."""
    if not ctx.distributed:
        return obj
    box = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()
