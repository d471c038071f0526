"""The call contract every implementation shares: input checks and output buffers.

Checks read only shapes, dtypes and devices (never tensor values), so they cost no device
sync; outputs are allocated only when the caller did not pass them.
"""
from __future__ import annotations

import torch

from fastcifar.augment.config import IMAGE_SIZE, AugmentConfig
from fastcifar.augment.params import AugmentParams

OUTPUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
IMAGE_ELEMENTS = IMAGE_SIZE * IMAGE_SIZE * 3


def prepare_call(images: torch.Tensor, labels: torch.Tensor, params: AugmentParams,
                 config: AugmentConfig, indices: torch.Tensor | None,
                 out: torch.Tensor | None, out_targets: torch.Tensor | None,
                 dtype: torch.dtype) -> tuple[int, torch.Tensor, torch.Tensor]:
    """Validate one augment call; return (batch_size, out, out_targets)."""
    device = images.device
    if images.dtype != torch.uint8 or tuple(images.shape[1:]) != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise ValueError(f"images must be uint8 [N, 32, 32, 3], got {images.dtype} "
                         f"{list(images.shape)}")
    if not images.is_contiguous():
        raise ValueError("images must be contiguous (HWC)")
    if labels.dtype != torch.int64 or tuple(labels.shape) != (images.shape[0],):
        raise ValueError(f"labels must be int64 [{images.shape[0]}], got {labels.dtype} "
                         f"{list(labels.shape)}")
    if labels.device != device or not labels.is_contiguous():
        raise ValueError(f"labels must be contiguous and on {device}")
    if indices is None:
        batch_size = images.shape[0]
    else:
        if indices.dtype != torch.int64 or indices.dim() != 1:
            raise ValueError(f"indices must be int64 [B], got {indices.dtype} "
                             f"{list(indices.shape)}")
        if indices.device != device or not indices.is_contiguous():
            raise ValueError(f"indices must be contiguous and on {device}")
        batch_size = indices.shape[0]
    params.check(batch_size, device, config.policy_steps)
    if dtype not in OUTPUT_DTYPES:
        raise ValueError(f"dtype must be one of {OUTPUT_DTYPES}, got {dtype}")

    check_outputs(out, out_targets, batch_size, config, dtype, device)
    if out is None:
        out = torch.empty((batch_size, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=dtype, device=device,
                          memory_format=torch.channels_last)
    if out_targets is None:
        target_shape, target_dtype = target_layout(batch_size, config)
        out_targets = torch.empty(target_shape, dtype=target_dtype, device=device)
    return batch_size, out, out_targets


def check_outputs(out: torch.Tensor | None, out_targets: torch.Tensor | None, batch_size: int,
                  config: AugmentConfig, dtype: torch.dtype, device: torch.device) -> None:
    """Raise ValueError unless each buffer given (None is skipped) is exactly what a call
    writes: images [B,3,32,32] channels_last in `dtype`, targets as target_layout says."""
    image_shape = (batch_size, 3, IMAGE_SIZE, IMAGE_SIZE)
    if out is not None and (tuple(out.shape) != image_shape or out.dtype != dtype
                            or out.device != device
                            or not out.permute(0, 2, 3, 1).is_contiguous()):
        raise ValueError(f"out must be {dtype} {list(image_shape)} channels_last on "
                         f"{device}, got {out.dtype} {list(out.shape)} strides {out.stride()} "
                         f"on {out.device}")
    target_shape, target_dtype = target_layout(batch_size, config)
    if out_targets is not None and (tuple(out_targets.shape) != target_shape
                                    or out_targets.dtype != target_dtype
                                    or out_targets.device != device
                                    or not out_targets.is_contiguous()):
        raise ValueError(f"out_targets must be contiguous {target_dtype} {list(target_shape)} "
                         f"on {device}, got {out_targets.dtype} {list(out_targets.shape)} "
                         f"on {out_targets.device}")


def target_layout(batch_size: int, config: AugmentConfig) -> tuple[tuple[int, ...], torch.dtype]:
    """(shape, dtype) of the targets: float32 [B, K] soft targets, else int64 [B] labels."""
    if config.soft_targets:
        return (batch_size, config.num_classes), torch.float32
    return (batch_size,), torch.int64


def target_coefficients(config: AugmentConfig) -> tuple[float, float]:
    """(keep, fill): soft target = keep * mixed one-hot + fill, label smoothing folded in."""
    eps = config.label_smoothing
    return 1.0 - eps, eps / config.num_classes
