"""The specification of the policy ops: batched torch over uint8 [B, 32, 32, 3] tiles.

    tiles = apply_policy(tiles, params.policy, policy_table(name, device))

Each step looks up every sample's entry in the table (policy_table.py) and runs its op
with that sample's coefficients. The arithmetic is torchvision's uint8 path written out, with its
roundings made explicit so that the numba and Triton kernels can repeat them:

- fused multiply-adds (torchvision's `add_(other, alpha=...)` and the luma sum run as
  one float32 rounding of a*b + c) are computed in float64 and rounded once: exact here,
  as a*b + c of these operands never needs more than 53 bits;
- the affine grid is ((u * c0) + (v * c1)) + c2 in float32, each step rounded, and the
  nearest source pixel is round-half-to-even of (x + 1) * 16 - 0.5, as grid_sample does;
- float -> uint8 clamps to [0, 255] and truncates, as .to(torch.uint8) does;
- sharpness's 3x3 blur is an integer sum rounded once: (2n + 13) // 26 of n = 13 x the
  blur, which torchvision's float32 conv then round_() always equals (n / 13 is at least
  1/26 from a tie, far more than float32's error).

tests/test_policy_ops.py holds every op and magnitude to torchvision's own.
"""
from __future__ import annotations

import torch

from fastcifar.augment.config import IMAGE_SIZE
from fastcifar.augment.policy_table import (
    AFFINE,
    AUTOCONTRAST,
    BRIGHTNESS,
    COLOR,
    CONTRAST,
    EQUALIZE,
    INVERT,
    POSTERIZE,
    SHARPNESS,
    SOLARIZE,
    PolicyTable,
)

PIXELS = IMAGE_SIZE * IMAGE_SIZE
LUMA = (0.2989, 0.587, 0.114)  # ITU-R 601-2, as torchvision's rgb_to_grayscale


def apply_policy(tiles: torch.Tensor, entries: torch.Tensor, table: PolicyTable) -> torch.Tensor:
    """uint8 [B, 32, 32, 3] -> a new uint8 [B, 32, 32, 3]: each sample's entries in order.

    Each op runs on the whole batch and torch.where keeps it for the samples that drew it;
    the kinds a step uses are read back to the host first, to skip the others (this is the
    spec, not a fast path: the kernels are)."""
    for step in range(entries.shape[1]):
        entry = entries[:, step].long()
        kinds, coefficients = table.kinds[entry], table.coefficients[entry]
        result = tiles
        for kind in kinds.unique().tolist():
            if kind in _OPS:
                chosen = (kinds == kind)[:, None, None, None]
                result = torch.where(chosen, _OPS[kind](tiles, coefficients), result)
        tiles = result
    return tiles


