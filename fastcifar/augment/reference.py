"""The specification: the augmentation as plain batched torch ops (any device).

Slow but obvious; the numba and Triton kernels are tested against it. For each output
sample b, pixel (y, x), channel c:

    v(s)   = 0                                     if (y, x) is in s's erase box
           = LUT[c, P_s(tile_s)(y, x, c)]             otherwise, where
    tile_s = image[s](y + dy_s, x' + dx_s, c)          with x' = 31 - x if s is flipped
             (a source pixel outside the image reads uint8 0, or reflects for "reflect")
    P_s    = s's policy ops in order, on the uint8 tile (policy_reference.py; none
             without a policy)
    out[b] = a * v(b) + (1 - a) * v(partner[b]),  a = 0 inside b's mix box, else mix_weight[b]

and soft targets t[b] = keep * (w * onehot(y_b) + (1 - w) * onehot(y_partner)) + fill.
"""
from __future__ import annotations

import torch

from fastcifar.augment.call import prepare_call, target_coefficients
from fastcifar.augment.config import IMAGE_SIZE, AugmentConfig, make_lut
from fastcifar.augment.params import AugmentParams
from fastcifar.augment.policy_reference import apply_policy
from fastcifar.augment.policy_table import policy_table


def augment_reference(images: torch.Tensor, labels: torch.Tensor, params: AugmentParams,
                      config: AugmentConfig, *, indices: torch.Tensor | None = None,
                      out: torch.Tensor | None = None, out_targets: torch.Tensor | None = None,
                      dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    batch_size, out, out_targets = prepare_call(images, labels, params, config, indices, out,
                                                out_targets, dtype)
    batch = images if indices is None else images[indices]
    batch_labels = labels if indices is None else labels[indices]
    values = _augmented_pixels(batch, params, config, make_lut(config, device=images.device))
    if config.mixing:
        a = mix_weights(params)[..., None]
        values = a * values + (1 - a) * values[params.partner]
    out.copy_(values.permute(0, 3, 1, 2))  # [B,H,W,C] -> NCHW view; copy_ rounds to dtype

    if config.soft_targets:
        out_targets.copy_(soft_targets(batch_labels, params, config))
    else:
        out_targets.copy_(batch_labels)
    return out, out_targets


def mix_weights(params: AugmentParams) -> torch.Tensor:
    """[B, H, W] float32: the weight a of each sample's own pixel (0 in its mix box)."""
    return torch.where(box_mask(params.mix_box), 0.0, params.mix_weight[:, None, None])


def soft_targets(labels: torch.Tensor, params: AugmentParams,
                 config: AugmentConfig) -> torch.Tensor:
    """float32 [B, K]: keep * (w * onehot(y_b) + (1 - w) * onehot(y_partner)) + fill."""
    onehot = torch.nn.functional.one_hot(labels, config.num_classes).float()
    w = params.target_weight[:, None]
    keep, fill = target_coefficients(config)
    return (w * onehot + (1 - w) * onehot[params.partner]) * keep + fill


def _augmented_pixels(batch: torch.Tensor, params: AugmentParams, config: AugmentConfig,
                      lut: torch.Tensor) -> torch.Tensor:
    """v(s) for every sample s of the batch: float32 [B, H, W, 3], each with its own params."""
    pixels = crop_flip(batch, params, config)
    if config.policy_steps:
        pixels = apply_policy(pixels, params.policy,
                              policy_table(config.augment_policy, batch.device))
    channels = torch.arange(3, device=batch.device)
    values = lut[channels, pixels.long()]  # LUT gather: [B, H, W, 3] float32
    return values.masked_fill(box_mask(params.erase_box)[..., None], 0.0)


def crop_flip(batch: torch.Tensor, params: AugmentParams, config: AugmentConfig) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> uint8 [B, H, W, 3]: each sample translated (pad-and-crop) and
    flipped by its own params: the tile a policy's ops start from."""
    device = batch.device
    coords = torch.arange(IMAGE_SIZE, device=device)
    dy = params.shift[:, 0, None].long()
    dx = params.shift[:, 1, None].long()
    columns = torch.where(params.flip[:, None] != 0, IMAGE_SIZE - 1 - coords, coords)
    source_y = coords[None, :] + dy  # [B, H]
    source_x = columns + dx  # [B, W]
    if config.pad_mode == "reflect":
        source_y, source_x = _reflect(source_y), _reflect(source_x)
        inside = None
    else:
        inside = _in_range(source_y)[:, :, None] & _in_range(source_x)[:, None, :]
        source_y = source_y.clamp(0, IMAGE_SIZE - 1)
        source_x = source_x.clamp(0, IMAGE_SIZE - 1)
    rows = torch.arange(batch.shape[0], device=device)[:, None, None]
    pixels = batch[rows, source_y[:, :, None], source_x[:, None, :]]  # [B, H, W, 3] uint8
    if inside is not None:
        pixels = torch.where(inside[..., None], pixels, torch.zeros_like(pixels))
    return pixels


def _in_range(index: torch.Tensor) -> torch.Tensor:
    return (index >= 0) & (index < IMAGE_SIZE)


def _reflect(index: torch.Tensor) -> torch.Tensor:
    """Mirror without repeating the edge (torch 'reflect'); padding < 32 needs one bounce."""
    last = IMAGE_SIZE - 1
    return torch.where(index < 0, -index, torch.where(index > last, 2 * last - index, index))


def box_mask(box: torch.Tensor) -> torch.Tensor:
    """[B, H, W] bool: inside [y0, y1) x [x0, x1) of each sample's box."""
    coords = torch.arange(IMAGE_SIZE, device=box.device)
    in_y = (coords >= box[:, 0, None]) & (coords < box[:, 1, None])
    in_x = (coords >= box[:, 2, None]) & (coords < box[:, 3, None])
    return in_y[:, :, None] & in_x[:, None, :]
