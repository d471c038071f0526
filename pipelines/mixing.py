"""Mixup/cutmix and soft targets on an already-augmented float batch.

The native and FFCV loaders mix inside the fused augment op; DALI and torchvision produce
normalised floats per image, so they mix the batch here, with parameters drawn by the same
`sample_params` and the same formula as the op (fastcifar/augment/reference.py):

    out[b] = a * x[b] + (1 - a) * x[partner[b]],  a = 0 inside b's mix box, else mix_weight[b]
    t[b]   = keep * (w * onehot(y_b) + (1 - w) * onehot(y_partner)) + fill
"""
from __future__ import annotations

import torch

from fastcifar.augment import AugmentConfig
from fastcifar.augment.call import target_coefficients
from fastcifar.augment.params import AugmentParams

IMAGE_SIZE = 32


def mix_batch(images: torch.Tensor, labels: torch.Tensor, params: AugmentParams,
              config: AugmentConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """images float [B,3,32,32] (any layout), labels int64 [B] -> mixed images, soft targets."""
    if config.mixing:
        coords = torch.arange(IMAGE_SIZE, device=images.device)
        box = params.mix_box
        in_y = (coords >= box[:, 0, None]) & (coords < box[:, 1, None])
        in_x = (coords >= box[:, 2, None]) & (coords < box[:, 3, None])
        inside = in_y[:, :, None] & in_x[:, None, :]  # [B, H, W]
        a = torch.where(inside, 0.0, params.mix_weight[:, None, None])[:, None]  # [B,1,H,W]
        source = images.float()
        mixed = a * source + (1 - a) * source[params.partner]
        images = mixed.to(images.dtype).contiguous(memory_format=torch.channels_last)
    onehot = torch.nn.functional.one_hot(labels, config.num_classes).float()
    w = params.target_weight[:, None]
    keep, fill = target_coefficients(config)
    targets = (w * onehot + (1 - w) * onehot[params.partner]) * keep + fill
    return images, targets
