"""Scalar arithmetic the numba policy ops share, rounded as the spec (policy_reference.py)
rounds it: every float constant a float32, so nothing is promoted to float64 by accident."""
from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.core.extending import intrinsic

from fastcifar.augment.policy_reference import LUMA

ZERO = np.float32(0.0)
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
    return np.uint8(min(max(value, ZERO), np.float32(255.0)))


@njit(inline="always")
def gray(r, g, b):
    """Floored luma of one pixel (float32 channel values in, float32 out)."""
    return np.floor(fma32(b, _LUMA_B, fma32(g, _LUMA_G, r * _LUMA_R)))
