"""Fused training augmentation: one kernel launch turns uint8 images into a training batch.

    params = sample_params(config, batch_size, generator, device)   # all randomness here
    images, targets = augment(dataset_images, dataset_labels, params, config, indices=batch)

Gather by `indices`, pad-and-crop translate, horizontal flip, normalise (via a LUT),
cutout or random erasing, mixup or cutmix and (soft) targets happen in one pass, written
as NCHW channels_last float32/float16/bfloat16 into `out` when given. Three
implementations share one signature and one spec (reference.py): "reference" (torch ops),
"numba" (CPU) and "triton" (GPU; also runs on CPU tensors through Triton's interpreter;
imported on first use). AutoAugment (config.autoaugment), which
sits between flip and normalisation, runs as a batched pass in front (autoaugment.py).
"""
from __future__ import annotations

import dataclasses
import importlib

import torch

from fastcifar.augment.autoaugment import autoaugment
from fastcifar.augment.config import AugmentConfig, make_lut
from fastcifar.augment.numba_cpu import augment_numba
from fastcifar.augment.params import AugmentParams, identity_params, sample_params
from fastcifar.augment.reference import augment_reference, crop_flip

IMPLS = ("reference", "numba", "triton", "auto")

__all__ = [
    "AugmentConfig", "AugmentParams", "augment", "augment_numba", "augment_reference",
    "identity_params", "make_lut", "sample_params", "IMPLS",
]


def augment(images: torch.Tensor, labels: torch.Tensor, params: AugmentParams,
            config: AugmentConfig, *, indices: torch.Tensor | None = None,
            out: torch.Tensor | None = None, out_targets: torch.Tensor | None = None,
            dtype: torch.dtype = torch.float32, impl: str = "auto",
            autoaugment_params=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a batch; returns (images [B,3,32,32] channels_last, targets).

    targets are int64 class indices [B], or float32 [B, num_classes] soft targets when
    config.soft_targets. impl "auto" picks triton for CUDA tensors and numba on CPU.

    With config.autoaugment (and `autoaugment_params` from sample_autoaugment) the batch
    is gathered, pad-cropped and flipped in uint8 first, AutoAugment runs on that (batched
    torch ops, see autoaugment.py), and the fused op does the rest: two passes over the
    batch instead of one, as AutoAugment sits between flip and normalisation.
    """
    if config.autoaugment:
        images, labels, params = _autoaugmented(images, labels, params, config, indices,
                                                autoaugment_params)
        indices = None
    if impl == "auto":
        impl = "triton" if images.is_cuda else "numba"
    if impl == "reference":
        run = augment_reference
    elif impl == "numba":
        run = augment_numba
    elif impl == "triton":
        # Imported on first use: importing triton fixes its interpreter mode
        # (TRITON_INTERPRET, see triton_gpu.py) and costs a second a CPU run does not need.
        run = importlib.import_module("fastcifar.augment.triton_gpu").augment_triton
    else:
        raise ValueError(f"impl must be one of {', '.join(IMPLS)}, got {impl!r}")
    return run(images, labels, params, config, indices=indices, out=out,
               out_targets=out_targets, dtype=dtype)


def _autoaugmented(images, labels, params, config, indices, autoaugment_params):
    """(crop/flip + AutoAugment of the batch as uint8, its labels, params without the
    crop/flip already applied)."""
    if autoaugment_params is None:
        raise ValueError("config.autoaugment needs autoaugment_params (sample_autoaugment)")
    batch = images if indices is None else images[indices]
    batch_labels = labels if indices is None else labels[indices]
    batch = autoaugment(crop_flip(batch, params, config), autoaugment_params)
    done = dataclasses.replace(params, shift=torch.zeros_like(params.shift),
                               flip=torch.zeros_like(params.flip))
    return batch, batch_labels.contiguous(), done
