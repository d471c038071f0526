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
    params.check(batch_size, device)
    if dtype not in OUTPUT_DTYPES:
        raise ValueError(f"dtype must be one of {OUTPUT_DTYPES}, got {dtype}")

    image_shape = (batch_size, 3, IMAGE_SIZE, IMAGE_SIZE)
    if out is None:
        out = torch.empty(image_shape, dtype=dtype, device=device,
                          memory_format=torch.channels_last)
    elif (tuple(out.shape) != image_shape or out.dtype != dtype or out.device != device
          or not out.permute(0, 2, 3, 1).is_contiguous()):
        raise ValueError(f"out must be {dtype} {list(image_shape)} channels_last on {device}, got "
                         f"{out.dtype} {list(out.shape)} strides {out.stride()} on {out.device}")

    if config.soft_targets:
        target_shape, target_dtype = (batch_size, config.num_classes), torch.float32
    else:
        target_shape, target_dtype = (batch_size,), torch.int64
    if out_targets is None:
        out_targets = torch.empty(target_shape, dtype=target_dtype, device=device)
    elif (tuple(out_targets.shape) != target_shape or out_targets.dtype != target_dtype
          or out_targets.device != device or not out_targets.is_contiguous()):
        raise ValueError(f"out_targets must be contiguous {target_dtype} {list(target_shape)} "
                         f"on {device}, got {out_targets.dtype} {list(out_targets.shape)}")
    return batch_size, out, out_targets


def target_coefficients(config: AugmentConfig) -> tuple[float, float]:
    """(keep, fill): soft target = keep * mixed one-hot + fill, label smoothing folded in."""
    eps = config.label_smoothing
    return 1.0 - eps, eps / config.num_classes
