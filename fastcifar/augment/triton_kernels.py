"""The two Triton kernels of the fused augmentation and the helpers they share.

Plain functions, wrapped per mode by triton_modes.py (see triton_gpu.py for the launch).

augment_kernel   grid (batch, 3072 / BLOCK): each program writes BLOCK consecutive output
                 elements of one sample in its channels_last storage order, so stores are
                 fully coalesced; the source gather reads along rows too.
policy_kernel    grid (batch,): a policy's ops read the whole image (warps, histograms,
                 means), so one program holds one sample as three int32 [1024] channel
                 tensors through crop/flip, its policy steps (triton_policy_ops.py),
                 normalisation, erasing and mixing.

Source 0 of a program is its own sample; with mixing, source 1 is its partner rendered
with the partner's own params. One unrolled loop keeps a single copy of that code.
"""
from __future__ import annotations

import triton.language as tl

from fastcifar.augment.triton_policy_ops import apply_entry


def in_box(box, who, y, x):
    """(y, x) inside sample who's box [y0, y1) x [x0, x1)."""
    return ((y >= tl.load(box + 4 * who)) & (y < tl.load(box + 4 * who + 1))
            & (x >= tl.load(box + 4 * who + 2)) & (x < tl.load(box + 4 * who + 3)))


def source_position(y, x, who, shift, flip, REFLECT: tl.constexpr):
    """(row, column, readable) of the source pixel output (y, x) of sample who reads."""
    sy = y + tl.load(shift + 2 * who)
    sx = tl.where(tl.load(flip + who) != 0, 31 - x, x) + tl.load(shift + 2 * who + 1)
    if REFLECT:
        sy = tl.where(sy < 0, -sy, tl.where(sy > 31, 62 - sy, sy))
        sx = tl.where(sx < 0, -sx, tl.where(sx > 31, 62 - sx, sx))
        readable = sy >= 0
    else:
        readable = (sy >= 0) & (sy < 32) & (sx >= 0) & (sx < 32)
    return sy, sx, readable


def source_image(who, indices, HAS_INDICES: tl.constexpr):
    """Index in `images` of batch position who."""
    if HAS_INDICES:
        src = tl.load(indices + who)
    else:
        src = who
    return src


def store_targets(b, indices, labels, partner, target_weight, targets, keep, fill,
                  num_classes, HAS_INDICES: tl.constexpr, SOFT: tl.constexpr,
                  CLASS_BLOCK: tl.constexpr):
    """Sample b's target: its label, or the soft target mixed with its partner's."""
    mine = tl.load(labels + source_image(b, indices, HAS_INDICES))
    if SOFT:
        other = tl.load(labels + source_image(tl.load(partner + b), indices, HAS_INDICES))
        w = tl.load(target_weight + b)
        k = tl.arange(0, CLASS_BLOCK)
        hot_mine = tl.where(k == mine, 1.0, 0.0)
        hot_other = tl.where(k == other, 1.0, 0.0)
        soft = (w * hot_mine + (1.0 - w) * hot_other) * keep + fill
        tl.store(targets + b * num_classes + k, soft, mask=k < num_classes)
    else:
        tl.store(targets + b, mine)


def augment_kernel(
    images, indices, labels, shift, flip, erase_box, partner, mix_weight, mix_box,
    target_weight, lut, out, targets, keep, fill, num_classes,
    HAS_INDICES: tl.constexpr, REFLECT: tl.constexpr, MIXING: tl.constexpr,
    NUM_SOURCES: tl.constexpr, SOFT: tl.constexpr, CLASS_BLOCK: tl.constexpr,
    BLOCK: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1)
    e = chunk * BLOCK + tl.arange(0, BLOCK)
    live = e < 3072
    y = e // 96
    x = (e // 3) % 32
    c = e % 3
    if MIXING:
        a = tl.where(in_box(mix_box, b, y, x), 0.0, tl.load(mix_weight + b))
    for s in tl.static_range(NUM_SOURCES):
        if s == 0:
            who = b
        else:
            who = tl.load(partner + b)
        src = source_image(who, indices, HAS_INDICES)
        sy, sx, readable = source_position(y, x, who, shift, flip, REFLECT)
        # Zero padding reads uint8 0 (other=0), normalised through the LUT like any pixel.
        pixel = tl.load(images + src * 3072 + sy * 96 + sx * 3 + c, mask=live & readable,
                        other=0)
        value = tl.load(lut + c * 256 + pixel.to(tl.int32), mask=live, other=0.0)
        value = tl.where(in_box(erase_box, who, y, x), 0.0, value)
        if s == 0:
            if MIXING:
                result = a * value
            else:
                result = value
        else:
            result = result + (1.0 - a) * value
    tl.store(out + b * 3072 + e, result.to(out.dtype.element_ty), mask=live)
    if chunk == 0:
        store_targets(b, indices, labels, partner, target_weight, targets, keep, fill,
                      num_classes, HAS_INDICES, SOFT, CLASS_BLOCK)


def policy_kernel(
    images, indices, labels, shift, flip, erase_box, partner, mix_weight, mix_box,
    target_weight, lut, policy, kinds, coefficients, out, targets, keep, fill, num_classes,
    steps, HAS_INDICES: tl.constexpr, REFLECT: tl.constexpr, MIXING: tl.constexpr,
    NUM_SOURCES: tl.constexpr, SOFT: tl.constexpr, CLASS_BLOCK: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    pixel = tl.arange(0, 1024)
    y = pixel // 32
    x = pixel % 32
    if MIXING:
        a = tl.where(in_box(mix_box, b, y, x), 0.0, tl.load(mix_weight + b))
    for s in tl.static_range(NUM_SOURCES):
        if s == 0:
            who = b
        else:
            who = tl.load(partner + b)
        sy, sx, readable = source_position(y, x, who, shift, flip, REFLECT)
        start = images + source_image(who, indices, HAS_INDICES) * 3072 + sy * 96 + sx * 3
        red = tl.load(start, mask=readable, other=0).to(tl.int32)
        green = tl.load(start + 1, mask=readable, other=0).to(tl.int32)
        blue = tl.load(start + 2, mask=readable, other=0).to(tl.int32)
        for step in range(steps):
            entry = tl.load(policy + who * steps + step)
            red, green, blue = apply_entry(tl.load(kinds + entry), coefficients + 6 * entry,
                                           red, green, blue, y, x)
        erased = in_box(erase_box, who, y, x)
        value_r = tl.where(erased, 0.0, tl.load(lut + red))
        value_g = tl.where(erased, 0.0, tl.load(lut + 256 + green))
        value_b = tl.where(erased, 0.0, tl.load(lut + 512 + blue))
        if s == 0:
            if MIXING:
                result_r, result_g, result_b = a * value_r, a * value_g, a * value_b
            else:
                result_r, result_g, result_b = value_r, value_g, value_b
        else:
            result_r = result_r + (1.0 - a) * value_r
            result_g = result_g + (1.0 - a) * value_g
            result_b = result_b + (1.0 - a) * value_b
    start = out + b * 3072 + pixel * 3
    tl.store(start, result_r.to(out.dtype.element_ty))
    tl.store(start + 1, result_g.to(out.dtype.element_ty))
    tl.store(start + 2, result_b.to(out.dtype.element_ty))
    store_targets(b, indices, labels, partner, target_weight, targets, keep, fill,
                  num_classes, HAS_INDICES, SOFT, CLASS_BLOCK)


SHARED = [in_box, source_position, source_image, store_targets]
