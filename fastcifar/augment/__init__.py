"""Fused training augmentation: one kernel launch turns uint8 images into a training batch.

    params = sample_params(config, batch_size, generator, device)   # all randomness here
    images, targets = augment(dataset_images, dataset_labels, params, config, indices=batch)

Gather by `indices`, pad-and-crop translate, horizontal flip, normalise (via a LUT),
cutout or random erasing, mixup or cutmix and (soft) targets happen in one pass, written
as NCHW channels_last float32/float16/bfloat16 into `out` when given. Three
implementations share one signature and one spec (reference.py): "reference" (torch ops),
"numba" (CPU) and "triton" (GPU; also runs on CPU tensors through Triton's interpreter;
imported on first use). An augmentation policy (config.augment_policy: AutoAugment,
RandAugment or TrivialAugmentWide) runs inside the same launch, on each sample's uint8 tile
between flip and normalisation; its per-sample ops are drawn by sample_params with the
rest (policy_space.py, policy_sampler.py), its ops specified by policy_reference.py.
"""
from __future__ import annotations

import importlib

import torch

from fastcifar.augment.config import AugmentConfig, make_lut
from fastcifar.augment.numba_cpu import augment_numba
from fastcifar.augment.params import AugmentParams, identity_params, sample_params
from fastcifar.augment.reference import augment_reference

IMPLS = ("reference", "numba", "triton", "auto")

__all__ = [
    "AugmentConfig", "AugmentParams", "augment", "augment_numba", "augment_reference",
    "identity_params", "make_lut", "sample_params", "IMPLS",
]


def augment(images: torch.Tensor, labels: torch.Tensor, params: AugmentParams,
            config: AugmentConfig, *, indices: torch.Tensor | None = None,
            out: torch.Tensor | None = None, out_targets: torch.Tensor | None = None,
            dtype: torch.dtype = torch.float32,
            impl: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a batch; returns (images [B,3,32,32] channels_last, targets).

    targets are int64 class indices [B], or float32 [B, num_classes] soft targets when
    config.soft_targets. impl "auto" picks triton for CUDA tensors and numba on CPU.
    With config.augment_policy, params.policy holds each sample's ops (sample_params).
    """
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

