"""The policy ops as numba functions over one sample's uint8 tile (flat HWC, [3072]).

Same arithmetic as policy_reference.py (the spec), float32 where it is float32 and the
fused multiply-adds rounded once (policy_arith.py); results equal the spec bit for bit.

Why it is fast: an op that maps each channel value on its own (brightness, posterize,
solarize, invert; contrast, autocontrast and equalize once their statistics are known)
does not touch the tile. It composes its 256-entry table per channel into a pending
`table`, and the image is `table[c, tile[3p + c]]` until an op that reads pixels (affine,
sharpness, color, contrast's mean) needs the tile itself: then the table is applied once.
The caller folds what is still pending into the normalisation LUT. A per-value op costs
768 table entries (plus a read-only pass for its statistics) instead of a pass over 3072
values; the pixel ops read the plain tile in loops LLVM vectorises (reading through a
table, a gather, made color 6x slower) and write into `scratch`, which becomes the tile.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from fastcifar.augment.policy_arith import fma32, gray, to_uint8
from fastcifar.augment.policy_table import AFFINE, COLOR, CONTRAST, IDENTITY, SHARPNESS
from fastcifar.augment.policy_value_ops import compose_per_value

_SIZE = 32
_PIXELS = _SIZE * _SIZE
_CENTRE = np.float32(15.5)
_HALF_PIXEL = np.float32(0.5)
_ONE = np.float32(1.0)
_HALF_SIZE = np.float32(_SIZE / 2)
# x + 1.5 * 2**23 - 1.5 * 2**23 rounds a float32 |x| < 2**22 to an integer, ties to even
# (the FPU's rounding; LLVM does not reassociate it without fast-math): a libm rint call
# per pixel costs more than the rest of the warp.
_ROUNDER = np.float32(12582912.0)


@njit(cache=True)
def run_policy(tile, scratch, table, entries, kinds, coefficients):
    """Run one sample's entries. Returns (image, pending): the result is image (one of the
    two buffers passed in), mapped through table[c, image[3p + c]] when pending, as is
    otherwise (the table's content then means nothing)."""
    pending = False
    for step in range(entries.shape[0]):
        entry = entries[step]
        kind, c = kinds[entry], coefficients[entry]
        if kind == IDENTITY:
            continue
        reads_pixels = kind == AFFINE or kind == SHARPNESS or kind == COLOR or kind == CONTRAST
        if pending and reads_pixels:
            apply_table(tile, table)
            pending = False
        if kind == AFFINE:
            affine(tile, c, scratch)
        elif kind == SHARPNESS:
            sharpness(tile, c[1], scratch)
        elif kind == COLOR:
            color(tile, c[0], c[1], scratch)
        else:
            compose_per_value(kind, c, tile, table, pending)
            pending = True
            continue
        tile, scratch = scratch, tile  # the op wrote the new image into scratch
    return tile, pending


@njit(cache=True)
def apply_table(tile, table):
    """tile <- table[c, tile] in place."""
    for p in range(_PIXELS):
        tile[3 * p] = table[0, tile[3 * p]]
        tile[3 * p + 1] = table[1, tile[3 * p + 1]]
        tile[3 * p + 2] = table[2, tile[3 * p + 2]]


@njit(cache=True)
def affine(tile, c, dst):
    """Nearest-neighbour warp into dst, zeros outside (grid_sample's rounding). The source
    offsets come first, in a loop of plain float arithmetic that LLVM vectorises, then the
    gather: twice as fast as one loop doing both."""
    source = np.empty(_PIXELS, np.int32)  # 3 x the source pixel, or -1 outside
    for i in range(_SIZE):
        v = np.float32(i) - _CENTRE
        row_x, row_y = v * c[1], v * c[4]  # the same products in every column
        for j in range(_SIZE):
            u = np.float32(j) - _CENTRE
            grid_x = u * c[0] + row_x + c[2]
            grid_y = u * c[3] + row_y + c[5]
            sx = np.int32(((grid_x + _ONE) * _HALF_SIZE - _HALF_PIXEL + _ROUNDER) - _ROUNDER)
            sy = np.int32(((grid_y + _ONE) * _HALF_SIZE - _HALF_PIXEL + _ROUNDER) - _ROUNDER)
            inside = (sx >= 0) & (sx < _SIZE) & (sy >= 0) & (sy < _SIZE)
            source[i * _SIZE + j] = 3 * (sy * _SIZE + sx) if inside else -1
    for p in range(_PIXELS):
        at = source[p]
        if at < 0:
            dst[3 * p], dst[3 * p + 1], dst[3 * p + 2] = 0, 0, 0
        else:
            dst[3 * p], dst[3 * p + 1], dst[3 * p + 2] = tile[at], tile[at + 1], tile[at + 2]


@njit(cache=True)
def color(tile, factor, rest, dst):
    """Each pixel blended with its own luma."""
    for p in range(_PIXELS):
        r = np.float32(tile[3 * p])
        g = np.float32(tile[3 * p + 1])
        b = np.float32(tile[3 * p + 2])
        luma = gray(r, g, b)
        dst[3 * p] = to_uint8(fma32(luma, rest, r * factor))
        dst[3 * p + 1] = to_uint8(fma32(luma, rest, g * factor))
        dst[3 * p + 2] = to_uint8(fma32(luma, rest, b * factor))


@njit(cache=True)
def sharpness(tile, rest, dst):
    """The interior blended with its 3x3 blur (1s around a 5, over 13: an integer sum
    rounded once) into dst; borders kept. The blur sums rows of three, then three rows."""
    row = 3 * _SIZE
    across = np.empty(3 * _PIXELS, np.uint16)  # at most 3 x 255
    for i in range(3 * _PIXELS):
        dst[i] = tile[i]  # the borders of the result
    for y in range(_SIZE):
        for i in range(y * row + 3, (y + 1) * row - 3):
            across[i] = np.uint16(tile[i - 3]) + tile[i] + tile[i + 3]
    for y in range(1, _SIZE - 1):
        for i in range(y * row + 3, (y + 1) * row - 3):
            centre = np.int32(tile[i])
            box = np.int32(across[i - row]) + across[i] + across[i + row]
            blurred = (2 * (box + 4 * centre) + 13) // 26  # nearest to (box + 4c) / 13
            dst[i] = to_uint8(fma32(np.float32(blurred - centre), rest, np.float32(centre)))
