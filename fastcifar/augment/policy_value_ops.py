"""The numba policy ops that map each channel value on its own, as 256-entry tables.

Brightness, posterize, solarize and invert are fixed maps; contrast needs the image's
mean luma, autocontrast and equalize its per-channel histogram. Each op's table is
composed into the sample's pending table (policy_ops.py), so the tile itself is not
touched; the arithmetic is policy_reference.py's, value by value.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from fastcifar.augment.policy_arith import ZERO, fma32, gray, to_uint8
from fastcifar.augment.policy_table import (
    AUTOCONTRAST,
    BRIGHTNESS,
    CONTRAST,
    EQUALIZE,
    POSTERIZE,
    SOLARIZE,
)

_PIXELS = 32 * 32
_INV_255 = np.float32(1.0 / 255)


@njit(cache=True)
def compose_per_value(kind, c, tile, table, pending):
    """table <- op o table (or op itself when nothing is pending) for a per-value op, with
    the statistics of the current image where the op needs them (contrast's mean luma:
    the caller applied any pending table to the tile first)."""
    per_channel = kind == AUTOCONTRAST or kind == EQUALIZE
    hist = np.zeros((3, 256 if per_channel else 0), np.int32)  # of the current image
    if per_channel:
        for p in range(_PIXELS):
            hist[0, tile[3 * p]] += 1
            hist[1, tile[3 * p + 1]] += 1
            hist[2, tile[3 * p + 2]] += 1
        if pending:  # those were the tile's values: map them through the table
            counts, hist = hist, np.zeros((3, 256), np.int32)
            for ch in range(3):
                for v in range(256):
                    hist[ch, table[ch, v]] += counts[ch, v]
    mean = ZERO
    if kind == CONTRAST:
        total = 0  # the floored lumas are integers: summed as such (LLVM vectorises it)
        for p in range(_PIXELS):
            total += np.int32(gray(np.float32(tile[3 * p]), np.float32(tile[3 * p + 1]),
                                   np.float32(tile[3 * p + 2])))
        mean = np.float32(total) / np.float32(_PIXELS)
    op = np.empty(256, np.uint8)
    for ch in range(3):
        if ch == 0 or per_channel:  # the other ops are the same in every channel
            fill_op_table(kind, c, hist[ch], mean, op)
        for v in range(256):
            table[ch, v] = op[table[ch, v]] if pending else op[v]


@njit(cache=True)
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


@njit(cache=True)
def autocontrast_table(low, high, op):
    """(v - min) / ((max - min) * float32(1/255)); a flat channel keeps its values."""
    scale = (np.float32(high) - np.float32(low)) * _INV_255
    for v in range(256):
        op[v] = v if low == high else to_uint8((np.float32(v) - np.float32(low)) / scale)


@njit(cache=True)
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
