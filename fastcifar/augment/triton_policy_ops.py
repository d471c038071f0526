"""The policy ops in Triton: one program's image as three int32 [1024] channel tensors.

Plain functions, wrapped per mode by triton_modes.py (they call each other by name). The
arithmetic is policy_reference.py's, op for op: float32 products and sums (the kernels are
launched without FMA contraction), fused multiply-adds through float64 (Triton's
interpreter computes tl.fma as two float32 roundings), round-half-to-even written out
(tl.extra's rint is an extern call the interpreter cannot run) and IEEE division
(div_rn; the GPU's default fp32 division is approximate). Pixel p of a channel tensor is
(y, x) = (p // 32, p % 32); another pixel is reached with tl.gather.
"""
from __future__ import annotations

import triton.language as tl

from fastcifar.augment.policy_reference import LUMA
from fastcifar.augment.policy_table import (
    AFFINE,
    AUTOCONTRAST,
    BRIGHTNESS,
    COLOR,
    CONTRAST,
    EQUALIZE,
    IDENTITY,
    INVERT,
    POSTERIZE,
    SHARPNESS,
    SOLARIZE,
)

# Globals a Triton function reads must be constexprs.
K_IDENTITY = tl.constexpr(IDENTITY)
K_AFFINE = tl.constexpr(AFFINE)
K_BRIGHTNESS = tl.constexpr(BRIGHTNESS)
K_COLOR = tl.constexpr(COLOR)
K_CONTRAST = tl.constexpr(CONTRAST)
K_SHARPNESS = tl.constexpr(SHARPNESS)
K_POSTERIZE = tl.constexpr(POSTERIZE)
K_SOLARIZE = tl.constexpr(SOLARIZE)
K_INVERT = tl.constexpr(INVERT)
K_AUTOCONTRAST = tl.constexpr(AUTOCONTRAST)
K_EQUALIZE = tl.constexpr(EQUALIZE)
LUMA_R, LUMA_G, LUMA_B = (tl.constexpr(w) for w in LUMA)


def add(a, b):
    return a + b


def maximum(a, b):
    return tl.maximum(a, b)


def minimum(a, b):
    return tl.minimum(a, b)


def fma32(a, b, c):
    """float32 a * b + c rounded once (exact in float64 for these operands)."""
    return (a.to(tl.float64) * b.to(tl.float64) + c.to(tl.float64)).to(tl.float32)


def to_uint8(value):
    """Clamp a float32 to [0, 255] and truncate (int32 result)."""
    return tl.minimum(tl.maximum(value, 0.0), 255.0).to(tl.int32)


def round_half_even(value):
    """Nearest integer of a float32, ties to even (int32)."""
    low = tl.floor(value)
    fraction = value - low  # exact
    odd = (low.to(tl.int32) & 1) == 1
    up = (fraction > 0.5) | ((fraction == 0.5) & odd)
    return low.to(tl.int32) + up.to(tl.int32)


def gray(r, g, b):
    """Floored luma of every pixel, float32 [1024]."""
    weight_r = tl.full([1], LUMA_R, tl.float32)
    weight_g = tl.full([1], LUMA_G, tl.float32)
    weight_b = tl.full([1], LUMA_B, tl.float32)
    luma = fma32(g.to(tl.float32), weight_g, r.to(tl.float32) * weight_r)
    return tl.floor(fma32(b.to(tl.float32), weight_b, luma))


def affine(c, r, g, b, y, x):
    """Nearest-neighbour warp, zeros outside; c points at the entry's 6 coefficients."""
    u = x.to(tl.float32) - 15.5
    v = y.to(tl.float32) - 15.5
    grid_x = u * tl.load(c) + v * tl.load(c + 1) + tl.load(c + 2)
    grid_y = u * tl.load(c + 3) + v * tl.load(c + 4) + tl.load(c + 5)
    sx = round_half_even((grid_x + 1.0) * 16.0 - 0.5)
    sy = round_half_even((grid_y + 1.0) * 16.0 - 0.5)
    inside = (sx >= 0) & (sx < 32) & (sy >= 0) & (sy < 32)
    source = tl.where(inside, sy * 32 + sx, 0)
    r = tl.where(inside, tl.gather(r, source, 0), 0)
    g = tl.where(inside, tl.gather(g, source, 0), 0)
    b = tl.where(inside, tl.gather(b, source, 0), 0)
    return r, g, b


