"""Random erasing, mixup/cutmix and soft targets on an already-augmented float batch.

The native and FFCV loaders do all of this inside the fused augment op; DALI and
torchvision produce normalised floats per image, so they finish the batch here, with
parameters drawn by the same `sample_params` and the reference op's own formulas
(fastcifar/augment/reference.py):

    x[b][box_b] = 0   (random erasing: after normalisation, the dataset mean colour)
    out[b] = a * x[b] + (1 - a) * x[partner[b]],  a = 0 inside b's mix box, else mix_weight[b]
    t[b]   = keep * (w * onehot(y_b) + (1 - w) * onehot(y_partner)) + fill
"""
from __future__ import annotations

import torch

from fastcifar.augment import AugmentConfig
from fastcifar.augment.params import AugmentParams, identity_params, sample_params
from fastcifar.augment.reference import box_mask, mix_weights, soft_targets


def erase_batch(images: torch.Tensor, params: AugmentParams) -> torch.Tensor:
    """Zero each image's erase box (y0, y1, x0, x1; empty boxes erase nothing), in place."""
    inside = box_mask(params.erase_box.to(images.device))[:, None]  # [B, 1, H, W]
    return images.masked_fill_(inside, 0)


def mix_batch(images: torch.Tensor, labels: torch.Tensor, params: AugmentParams,
              config: AugmentConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """images float [B,3,32,32] (any layout), labels int64 [B] -> mixed images, soft targets."""
    if config.mixing:
        a = mix_weights(params)[:, None]  # [B,1,H,W]: broadcast over channels
        source = images.float()
        mixed = a * source + (1 - a) * source[params.partner]
        images = mixed.to(images.dtype).contiguous(memory_format=torch.channels_last)
    return images, soft_targets(labels, params, config)


def smoothed_targets(labels: torch.Tensor, config: AugmentConfig) -> torch.Tensor:
    """Soft targets without mixing (label smoothing alone): nothing to draw."""
    return soft_targets(labels, identity_params(labels.shape[0], labels.device), config)


class BatchMixer:
    """Per-epoch finishing of a float batch whose images arrive already augmented per
    image: random erasing when `erase` (a loader whose per-image ops cannot do it) and
    mixup/cutmix with soft targets; with neither, only label smoothing (nothing drawn)
    or nothing at all.

    `last_params` holds the parameters of the last batch drawn (tests replay them)."""

    def __init__(self, config: AugmentConfig, generator: torch.Generator | None,
                 device: torch.device, *, erase: bool = False):
        self.config, self.device = config, device
        self.erase = erase and config.erase_prob > 0
        self.generator = generator
        self.last_params: AugmentParams | None = None

    def skip(self, batches: int, batch_size: int) -> None:
        """Advance past `batches` full batches without images: the draws __call__ makes
        for them (a loader starting its epoch at a later batch)."""
        if self.erase or self.config.mixing:
            for _ in range(batches):
                sample_params(self.config, batch_size, self.generator, self.device)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor):
        if not (self.erase or self.config.mixing):
            if self.config.soft_targets:
                labels = smoothed_targets(labels, self.config)
            return images, labels
        params = sample_params(self.config, images.shape[0], self.generator, self.device)
        self.last_params = params
        if self.erase:
            images = erase_batch(images, params)
        if not self.config.soft_targets:
            return images, labels
        return mix_batch(images, labels, params, self.config)
