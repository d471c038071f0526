"""Per-sample augmentation parameters, sampled on the device from a generator passed in.

This is the only place augmentation randomness comes from: the kernels are deterministic
functions of (images, indices, labels, params), so the same seed gives the same batch on
every implementation. Nothing here reads a device value back to the host.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from fastcifar.augment.config import IMAGE_SIZE, AugmentConfig
from fastcifar.augment.policy_sampler import sample_policy

ERASE_ATTEMPTS = 10  # as torchvision's RandomErasing: first fitting rectangle of 10 tries


@dataclass
class AugmentParams:
    """All tensors on one device; first dimension is the batch size B."""

    shift: torch.Tensor  # int32 [B, 2]: (dy, dx); output (y, x) reads source (y+dy, x+dx)
    flip: torch.Tensor  # int32 [B]: 1 = mirror the cropped image left-right
    erase_box: torch.Tensor  # int32 [B, 4]: y0, y1, x0, x1, set to 0 after normalisation
    partner: torch.Tensor  # int64 [B]: batch position mixed into each sample
    mix_weight: torch.Tensor  # float32 [B]: weight of self outside the mix box
    mix_box: torch.Tensor  # int32 [B, 4]: region taken from the partner (weight of self 0)
    target_weight: torch.Tensor  # float32 [B]: weight of self's label in the soft target
    policy: torch.Tensor  # int32 [B, steps]: policy entries after crop/flip (policy_space.py)

    @property
    def batch_size(self) -> int:
        return self.shift.shape[0]

    @property
    def device(self) -> torch.device:
        return self.shift.device

    def to(self, device) -> "AugmentParams":
        return AugmentParams(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def check(self, batch_size: int, device: torch.device, policy_steps: int = 0) -> None:
        """Raise ValueError unless every tensor has the documented dtype, shape and device."""
        for f in fields(self):
            tensor = getattr(self, f.name)
            dtype, trailing = _LAYOUT[f.name]
            shape = (batch_size, *(policy_steps if t is None else t for t in trailing))
            if tensor.dtype != dtype or tuple(tensor.shape) != shape:
                raise ValueError(f"params.{f.name} must be {dtype} {list(shape)}, "
                                 f"got {tensor.dtype} {list(tensor.shape)}")
            if tensor.device != device:
                raise ValueError(f"params.{f.name} is on {tensor.device}, images on {device}")
            if not tensor.is_contiguous():
                raise ValueError(f"params.{f.name} must be contiguous")


_LAYOUT = {
    "shift": (torch.int32, (2,)),
    "flip": (torch.int32, ()),
    "erase_box": (torch.int32, (4,)),
    "partner": (torch.int64, ()),
    "mix_weight": (torch.float32, ()),
    "mix_box": (torch.int32, (4,)),
    "target_weight": (torch.float32, ()),
    "policy": (torch.int32, (None,)),  # None: the config's policy steps
}


def identity_params(batch_size: int, device: torch.device | str = "cpu",
                    policy_steps: int = 0) -> AugmentParams:
    """No augmentation at all: no shift, no flip, empty boxes, every sample its own partner,
    every policy step the identity (entry 0)."""
    int32 = dict(dtype=torch.int32, device=device)
    return AugmentParams(
        shift=torch.zeros(batch_size, 2, **int32),
        flip=torch.zeros(batch_size, **int32),
        erase_box=torch.zeros(batch_size, 4, **int32),
        partner=torch.arange(batch_size, dtype=torch.int64, device=device),
        mix_weight=torch.ones(batch_size, dtype=torch.float32, device=device),
        mix_box=torch.zeros(batch_size, 4, **int32),
        target_weight=torch.ones(batch_size, dtype=torch.float32, device=device),
        policy=torch.zeros(batch_size, policy_steps, **int32),
    )


def sample_params(config: AugmentConfig, batch_size: int, generator: torch.Generator | None,
                  device: torch.device | str) -> AugmentParams:
    """Draw one batch of parameters on `device` (the generator must live there too).

    When both mixup and cutmix are on, each sample picks one of them with probability
    0.5 (timm's switch, per element rather than per batch). Policy entries are drawn last,
    so a config without a policy draws exactly what it drew before policies existed.
    """
    device = torch.device(device)
    draw = _Draw(generator, device)
    params = identity_params(batch_size, device, config.policy_steps)
    if batch_size == 0:
        return params
    if config.padding > 0:
        p = config.padding
        params.shift = draw.randint(-p, p + 1, (batch_size, 2))
    if config.flip:
        params.flip = draw.randint(0, 2, (batch_size,))
    if config.cutout > 0:
        params.erase_box = _cutout_boxes(draw, batch_size, config.cutout)
    elif config.erase_prob > 0:
        params.erase_box = _erasing_boxes(draw, batch_size, config)
    if config.mixing:
        _sample_mixing(draw, batch_size, config, params)
    if config.policy_steps:
        params.policy = sample_policy(config, batch_size, generator, device)
    return params


class _Draw:
    """torch random functions bound to one generator and device."""

    def __init__(self, generator, device):
        self.kw = dict(generator=generator, device=device)
        self.generator = generator
        self.device = device

    def randint(self, low, high, shape):
        return torch.randint(low, high, shape, dtype=torch.int32, **self.kw)

    def uniform(self, shape):
        return torch.rand(shape, dtype=torch.float32, **self.kw)

    def beta(self, alpha, batch_size):
        # Beta(a, a) as the first coordinate of Dirichlet(a, a): the one torch sampler of
        # this family that takes a generator. Float64 keeps small alphas from underflowing.
        concentration = torch.full((batch_size, 2), float(alpha), dtype=torch.float64,
                                   device=self.device)
        return torch._sample_dirichlet(concentration, generator=self.generator)[:, 0].float()

    def permutation(self, n):
        return torch.randperm(n, **self.kw)


def _centred_boxes(centre: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
    """[B, 4] y0, y1, x0, x1 of squares/rects of `side` (y, x) around `centre`, clipped."""
    start = centre - side // 2
    stop = start + side
    start, stop = start.clamp(0, IMAGE_SIZE), stop.clamp(0, IMAGE_SIZE)
    return torch.stack([start[:, 0], stop[:, 0], start[:, 1], stop[:, 1]], dim=1).int()


def _cutout_boxes(draw: _Draw, batch_size: int, side: int) -> torch.Tensor:
    centre = draw.randint(0, IMAGE_SIZE, (batch_size, 2))
    return _centred_boxes(centre, torch.full_like(centre, side))


def _erasing_boxes(draw: _Draw, batch_size: int, config: AugmentConfig) -> torch.Tensor:
    """torchvision RandomErasing, vectorised: the first of 10 tries that fits inside."""
    shape = (batch_size, ERASE_ATTEMPTS)
    area_lo, area_hi = config.erase_area
    area = IMAGE_SIZE * IMAGE_SIZE * (area_lo + (area_hi - area_lo) * draw.uniform(shape))
    log_lo, log_hi = math.log(config.erase_ratio[0]), math.log(config.erase_ratio[1])
    ratio = torch.exp(log_lo + (log_hi - log_lo) * draw.uniform(shape))
    height = torch.sqrt(area * ratio).round().int()
    width = torch.sqrt(area / ratio).round().int()
    fits = (height > 0) & (width > 0) & (height < IMAGE_SIZE) & (width < IMAGE_SIZE)
    first = fits.int().argmax(dim=1, keepdim=True)  # argmax returns the first maximum
    height = height.gather(1, first)[:, 0]
    width = width.gather(1, first)[:, 0]
    applied = (draw.uniform((batch_size,)) < config.erase_prob) & fits.any(dim=1)
    position = draw.uniform((batch_size, 2))
    y0 = (position[:, 0] * (IMAGE_SIZE - height + 1)).floor().int().clamp(max=IMAGE_SIZE - height)
    x0 = (position[:, 1] * (IMAGE_SIZE - width + 1)).floor().int().clamp(max=IMAGE_SIZE - width)
    box = torch.stack([y0, y0 + height, x0, x0 + width], dim=1)
    return torch.where(applied[:, None], box, torch.zeros_like(box)).int()


def _sample_mixing(draw: _Draw, batch_size: int, config: AugmentConfig,
                   params: AugmentParams) -> None:
    params.partner = draw.permutation(batch_size)
    ones = torch.ones(batch_size, dtype=torch.float32, device=draw.device)
    lam_mixup = draw.beta(config.mixup_alpha, batch_size) if config.mixup_alpha > 0 else ones
    if config.cutmix_alpha > 0:
        lam_cutmix = draw.beta(config.cutmix_alpha, batch_size)
        # Box side from the weight (area fraction 1 - lam); the weight is then recomputed
        # from the clipped box so targets match the pixels actually pasted.
        side = (IMAGE_SIZE * torch.sqrt(1.0 - lam_cutmix)).int()
        centre = draw.randint(0, IMAGE_SIZE, (batch_size, 2))
        cut_box = _centred_boxes(centre, torch.stack([side, side], dim=1))
        area = (cut_box[:, 1] - cut_box[:, 0]) * (cut_box[:, 3] - cut_box[:, 2])
        cut_weight = 1.0 - area.float() / (IMAGE_SIZE * IMAGE_SIZE)
    if config.mixup_alpha > 0 and config.cutmix_alpha > 0:
        use_cutmix = draw.uniform((batch_size,)) < 0.5
    else:
        use_cutmix = torch.full((batch_size,), config.cutmix_alpha > 0, device=draw.device)
    if config.cutmix_alpha > 0:
        params.mix_box = torch.where(use_cutmix[:, None], cut_box, params.mix_box).int()
        params.mix_weight = torch.where(use_cutmix, ones, lam_mixup)
        params.target_weight = torch.where(use_cutmix, cut_weight, lam_mixup)
    else:
        params.mix_weight = lam_mixup
        params.target_weight = lam_mixup.clone()


def alternating_flips(base_flips: torch.Tensor, indices: torch.Tensor,
                      epoch: int) -> torch.Tensor:
    """int32 flips of the samples `indices` in `epoch` under alternating flip: each
    sample's run-long draw (base_flips, int32 [N] over the whole split), inverted in odd
    epochs."""
    return base_flips[indices] ^ (epoch & 1)


def sample_base_flips(num_samples: int, generator: torch.Generator | None,
                      device: torch.device | str) -> torch.Tensor:
    """int32 [N]: each sample's flip for even epochs under alternating flip (fair coins)."""
    return _Draw(generator, torch.device(device)).randint(0, 2, (num_samples,))