def sharpness(v, rest, y, x):
    """One channel's interior blended with its 3x3 blur (integer, rounded once)."""
    pixel = y * 32 + x
    across = (tl.gather(v, tl.maximum(pixel - 1, 0), 0) + v
              + tl.gather(v, tl.minimum(pixel + 1, 1023), 0))
    box = (tl.gather(across, tl.maximum(pixel - 32, 0), 0) + across
           + tl.gather(across, tl.minimum(pixel + 32, 1023), 0))
    blurred = (2 * (box + 4 * v) + 13) // 26
    blended = to_uint8(fma32((blurred - v).to(tl.float32), rest, v.to(tl.float32)))
    interior = (y >= 1) & (y <= 30) & (x >= 1) & (x <= 30)
    return tl.where(interior, blended, v)


def equalize(v):
    """One channel through PIL's equalisation table (integers, as torchvision)."""
    hist = tl.histogram(v, 256)
    below = tl.associative_scan(hist, 0, add) - hist  # pixels darker than each value
    top = tl.reduce(v, 0, maximum)
    top_count = tl.reduce(tl.where(v == top, 1, 0), 0, add)
    step = (1024 - top_count) // 255
    table = tl.minimum((below + step // 2) // tl.maximum(step, 1), 255)
    return tl.where(step == 0, v, tl.gather(table, v, 0))


def autocontrast(v):
    """One channel stretched to 0..255; a flat channel keeps its values."""
    low = tl.reduce(v, 0, minimum).to(tl.float32)
    high = tl.reduce(v, 0, maximum).to(tl.float32)
    flat = high == low
    inv_scale = tl.where(flat, 1.0, (high - low) * (1.0 / 255))
    low = tl.where(flat, 0.0, low)
    return to_uint8(tl.math.div_rn(v.to(tl.float32) - low, inv_scale))


def per_value(kind, c, v):
    """An op that maps each value of one channel on its own."""
    value = v.to(tl.float32)
    if kind == K_BRIGHTNESS:
        v = to_uint8(value * tl.load(c))
    elif kind == K_POSTERIZE:
        v = v & tl.load(c).to(tl.int32)
    elif kind == K_SOLARIZE:
        v = tl.where(value >= tl.load(c), 255 - v, v)
    elif kind == K_INVERT:
        v = 255 - v
    elif kind == K_AUTOCONTRAST:
        v = autocontrast(v)
    elif kind == K_EQUALIZE:
        v = equalize(v)
    return v


def apply_entry(kind, c, r, g, b, y, x):
    """One policy op (kind, coefficients at c) on the image."""
    if kind == K_AFFINE:
        r, g, b = affine(c, r, g, b, y, x)
    elif kind == K_SHARPNESS:
        rest = tl.load(c + 1)
        r, g, b = sharpness(r, rest, y, x), sharpness(g, rest, y, x), sharpness(b, rest, y, x)
    elif (kind == K_COLOR) | (kind == K_CONTRAST):
        # Color blends each pixel with its luma, Contrast with the mean luma (the floored
        # lumas are integers: their float32 sum is exact in any order).
        luma = gray(r, g, b)
        other = tl.where(kind == K_CONTRAST, tl.reduce(luma, 0, add) * (1.0 / 1024), luma)
        factor, rest = tl.load(c), tl.load(c + 1)
        r = to_uint8(fma32(other, rest, r.to(tl.float32) * factor))
        g = to_uint8(fma32(other, rest, g.to(tl.float32) * factor))
        b = to_uint8(fma32(other, rest, b.to(tl.float32) * factor))
    elif kind != K_IDENTITY:
        r, g, b = per_value(kind, c, r), per_value(kind, c, g), per_value(kind, c, b)
    return r, g, b


FUNCTIONS = [add, maximum, minimum, fma32, to_uint8, round_half_even, gray, affine,
             sharpness, equalize, autocontrast, per_value, apply_entry]
