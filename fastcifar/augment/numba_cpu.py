"""The augmentation as one numba kernel over the batch on CPU threads (prange over samples).

Same semantics as reference.py, bit-identical float32 output (values come from the same
LUT and mixing uses the same float32 operations in the same order). fp16/bf16 outputs are
computed in float32 and rounded by torch.

With an augmentation policy each sample is pad-cropped and flipped into its own uint8
tile, its policy ops run on that tile (policy_ops.py), and normalisation, erasing and
mixing read the tile, all in the same call.

The kernels are cached on disk (numba's cache=True, in __pycache__ or numba's user
cache): the first call on a machine compiles them (about 11 s with the policy ops on the
2-core VM, 2026-12-03), every later process loads them (below a second).

Measured: about 240k images/s at batch 512, float32 out, pad-crop-flip, on a 2-core cloud
VM (measure_augment("numba", 512, "cpu"), 2026-11-29). fp16/bf16 are several times slower
there, bound by torch's float32->half conversion on that CPU.
"""
from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from fastcifar.augment.call import prepare_call, target_coefficients
from fastcifar.augment.config import AugmentConfig, make_lut
from fastcifar.augment.params import AugmentParams
from fastcifar.augment.policy_ops import run_policy
from fastcifar.augment.policy_table import policy_table

_SIZE = 32


@njit(inline="always")
def _source_index(i, reflect):
    """Source row/column for i in [-31, 62]; -1 marks "outside" in zero mode."""
    if i < 0:
        return -i if reflect else -1
    if i > _SIZE - 1:
        return 2 * (_SIZE - 1) - i if reflect else -1
    return i


@njit(cache=True)
def render_image(image, dy, dx, flip, box, lut, reflect, dst):
    """v(s) of one sample into dst [32, 32, 3] float32: crop, flip, normalise, erase."""
    zero = np.float32(0.0)
    for y in range(_SIZE):
        sy = _source_index(y + dy, reflect)
        erase_row = box[0] <= y < box[1]
        for x in range(_SIZE):
            if erase_row and box[2] <= x < box[3]:
                for c in range(3):
                    dst[y, x, c] = zero
                continue
            sx = _source_index((_SIZE - 1 - x if flip else x) + dx, reflect)
            if sy < 0 or sx < 0:
                for c in range(3):
                    dst[y, x, c] = lut[c, 0]  # zero padding is uint8 0 before normalising
            else:
                for c in range(3):
                    dst[y, x, c] = lut[c, image[sy, sx, c]]


@njit(cache=True)
def render_plain(image, shift, flip, box, lut, reflect, _entries, _kinds, _coefficients, dst):
    """v(s) of one sample without a policy: straight from its source image."""
    render_image(image, shift[0], shift[1], flip, box, lut, reflect, dst)


@njit(cache=True)
def render_through_policy(image, shift, flip, box, lut, reflect, entries, kinds, coefficients,
                          dst):
    """v(s) of one sample with a policy: crop/flip into a uint8 tile, its policy entries on
    the tile, then normalise (through what the policy left pending) and erase."""
    buffers = np.empty((2, 3 * _SIZE * _SIZE), np.uint8)  # the tile (flat HWC) and a spare
    crop_flip_tile(image, shift[0], shift[1], flip, reflect, buffers[0])
    table = np.empty((3, 256), np.uint8)
    tile, pending = run_policy(buffers[0], buffers[1], table, entries, kinds, coefficients)
    normalise = lut
    if pending:  # fold the value maps left pending into the normalisation
        normalise = np.empty((3, 256), np.float32)
        for c in range(3):
            for v in range(256):
                normalise[c, v] = lut[c, table[c, v]]
    # Channels written out: numba's loops over c here ran at half this speed.
    for y in range(_SIZE):
        erase_row = box[0] <= y < box[1]
        for x in range(_SIZE):
            i = 3 * (_SIZE * y + x)
            if erase_row and box[2] <= x < box[3]:
                dst[y, x, 0], dst[y, x, 1], dst[y, x, 2] = 0.0, 0.0, 0.0
            else:
                dst[y, x, 0] = normalise[0, tile[i]]
                dst[y, x, 1] = normalise[1, tile[i + 1]]
                dst[y, x, 2] = normalise[2, tile[i + 2]]


@njit(cache=True)
def crop_flip_tile(image, dy, dx, flip, reflect, tile):
    """image pad-cropped and flipped into tile (flat HWC uint8), outside reading 0."""
    columns = np.empty(_SIZE, np.int64)  # source column of each output column
    for x in range(_SIZE):
        columns[x] = _source_index((_SIZE - 1 - x if flip else x) + dx, reflect)
    for y in range(_SIZE):
        sy = _source_index(y + dy, reflect)
        for x in range(_SIZE):
            sx, i = columns[x], 3 * (_SIZE * y + x)
            if sy < 0 or sx < 0:
                tile[i], tile[i + 1], tile[i + 2] = 0, 0, 0
            else:
                tile[i], tile[i + 1], tile[i + 2] = image[sy, sx, 0], image[sy, sx, 1], \
                    image[sy, sx, 2]


