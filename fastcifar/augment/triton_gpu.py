"""The augmentation as one Triton kernel launch per batch (GPU; CPU through the interpreter).

Grid: (batch, 3072 / BLOCK). Each program writes BLOCK consecutive output elements of one
sample in its channels_last storage order, so stores are fully coalesced; the source
gather reads along rows too (a shifted, possibly reversed row of the source image).

The launch reads no device value on the host and, given `out` and `out_targets`,
allocates nothing (the LUT is cached per device), so it can be captured in a CUDA graph
once it has run (and compiled) outside the capture.

CPU tensors run through Triton's interpreter whatever TRITON_INTERPRET says. triton.jit
reads that variable when it decorates a function, so a module-level @triton.jit kernel
would depend on whether the variable was set before import; here the kernel is wrapped per
mode on first use instead. For the same reason the kernel body uses only core builtins:
tl.sum, tl.zeros and the rest of triton.language.standard are themselves @triton.jit
functions, fixed to the mode that was active when `import triton` ran, and they fail in
the interpreter when the variable was set after that import.
"""
from __future__ import annotations

import contextlib
from functools import lru_cache

import torch
import triton
import triton.language as tl

from fastcifar.augment.call import IMAGE_ELEMENTS, prepare_call, target_coefficients
from fastcifar.augment.config import AugmentConfig, make_lut
from fastcifar.augment.params import AugmentParams

BLOCK = 1024


def _augment_kernel(
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
        in_box = ((y >= tl.load(mix_box + 4 * b)) & (y < tl.load(mix_box + 4 * b + 1))
                  & (x >= tl.load(mix_box + 4 * b + 2)) & (x < tl.load(mix_box + 4 * b + 3)))
        a = tl.where(in_box, 0.0, tl.load(mix_weight + b))

    # Source 0 is this sample; with mixing, source 1 is its partner rendered with the
    # partner's own params. One unrolled loop keeps a single copy of the pixel code.
    for s in tl.static_range(NUM_SOURCES):
        if s == 0:
            who = b
        else:
            who = tl.load(partner + b)
        if HAS_INDICES:
            src = tl.load(indices + who)
        else:
            src = who
        sy = y + tl.load(shift + 2 * who)
        sx = tl.where(tl.load(flip + who) != 0, 31 - x, x) + tl.load(shift + 2 * who + 1)
        if REFLECT:
            sy = tl.where(sy < 0, -sy, tl.where(sy > 31, 62 - sy, sy))
            sx = tl.where(sx < 0, -sx, tl.where(sx > 31, 62 - sx, sx))
            readable = live
        else:
            readable = live & (sy >= 0) & (sy < 32) & (sx >= 0) & (sx < 32)
        # Zero padding reads uint8 0 (other=0), normalised through the LUT like any pixel.
        pixel = tl.load(images + src * 3072 + sy * 96 + sx * 3 + c, mask=readable, other=0)
        value = tl.load(lut + c * 256 + pixel.to(tl.int32), mask=live, other=0.0)
        erased = ((y >= tl.load(erase_box + 4 * who)) & (y < tl.load(erase_box + 4 * who + 1))
                  & (x >= tl.load(erase_box + 4 * who + 2))
                  & (x < tl.load(erase_box + 4 * who + 3)))
        value = tl.where(erased, 0.0, value)
        if s == 0:
            if MIXING:
                result = a * value
            else:
                result = value
        else:
            result = result + (1.0 - a) * value
    tl.store(out + b * 3072 + e, result.to(out.dtype.element_ty), mask=live)

    if chunk == 0:
        if HAS_INDICES:
            mine = tl.load(labels + tl.load(indices + b))
        else:
            mine = tl.load(labels + b)
        if SOFT:
            p = tl.load(partner + b)
            if HAS_INDICES:
                other = tl.load(labels + tl.load(indices + p))
            else:
                other = tl.load(labels + p)
            w = tl.load(target_weight + b)
            k = tl.arange(0, CLASS_BLOCK)
            hot_mine = tl.where(k == mine, 1.0, 0.0)
            hot_other = tl.where(k == other, 1.0, 0.0)
            soft = (w * hot_mine + (1.0 - w) * hot_other) * keep + fill
            tl.store(targets + b * num_classes + k, soft, mask=k < num_classes)
        else:
            tl.store(targets + b, mine)


@lru_cache(maxsize=2)
def _kernel(interpret: bool):
    """The kernel compiled for the GPU, or wrapped for Triton's CPU interpreter."""
    with triton.knobs.runtime.scope():
        triton.knobs.runtime.interpret = interpret
        return triton.jit(_augment_kernel)


def augment_triton(images: torch.Tensor, labels: torch.Tensor, params: AugmentParams,
                   config: AugmentConfig, *, indices: torch.Tensor | None = None,
                   out: torch.Tensor | None = None, out_targets: torch.Tensor | None = None,
                   dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    batch_size, out, out_targets = prepare_call(images, labels, params, config, indices, out,
                                                out_targets, dtype)
    if batch_size == 0:
        return out, out_targets
    interpret = images.device.type == "cpu" or triton.knobs.runtime.interpret
    keep, fill = target_coefficients(config)
    grid = (batch_size, triton.cdiv(IMAGE_ELEMENTS, BLOCK))
    # Triton launches on the current device: make that the tensors' (a rank whose
    # current device is another GPU would otherwise launch there).
    on_device = torch.cuda.device(images.device) if images.is_cuda else contextlib.nullcontext()
    with on_device:
        _kernel(bool(interpret))[grid](
            images, images if indices is None else indices, labels, params.shift,
            params.flip, params.erase_box, params.partner, params.mix_weight,
            params.mix_box, params.target_weight, make_lut(config, device=images.device),
            out, out_targets, keep, fill, config.num_classes,
            **kernel_constexprs(config, has_indices=indices is not None), **LAUNCH_OPTIONS,
        )
    return out, out_targets


# No FMA contraction: mixup blends and soft targets then round exactly as the torch
# reference does (the kernel is memory-bound, so this costs nothing measurable).
LAUNCH_OPTIONS = {"enable_fp_fusion": False}


def kernel_constexprs(config: AugmentConfig, has_indices: bool) -> dict:
    """The compile-time switches of one launch (one compiled variant per combination)."""
    return dict(
        HAS_INDICES=has_indices, REFLECT=config.pad_mode == "reflect", MIXING=config.mixing,
        NUM_SOURCES=2 if config.mixing else 1, SOFT=config.soft_targets,
        CLASS_BLOCK=triton.next_power_of_2(config.num_classes), BLOCK=BLOCK,
    )
