"""Turn a TrainConfig into the objects a run needs: model, loaders, wrapped model."""
from __future__ import annotations

import contextlib
import inspect
import time

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from fastcifar.augment import AugmentConfig, make_lut
from fastcifar.backends import get_backend
from fastcifar.datasets import get_dataset
from fastcifar.engine.optim import build_optimizer
from fastcifar.engine.step import TORCH_DTYPES, StepBuffers, TrainStep, make_runner
from fastcifar.models import create_model, init_whitening, whitening_layers
from fastcifar.pipelines import create_loader
from fastcifar.storage import load

# airbench initialises its whitening stem from the first 5,000 training images, unaugmented.
WHITENING_IMAGES = 5000


def build_model(config, device: torch.device) -> nn.Module:
    """The registry model on `device`, channels_last (cuDNN's fastest conv layout with
    AMP), with SyncBatchNorm when asked for on several processes."""
    options = {}
    if config.zero_init_residual:
        options["zero_init_residual"] = True
    if config.drop_path:
        options["drop_path"] = config.drop_path
    model = create_model(config.model, num_classes=get_dataset(config.dataset).num_classes,
                         **options)
    if config.sync_bn and config.world_size > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    memory_format = torch.channels_last if config.channels_last else torch.preserve_format
    return model.to(device=device, memory_format=memory_format)


def build_augment(config):
    """Training augmentation. Label smoothing goes to the loader only together with
    mixup/cutmix (which need soft targets anyway); otherwise targets stay class indices
    and the loss smooths them (cheaper, and accuracy reads the true label)."""
    return AugmentConfig.for_dataset(
        config.dataset,
        padding=config.crop_padding,
        pad_mode=config.pad_mode,
        alternating_flip=config.flip_mode == "alternating",
        cutout=config.cutout,
        erase_prob=config.erase_prob,
        augment_policy=config.augment_policy,
        ra_n=config.ra_n,
        ra_m=config.ra_m,
        mixup_alpha=config.mixup,
        cutmix_alpha=config.cutmix,
        label_smoothing=config.label_smoothing if config.mixing else 0.0,
    )


def init_from_data(config, model: nn.Module, device: torch.device,
                   resident: torch.Tensor | None = None) -> float:
    """Data-dependent initialisation: a whitening stem (airbench94's) takes its filters
    from the first WHITENING_IMAGES training images, normalised as the loader does, in
    the split's official order (the same on every rank). `resident`: the whole training
    split already on `device` (the native loader's, uint8 NHWC), else read from disk.
    Returns the seconds it took (0 for a model without one); airbench counts this time
    as training time, from images already on the GPU, as `resident` gives them."""
    if not whitening_layers(model):
        return 0.0
    start = time.perf_counter()
    if resident is not None:
        batch = resident[:WHITENING_IMAGES]
    else:
        # A loader reading the native shard has just checked its checksum (build_loaders).
        checked = get_backend(config.backend).shard_format == "native"
        images, _ = load(config.dataset, "train", config.data_dir, verify=not checked,
                         mmap=True)
        batch = torch.from_numpy(np.array(images[:WHITENING_IMAGES])).to(device)  # writable
    lut = make_lut(AugmentConfig.none(config.dataset), device=device)
    normalised = lut[torch.arange(3, device=device), batch.long()].permute(0, 3, 1, 2)
    init_whitening(model, normalised)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def loss_label_smoothing(config) -> float:
    """The smoothing the loss applies (0 when the loader already smoothed soft targets)."""
    return 0.0 if config.mixing else config.label_smoothing


def build_loaders(config, ctx):
    """(train, test) loaders for this rank: each rank reads its own shard."""
    common = dict(device=ctx.device, dtype=TORCH_DTYPES[config.dtype], data_dir=config.data_dir,
                  seed=config.seed, rank=ctx.rank, world_size=ctx.world_size,
                  num_workers=config.num_workers)
    train = create_loader(config.backend, config.dataset, "train",
                          batch_size=config.per_rank_batch_size, train=True,
                          augment=build_augment(config), **common)
    test = create_loader(config.backend, config.dataset, "test",
                         batch_size=config.eval_batch_size, train=False, augment=None, **common)
    return train, test


def buffer_sync_option(sync: bool) -> dict:
    """DDP's keyword for syncing buffers before each forward: forward_sync_buffers from
    torch 2.14 (which deprecates the old name), broadcast_buffers before it."""
    names = inspect.signature(DistributedDataParallel.__init__).parameters
    return {"forward_sync_buffers" if "forward_sync_buffers" in names
            else "broadcast_buffers": sync}


def wrap_for_training(model: nn.Module, config, ctx, stream=None) -> nn.Module:
    """DDP when distributed, then torch.compile when asked; the raw model stays the one
    checkpoints, EMA and evaluation use.

    DDP is built on `stream`, the stream the graph runner then warms up and captures on
    (one stream per trainer: see step.GraphRunner). No buffer broadcast: BN running
    statistics are averaged over ranks at each epoch's end (dist.average_buffers), so
    DDP's broadcast of every buffer before each forward would only add a collective per
    step (and make rank 0's statistics overwrite the others' mid-epoch).
    """
    wrapped = model
    if ctx.distributed:
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
            # Buffers are still synced once at construction (harmless: they start
            # equal, and a resumed rank restores its own afterwards).
            wrapped = DistributedDataParallel(model, device_ids=device_ids,
                                              **buffer_sync_option(False))
        if stream is not None:
            torch.cuda.current_stream().wait_stream(stream)
    if config.compile:
        wrapped = torch.compile(wrapped)
    return wrapped


def configure_backends(config, device: torch.device) -> None:
    """Process-wide kernel choices, set by the trainer (never at import)."""
    if device.type != "cuda":
        return
    # Fixed input shapes: let cuDNN time its algorithms once and keep the fastest.
    torch.backends.cudnn.benchmark = True
    if config.dtype == "fp32":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def build_step_state(config, model: nn.Module, device: torch.device):
    """(buffers, optimizer, grad_scaler) of a step: static buffers with the lr as a device
    tensor the optimizer reads, and a GradScaler for fp16 (eager only)."""
    buffers = StepBuffers.allocate(
        config.per_rank_batch_size,
        get_dataset(config.dataset).num_classes,
        soft_targets=config.mixing,
        lr=torch.zeros((), dtype=torch.float32, device=device),
        dtype=TORCH_DTYPES[config.dtype],
        channels_last=config.channels_last,
    )
    optimizer = build_optimizer(model, config, buffers.lr)
    grad_scaler = torch.amp.GradScaler("cuda") if config.dtype == "fp16" else None
    return buffers, optimizer, grad_scaler


def build_runner(config, ctx, model: nn.Module, optimizer, buffers, grad_scaler):
    """The runner (eager, or CUDA graph) of forward + loss + backward + update."""
    stream = None
    if config.graph:
        # The trainer's one side stream: DDP construction, warm-up and capture.
        stream = torch.cuda.Stream(ctx.device)
        stream.wait_stream(torch.cuda.current_stream(ctx.device))
    step = TrainStep(wrap_for_training(model, config, ctx, stream), optimizer, buffers,
                     label_smoothing=loss_label_smoothing(config), dtype=config.dtype,
                     grad_scaler=grad_scaler)
    return make_runner(step, graph=config.graph, distributed=ctx.distributed, stream=stream)