@njit(parallel=True, cache=True)
def _kernel(images, indices, has_indices, labels, shift, flip, erase_box, partner,
            mix_weight, mix_box, target_weight, lut, reflect, mixing, out,
            soft, keep, fill, soft_targets, hard_targets, with_policy, policy, kinds,
            coefficients):
    batch_size = out.shape[0]
    one = np.float32(1.0)
    for b in prange(batch_size):  # samples are independent: no shared writes, no locks
        src = indices[b] if has_indices else np.int64(b)
        p = partner[b]
        src_partner = indices[p] if has_indices else p
        _render(with_policy, images[src], shift[b], flip[b] != 0, erase_box[b], lut, reflect,
                policy[b], kinds, coefficients, out[b])
        if mixing:
            # The partner is rendered with its own params (and policy: its ops run
            # again here) into a per-sample scratch tile.
            theirs = np.empty((_SIZE, _SIZE, 3), np.float32)
            _render(with_policy, images[src_partner], shift[p], flip[p] != 0, erase_box[p],
                    lut, reflect, policy[p], kinds, coefficients, theirs)
            box = mix_box[b]
            for y in range(_SIZE):
                for x in range(_SIZE):
                    inside = box[0] <= y < box[1] and box[2] <= x < box[3]
                    a = np.float32(0.0) if inside else mix_weight[b]
                    for c in range(3):
                        mixed = a * out[b, y, x, c] + (one - a) * theirs[y, x, c]
                        out[b, y, x, c] = mixed
        if soft:
            w = target_weight[b]
            mine, other = labels[src], labels[src_partner]
            for k in range(soft_targets.shape[1]):
                hot_mine = one if k == mine else np.float32(0.0)
                hot_other = one if k == other else np.float32(0.0)
                soft_targets[b, k] = (w * hot_mine + (one - w) * hot_other) * keep + fill
        else:
            hard_targets[b] = labels[src]


@njit(inline="always")
def _render(with_policy, image, shift, flip, box, lut, reflect, policy, kinds, coefficients,
            dst):
    if with_policy:
        render_through_policy(image, shift, flip, box, lut, reflect, policy, kinds,
                              coefficients, dst)
    else:
        render_plain(image, shift, flip, box, lut, reflect, policy, kinds, coefficients, dst)


def augment_numba(images: torch.Tensor, labels: torch.Tensor, params: AugmentParams,
                  config: AugmentConfig, *, indices: torch.Tensor | None = None,
                  out: torch.Tensor | None = None, out_targets: torch.Tensor | None = None,
                  dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    if images.device.type != "cpu":
        raise ValueError(f"the numba implementation runs on CPU tensors, got {images.device}")
    batch_size, out, out_targets = prepare_call(images, labels, params, config, indices, out,
                                                out_targets, dtype)
    if dtype == torch.float32:
        pixels = out.permute(0, 2, 3, 1)  # channels_last storage seen as [B, H, W, C]
    else:
        pixels = torch.empty((batch_size, _SIZE, _SIZE, 3), dtype=torch.float32)
    keep, fill = target_coefficients(config)
    if config.policy_steps:
        table = policy_table(config.augment_policy)
        kinds, coefficients = table.kinds.numpy(), table.coefficients.numpy()
    else:
        kinds, coefficients = np.zeros(1, np.int32), np.zeros((1, 6), np.float32)
    no_rows = np.empty(0, np.int64)
    soft_targets = out_targets.numpy() if config.soft_targets else np.empty((0, 1), np.float32)
    _kernel(
        images.numpy(), no_rows if indices is None else indices.numpy(), indices is not None,
        labels.numpy(), params.shift.numpy(), params.flip.numpy(), params.erase_box.numpy(),
        params.partner.numpy(), params.mix_weight.numpy(), params.mix_box.numpy(),
        params.target_weight.numpy(), make_lut(config).numpy(), config.pad_mode == "reflect",
        config.mixing, pixels.numpy(), config.soft_targets, np.float32(keep), np.float32(fill),
        soft_targets, no_rows if config.soft_targets else out_targets.numpy(),
        bool(config.policy_steps), params.policy.numpy(), kinds, coefficients,
    )
    if dtype != torch.float32:
        out.permute(0, 2, 3, 1).copy_(pixels)
    return out, out_targets
