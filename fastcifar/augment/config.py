"""What the augmentation does (a frozen config) and the normalisation lookup table."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import lru_cache

import torch

from fastcifar.augment_policies import DEFAULT_RA_M, DEFAULT_RA_N, check_policy, policy_steps
from fastcifar.datasets import get_dataset
from fastcifar.errors import UserError

PAD_MODES = ("zero", "reflect")
IMAGE_SIZE = 32


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation for 32x32 RGB images; see fastcifar/augment/__init__.py."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    num_classes: int
    padding: int = 4
    pad_mode: str = "zero"
    flip: bool = True
    # airbench's flip: each image mirrored or not at random once per run, then the other
    # way in every odd epoch. The loader's sampler draws it (pipelines/base.py): it
    # depends on the sample, not on its place in a batch.
    alternating_flip: bool = False
    cutout: int = 0
    erase_prob: float = 0.0
    erase_area: tuple[float, float] = (0.02, 0.33)
    erase_ratio: tuple[float, float] = (0.3, 3.3)
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    label_smoothing: float = 0.0
    # A policy of per-sample ops after crop/flip, before normalisation (policy_space.py):
    # none | autoaugment | randaugment (ra_n ops at magnitude bin ra_m) | trivialaugment
    augment_policy: str = "none"
    ra_n: int = DEFAULT_RA_N
    ra_m: int = DEFAULT_RA_M

    def __post_init__(self):
        # Tuples (not lists) keep the config hashable, so it can key caches.
        for name in ("mean", "std", "erase_area", "erase_ratio"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        _validate(self)

    @classmethod
    def for_dataset(cls, dataset: str, **overrides) -> "AugmentConfig":
        spec = get_dataset(dataset)
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise UserError(f"unknown augmentation option(s): {', '.join(sorted(unknown))}")
        base = dict(mean=spec.mean, std=spec.std, num_classes=spec.num_classes)
        return cls(**{**base, **overrides})

    @classmethod
    def none(cls, dataset: str) -> "AugmentConfig":
        """Evaluation: normalise only."""
        return cls.for_dataset(dataset, padding=0, flip=False)

    @property
    def mixing(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    @property
    def soft_targets(self) -> bool:
        return self.mixing or self.label_smoothing > 0

    @property
    def policy_steps(self) -> int:
        """Policy ops each sample draws (0 without a policy)."""
        return policy_steps(self.augment_policy, self.ra_n)


def _validate(config: AugmentConfig) -> None:
    def require(ok: bool, message: str) -> None:
        if not ok:
            raise UserError(f"augmentation: {message}")

    require(len(config.mean) == 3 and len(config.std) == 3, "mean and std need 3 values (RGB)")
    require(all(math.isfinite(m) for m in config.mean),
            f"mean must be finite, got {config.mean}")
    require(all(s > 0 and math.isfinite(s) for s in config.std),
            f"std must be > 0, got {config.std}")
    require(int(config.num_classes) == config.num_classes and config.num_classes >= 1,
            f"num_classes must be a positive integer, got {config.num_classes}")
    require(int(config.padding) == config.padding and 0 <= config.padding < IMAGE_SIZE,
            f"padding must be an integer in [0, {IMAGE_SIZE - 1}], got {config.padding}")
    require(config.flip or not config.alternating_flip, "alternating_flip needs flip")
    require(config.pad_mode in PAD_MODES,
            f"pad_mode must be one of {', '.join(PAD_MODES)}, got {config.pad_mode!r}")
    require(int(config.cutout) == config.cutout and 0 <= config.cutout <= IMAGE_SIZE,
            f"cutout must be an integer in [0, {IMAGE_SIZE}], got {config.cutout}")
    require(0.0 <= config.erase_prob <= 1.0,
            f"erase_prob must be in [0, 1], got {config.erase_prob}")
    area, ratio = config.erase_area, config.erase_ratio
    require(len(area) == 2 and 0 < area[0] <= area[1] <= 1,
            f"erase_area must be (low, high) with 0 < low <= high <= 1, got {area}")
    require(len(ratio) == 2 and 0 < ratio[0] <= ratio[1] and math.isfinite(ratio[1]),
            f"erase_ratio must be (low, high) with 0 < low <= high, got {ratio}")
    require(not (config.cutout > 0 and config.erase_prob > 0),
            "cutout and random erasing share one erase box per image; turn one of them off")
    for name in ("mixup_alpha", "cutmix_alpha"):
        value = getattr(config, name)
        require(value >= 0 and math.isfinite(value), f"{name} must be >= 0, got {value}")
    require(0.0 <= config.label_smoothing < 1.0,
            f"label_smoothing must be in [0, 1), got {config.label_smoothing}")
    check_policy(config.augment_policy, config.ra_n, config.ra_m)


def make_lut(config: AugmentConfig, dtype: torch.dtype = torch.float32,
             device: torch.device | str = "cpu") -> torch.Tensor:
    """LUT[c, v] = (v / 255 - mean[c]) / std[c]: [3, 256].

    Every implementation gathers normalised values from this table instead of computing
    them, so float32 outputs are bit-identical across implementations.
    """
    return _cached_lut(config.mean, config.std, dtype, torch.device(device))


@lru_cache(maxsize=32)
def _cached_lut(mean, std, dtype, device) -> torch.Tensor:
    # Built in float64 and rounded once, so the table is the closest float to the formula.
    values = torch.arange(256, dtype=torch.float64) / 255.0
    mean = torch.tensor(mean, dtype=torch.float64)[:, None]
    std = torch.tensor(std, dtype=torch.float64)[:, None]
    return ((values[None, :] - mean) / std).to(dtype=dtype, device=device).contiguous()
