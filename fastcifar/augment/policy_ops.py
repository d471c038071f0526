"""The policy ops as numba functions over one sample's uint8 tile (flat HWC, [3072]).

Same arithmetic as policy_reference.py (the spec): float32 where it is float32, the
fused multiply-adds through float64, every float constant a float32 (so nothing is
promoted to float64 by accident); results equal the spec bit for bit.

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
from numba import njit, types
from numba.core.extending import intrinsic

from fastcifar.augment.policy_reference import LUMA
from fastcifar.augment.policy_table import (
    AFFINE,
    AUTOCONTRAST,
    BRIGHTNESS,
    COLOR,
    CONTRAST,
    EQUALIZE,
    IDENTITY,
    POSTERIZE,
    SHARPNESS,
    SOLARIZE,
)

_SIZE = 32
_PIXELS = _SIZE * _SIZE
_CENTRE = np.float32(15.5)
_HALF_PIXEL = np.float32(0.5)
_ONE = np.float32(1.0)
_HALF_SIZE = np.float32(_SIZE / 2)
_INV_255 = np.float32(1.0 / 255)
_ZERO = np.float32(0.0)
# x + 1.5 * 2**23 - 1.5 * 2**23 rounds a float32 |x| < 2**22 to an integer, ties to even
# (the FPU's rounding; LLVM does not reassociate it without fast-math): a libm rint call
# per pixel costs more than the rest of the warp.
_ROUNDER = np.float32(12582912.0)
_LUMA_R, _LUMA_G, _LUMA_B = (np.float32(w) for w in LUMA)


@intrinsic
def _fused_multiply_add(typingctx, a, b, c):
    """LLVM's fma.f32: one rounding, one instruction on CPUs with FMA (else libm's fmaf)."""
    if not all(t == types.float32 for t in (a, b, c)):
        return None

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return types.float32(types.float32, types.float32, types.float32), codegen


@njit(inline="always")
def fma32(a, b, c):
    """float32 a * b + c rounded once: what the spec gets through float64, which is exact
    for these operands, so both round the same."""
    return _fused_multiply_add(np.float32(a), np.float32(b), np.float32(c))


@njit(inline="always")
def to_uint8(value):
    """Clamp a float32 to [0, 255] and truncate, as .to(torch.uint8) does."""
    return np.uint8(min(max(value, _ZERO), np.float32(255.0)))


@njit(inline="always")
def gray(r, g, b):
    """Floored luma of one pixel (float32 channel values in, float32 out)."""
    return np.floor(fma32(b, _LUMA_B, fma32(g, _LUMA_G, r * _LUMA_R)))


@njit(cache=False)
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


@njit(cache=False)
def apply_table(tile, table):
    """tile <- table[c, tile] in place."""
    for p in range(_PIXELS):
        tile[3 * p] = table[0, tile[3 * p]]
        tile[3 * p + 1] = table[1, tile[3 * p + 1]]
        tile[3 * p + 2] = table[2, tile[3 * p + 2]]


@njit(cache=False)
def compose_per_value(kind, c, tile, table, pending):
    """table <- op o table (or op itself when nothing is pending) for a per-value op, with
    the statistics of the current image where the op needs them (contrast's mean luma:
    the caller applied any pending table to the tile first)."""
    hist = np.empty((3, 256 if kind == AUTOCONTRAST or kind == EQUALIZE else 0), np.int32)
    if kind == AUTOCONTRAST or kind == EQUALIZE:  # of the current image's values
        hist[:, :] = 0
        for p in range(_PIXELS):
            hist[0, tile[3 * p]] += 1
            hist[1, tile[3 * p + 1]] += 1
            hist[2, tile[3 * p + 2]] += 1
        if pending:  # those were the tile's values: map them through the table
            counts, hist = hist, np.zeros((3, 256), np.int32)
            for ch in range(3):
                for v in range(256):
                    hist[ch, table[ch, v]] += counts[ch, v]
    mean = _ZERO
    if kind == CONTRAST:
        total = 0  # the floored lumas are integers: summed as such (LLVM vectorises it)
        for p in range(_PIXELS):
            total += np.int32(gray(np.float32(tile[3 * p]), np.float32(tile[3 * p + 1]),
                                   np.float32(tile[3 * p + 2])))
        mean = np.float32(total) / np.float32(_PIXELS)
    per_channel = kind == AUTOCONTRAST or kind == EQUALIZE
    op = np.empty(256, np.uint8)
    for ch in range(3):
        if ch == 0 or per_channel:  # the other ops are the same in every channel
            fill_op_table(kind, c, hist[ch], mean, op)
        for v in range(256):
            table[ch, v] = op[table[ch, v]] if pending else op[v]


@njit(cache=False)
def fill_op_table(kind, c, hist, mean, op):
    """op[v]: what the per-value op makes of value v (hist: this channel's histogram,
    read by autocontrast and equalize). One loop per kind, so that each is a plain loop."""
    if kind == BRIGHTNESS:
        for v in range(256):
            op[v] = to_uint8(np.float32(v) * c[0])
    elif kind == CONTRAST:
        for v in range(256):
            op[v] = to_uint8(fma32(mean, c[1], np.float32(v) * c[0]))
    elif kind == POSTERIZE:
        for v in range(256):
            op[v] = v & np.int64(c[0])
    elif kind == SOLARIZE:
        for v in range(256):
            op[v] = 255 - v if np.float32(v) >= c[0] else v
    elif kind == AUTOCONTRAST or kind == EQUALIZE:
        low, high = 255, 0
        for v in range(256):
            if hist[v]:
                low, high = min(low, v), max(high, v)
        if kind == AUTOCONTRAST:
            autocontrast_table(low, high, op)
        else:
            equalize_table(hist, (_PIXELS - hist[high]) // 255, op)
    else:  # INVERT
        for v in range(256):
            op[v] = 255 - v


@njit(cache=False)
def autocontrast_table(low, high, op):
    """(v - min) / ((max - min) * float32(1/255)); a flat channel keeps its values."""
    scale = (np.float32(high) - np.float32(low)) * _INV_255
    for v in range(256):
        op[v] = v if low == high else to_uint8((np.float32(v) - np.float32(low)) / scale)


@njit(cache=False)
def equalize_table(hist, step, op):
    """PIL's equalisation table, in integers (as torchvision): (below + step // 2) // step
    with `below` the pixels darker than v; a channel with step 0 keeps its values."""
    below = 0
    for v in range(256):
        # The quotient of two integers below 2^11 through a float64 division: exact (a
        # non-integer quotient is at least 2^-22 below the next integer), and pipelined,
        # where an integer division by this run-time step took longer than the whole op.
        quotient = np.int64(np.float64(below + step // 2) / np.float64(max(step, 1)))
        op[v] = v if step == 0 else min(quotient, 255)
        below += hist[v]


@njit(cache=False)
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


@njit(cache=False)
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


@njit(cache=False)
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
