"""Turn a TrainConfig into the objects a run needs: model, loaders, wrapped model."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from fastcifar.augment import AugmentConfig
from fastcifar.datasets import get_dataset
from fastcifar.engine.optim import build_optimizer
from fastcifar.engine.step import TORCH_DTYPES, StepBuffers, TrainStep, make_runner
from fastcifar.models import create_model
from fastcifar.pipelines import create_loader


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
        cutout=config.cutout,
        erase_prob=config.erase_prob,
        augment_policy=config.augment_policy,
        ra_n=config.ra_n,
        ra_m=config.ra_m,
        mixup_alpha=config.mixup,
        cutmix_alpha=config.cutmix,
        label_smoothing=config.label_smoothing if config.mixing else 0.0,
    )


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


def wrap_for_training(model: nn.Module, config, ctx) -> nn.Module:
    """DDP when distributed, then torch.compile when asked; the raw model stays the one
    checkpoints, EMA and evaluation use."""
    wrapped = model
    if ctx.distributed:
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        if config.graph:
            # DDP must be built on a side stream for a full-backward capture (torch notes).
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                wrapped = DistributedDataParallel(model, device_ids=device_ids)
            torch.cuda.current_stream().wait_stream(stream)
        else:
            wrapped = DistributedDataParallel(model, device_ids=device_ids)
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
    step = TrainStep(wrap_for_training(model, config, ctx), optimizer, buffers,
                     label_smoothing=loss_label_smoothing(config), dtype=config.dtype,
                     grad_scaler=grad_scaler)
    return make_runner(step, graph=config.graph, distributed=ctx.distributed)
