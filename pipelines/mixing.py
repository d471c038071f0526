"""Mixup/cutmix and soft targets on an already-augmented float batch.

The native and FFCV loaders mix inside the fused augment op; DALI and torchvision produce
normalised floats per image, so they mix the batch here, with parameters drawn by the same
`sample_params` and the reference op's own formulas (fastcifar/augment/reference.py):

    out[b] = a * x[b] + (1 - a) * x[partner[b]],  a = 0 inside b's mix box, else mix_weight[b]
    t[b]   = keep * (w * onehot(y_b) + (1 - w) * onehot(y_partner)) + fill
"""
from __future__ import annotations

import torch

from fastcifar.augment import AugmentConfig
from fastcifar.augment.params import AugmentParams, sample_params
from fastcifar.augment.reference import mix_weights, soft_targets


def mix_batch(images: torch.Tensor, labels: torch.Tensor, params: AugmentParams,
              config: AugmentConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """images float [B,3,32,32] (any layout), labels int64 [B] -> mixed images, soft targets."""
    if config.mixing:
        a = mix_weights(params)[:, None]  # [B,1,H,W]: broadcast over channels
        source = images.float()
        mixed = a * source + (1 - a) * source[params.partner]
        images = mixed.to(images.dtype).contiguous(memory_format=torch.channels_last)
    return images, soft_targets(labels, params, config)


class BatchMixer:
    """Per-epoch mixing of a float batch (loaders whose images arrive per image already
    augmented): a no-op unless the config wants soft targets."""

    def __init__(self, config: AugmentConfig, generator: torch.Generator | None,
                 device: torch.device):
        self.config, self.device = config, device
        self.generator = generator if config.soft_targets else None

    def __call__(self, images: torch.Tensor, labels: torch.Tensor):
        if self.generator is None:
            return images, labels
        params = sample_params(self.config, images.shape[0], self.generator, self.device)
        return mix_batch(images, labels, params, self.config)