def fma32(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """float32 a * b + c rounded once (exact in float64 for the operands used here)."""
    return (a.double() * b.double() + c.double()).float()


def to_uint8(values: torch.Tensor) -> torch.Tensor:
    return values.clamp(0, 255).to(torch.uint8)


def _per_sample(coefficients: torch.Tensor, index: int) -> torch.Tensor:
    """float32 [B, 1, 1, 1]: one coefficient of each sample, broadcast over its tile."""
    return coefficients[:, index, None, None, None]


def affine(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour warp, zeros outside: output (i, j) reads the source pixel nearest to
    the grid point of pixel centre (u, v) = (j - 15.5, i - 15.5)."""
    centres = torch.arange(IMAGE_SIZE, dtype=torch.float32, device=x.device) - 15.5
    u, v = centres[None, None, :], centres[None, :, None]
    rows = torch.arange(x.shape[0], device=x.device)[:, None, None]
    c = c[:, :, None, None]
    grid_x = u * c[:, 0] + v * c[:, 1] + c[:, 2]
    grid_y = u * c[:, 3] + v * c[:, 4] + c[:, 5]
    source_x = torch.round((grid_x + 1) * (IMAGE_SIZE / 2) - 0.5).long()
    source_y = torch.round((grid_y + 1) * (IMAGE_SIZE / 2) - 0.5).long()
    inside = ((source_x >= 0) & (source_x < IMAGE_SIZE)
              & (source_y >= 0) & (source_y < IMAGE_SIZE))
    pixels = x[rows, source_y.clamp(0, IMAGE_SIZE - 1), source_x.clamp(0, IMAGE_SIZE - 1)]
    return torch.where(inside[..., None], pixels, torch.zeros_like(pixels))


def brightness(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return to_uint8(x.float() * _per_sample(c, 0))


def gray(x: torch.Tensor) -> torch.Tensor:
    """float32 [B, H, W, 1]: luma, floored (torchvision floors it for uint8 images)."""
    luma = torch.tensor(LUMA, dtype=torch.float32, device=x.device)
    r, g, b = x.float().unbind(dim=-1)
    return fma32(b, luma[2], fma32(g, luma[1], r * luma[0])).floor()[..., None]


def color(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return to_uint8(fma32(gray(x), _per_sample(c, 1), x.float() * _per_sample(c, 0)))


def contrast(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    # The floored lumas are integers below 2^24 / 1024, so this float32 mean is exact.
    mean = gray(x).sum(dim=(1, 2, 3), keepdim=True) / PIXELS
    return to_uint8(fma32(mean, _per_sample(c, 1), x.float() * _per_sample(c, 0)))


def sharpness(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The interior blended with its 3x3 blur (1s around a 5, over 13); borders kept."""
    wide = x.int()
    rows = wide[:, :-2] + wide[:, 1:-1] + wide[:, 2:]
    box = rows[:, :, :-2] + rows[:, :, 1:-1] + rows[:, :, 2:]
    centre = wide[:, 1:-1, 1:-1]
    blurred = (2 * (box + 4 * centre) + 13) // 26  # nearest integer to (box + 4c) / 13
    out = x.clone()
    out[:, 1:-1, 1:-1] = to_uint8(fma32((blurred - centre).float(), _per_sample(c, 1),
                                        centre.float()))
    return out


def posterize(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return x & _per_sample(c, 0).to(torch.uint8)


def solarize(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return torch.where(x.float() >= _per_sample(c, 0), 255 - x, x)


def autocontrast(x: torch.Tensor, _c: torch.Tensor) -> torch.Tensor:
    """Each channel stretched to 0..255: (x - min) / ((max - min) * float32(1/255))."""
    values = x.float()
    low = values.amin(dim=(1, 2), keepdim=True)
    high = values.amax(dim=(1, 2), keepdim=True)
    flat = high == low
    inv_scale = torch.where(flat, 1.0, (high - low) * (1.0 / 255))
    low = torch.where(flat, 0.0, low)
    return to_uint8((values - low) / inv_scale)


def equalize(x: torch.Tensor, _c: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation per channel with PIL's lookup table (as torchvision)."""
    flat = x.permute(0, 3, 1, 2).reshape(x.shape[0], 3, PIXELS).long()  # [B, 3, P]
    hist = torch.zeros(x.shape[0], 3, 256, dtype=torch.long, device=x.device)
    hist.scatter_add_(2, flat, torch.ones_like(flat))
    below = hist.cumsum(2) - hist  # pixels darker than each value
    top_count = hist.gather(2, flat.amax(dim=2, keepdim=True))
    step = (PIXELS - top_count) // 255
    lut = ((below + step // 2) // step.clamp(min=1)).clamp(0, 255)
    equalized = torch.where(step > 0, lut.gather(2, flat), flat)
    return equalized.to(torch.uint8).reshape(x.shape[0], 3, IMAGE_SIZE, IMAGE_SIZE) \
        .permute(0, 2, 3, 1)


def invert(x: torch.Tensor, _c: torch.Tensor) -> torch.Tensor:
    return 255 - x


_OPS = {AFFINE: affine, BRIGHTNESS: brightness, COLOR: color, CONTRAST: contrast,
        SHARPNESS: sharpness, POSTERIZE: posterize, SOLARIZE: solarize,
        AUTOCONTRAST: autocontrast, EQUALIZE: equalize, INVERT: invert}
