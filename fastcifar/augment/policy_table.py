"""Each policy entry as the kernels run it: an op kind and six float32 coefficients.

torchvision works out, on every call, an affine matrix in double precision, a blend
factor, a bit mask or a threshold from (op, magnitude), then runs float32 tensor ops.
Here that host-side arithmetic runs once per entry of a policy space, exactly as
torchvision does it, into a table the kernels index with each sample's entries; they
are left with float32 sums, products and comparisons that every implementation rounds
alike. Coefficients per kind (c0..c5; unused ones are 0):

    AFFINE      the inverse affine matrix over 16: the output pixel whose centre is (u, v)
                pixels from the image centre reads the source at grid coordinates
                (u*c0 + v*c1 + c2, u*c3 + v*c4 + c5), in [-1, 1] (grid_sample's)
    BRIGHTNESS  c0 = factor                  COLOR, CONTRAST   c0 = factor, c1 = 1 - factor
    SHARPNESS   c1 = 1 - factor              POSTERIZE         c0 = the bits kept, as a mask
    SOLARIZE    c0 = threshold               IDENTITY, AUTOCONTRAST, EQUALIZE, INVERT: none
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import torch

from fastcifar.augment.config import IMAGE_SIZE
from fastcifar.augment.policy_space import SPACES, PolicySpace

(IDENTITY, AFFINE, BRIGHTNESS, COLOR, CONTRAST, SHARPNESS, POSTERIZE, SOLARIZE, AUTOCONTRAST,
 EQUALIZE, INVERT) = range(11)
KIND_NAMES = ("identity", "affine", "brightness", "color", "contrast", "sharpness",
              "posterize", "solarize", "autocontrast", "equalize", "invert")
_SIMPLE_KINDS = {"Identity": IDENTITY, "AutoContrast": AUTOCONTRAST, "Equalize": EQUALIZE,
                 "Invert": INVERT}
_BLEND_KINDS = {"Brightness": BRIGHTNESS, "Color": COLOR, "Contrast": CONTRAST,
                "Sharpness": SHARPNESS}
# rotate() turns by these angles (after % 360) with index permutations (torch.rot90), not
# a sampled grid; their exact (cos, sin) make the grid the same permutation.
_QUARTER_TURNS = {0.0: (1.0, 0.0), 90.0: (0.0, 1.0), 180.0: (-1.0, 0.0), 270.0: (0.0, -1.0)}


class PolicyTable(NamedTuple):
    """One policy space's entries on one device."""

    kinds: torch.Tensor  # int32 [E]
    coefficients: torch.Tensor  # float32 [E, 6]


def op_coefficients(op: str, magnitude: float) -> tuple[int, list[float]]:
    """(kind, 6 float32 coefficients) of torchvision's `op` at signed `magnitude`."""
    if op in _SIMPLE_KINDS:
        return _SIMPLE_KINDS[op], [0.0] * 6
    if op in _BLEND_KINDS:
        factor = 1.0 + magnitude  # torchvision's factor, then its `1.0 - ratio`, in double
        return _BLEND_KINDS[op], _float32([factor, 1.0 - factor, 0.0, 0.0, 0.0, 0.0])
    if op == "Posterize":
        bits = int(magnitude)
        mask = 255 if bits >= 8 else ((1 << bits) - 1) << (8 - bits)
        return POSTERIZE, [float(mask), 0.0, 0.0, 0.0, 0.0, 0.0]
    if op == "Solarize":  # compared in float32, as uint8 >= a Python float is in torch
        return SOLARIZE, _float32([255 * magnitude, 0.0, 0.0, 0.0, 0.0, 0.0])
    return AFFINE, _float32(affine_matrix(op, magnitude), divide=0.5 * IMAGE_SIZE)


def affine_matrix(op: str, magnitude: float) -> list[float]:
    """The inverse affine matrix torchvision's geometric op builds, in double precision."""
    half = 0.5 * IMAGE_SIZE
    if op in ("ShearX", "ShearY"):  # about the top-left corner: centre (0, 0) in pixels
        shear = math.degrees(math.atan(magnitude))
        shears = (shear, 0.0) if op == "ShearX" else (0.0, shear)
        return inverse_affine((-half, -half), 0.0, (0.0, 0.0), shears)
    if op in ("TranslateX", "TranslateY"):  # whole pixels: int() truncates toward zero
        shift = float(int(magnitude))
        shifts = (shift, 0.0) if op == "TranslateX" else (0.0, shift)
        return inverse_affine((0.0, 0.0), 0.0, shifts, (0.0, 0.0))
    if op == "Rotate":  # rotate() passes -angle to the matrix
        angle = magnitude % 360
        if angle in _QUARTER_TURNS:
            cos, sin = _QUARTER_TURNS[angle]  # of the angle; the matrix turns by -angle
            return [cos, -sin, 0.0, sin, cos, 0.0]
        return inverse_affine((0.0, 0.0), -angle, (0.0, 0.0), (0.0, 0.0))
    raise ValueError(f"not a policy op: {op!r}")


def inverse_affine(centre, angle, translate, shear) -> list[float]:
    """Output -> source matrix of rotation `angle`, shears and translation about `centre`
    (pixels from the image centre), unit scale: torchvision's _get_inverse_affine_matrix,
    with its operations in its order, so each double rounds as it does there."""
    rot, shear_x, shear_y = (math.radians(a) for a in (angle, *shear))
    cx, cy = centre
    moved_x, moved_y = cx + translate[0], cy + translate[1]
    cos_y, tan_x = math.cos(shear_y), math.tan(shear_x)
    a = math.cos(rot - shear_y) / cos_y
    b = -(a * tan_x + math.sin(rot))
    c = math.sin(rot - shear_y) / cos_y
    d = math.cos(rot) - c * tan_x
    m = [d, -b, 0.0, -c, a, 0.0]
    m[2] += cx - m[0] * moved_x - m[1] * moved_y
    m[5] += cy - m[3] * moved_x - m[4] * moved_y
    return m


def _float32(values: list[float], divide: float = 1.0) -> list[float]:
    """Round to float32 (then divide exactly by a power of two) and read back."""
    return (torch.tensor(values, dtype=torch.float32) / divide).tolist()


def policy_table(policy: str, device: torch.device | str = "cpu") -> PolicyTable:
    """The table of `policy`'s space on `device`, built once per device: the first call
    copies it there, so run one batch before capturing a CUDA graph."""
    return _cached_table(policy, torch.device(device))


@lru_cache(maxsize=16)
def _cached_table(policy: str, device: torch.device) -> PolicyTable:
    kinds, coefficients = _build(SPACES[policy])
    return PolicyTable(kinds=torch.tensor(kinds, dtype=torch.int32, device=device),
                       coefficients=torch.tensor(coefficients, dtype=torch.float32,
                                                 device=device))


def _build(space: PolicySpace) -> tuple[list[int], list[list[float]]]:
    kinds, coefficients = [], []
    for entry in range(space.num_entries):
        kind, values = op_coefficients(*space.describe(entry))
        kinds.append(kind)
        coefficients.append(values)
    return kinds, coefficients
