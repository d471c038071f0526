"""The fused crop/flip/normalise/erase as an FFCV pipeline Operation (CPU, numba).

    image_pipeline = [SimpleRGBImageDecoder(), make_ffcv_augment_op(config, seed),
                      ToTensor(), ToDevice(device, non_blocking=True),
                      ToTorchImage(channels_last=True)]

The op writes float32 [B, 32, 32, 3] into the buffer FFCV allocates for it, which
ToTorchImage(channels_last=True) views as NCHW channels_last without a copy. It renders each
image with the same numba code as numba_cpu.py. Mixup/cutmix (and soft targets) mix
across the batch and belong on the device after the loader, so configs with them are
refused here; label smoothing is a target-side option this op ignores.

Randomness: FFCV calls the op once per batch from compiled code, so parameters are drawn
there with numba's RNG, seeded per batch from `seed` and the batch's sample indices (the
same draws as sample_params, not the same stream). Shuffled orders give every batch of
every epoch its own draws; a fixed order repeats them each epoch.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from numba import njit

from fastcifar.augment.config import IMAGE_SIZE, AugmentConfig, make_lut
from fastcifar.augment.numba_cpu import render_image
from fastcifar.augment.params import ERASE_ATTEMPTS
from fastcifar.backends import require_extra
from fastcifar.errors import UserError

_FNV_PRIME = np.uint64(1099511628211)


@njit(cache=False)
def batch_seed(seed, indices):
    """A 32-bit seed from the run seed and the batch's sample indices (FNV-1a style)."""
    h = np.uint64(14695981039346656037) ^ np.uint64(seed)
    for i in range(indices.shape[0]):
        h = (h ^ np.uint64(indices[i])) * _FNV_PRIME
    return (h >> np.uint64(32)) ^ (h & np.uint64(0xFFFFFFFF))


@njit(cache=False)
def sample_batch_params(batch_size, seed, padding, flip, cutout, erase_prob, erase_area,
                        erase_log_ratio):
    """Per-image (shift [B,2], flip [B], erase box [B,4]) as sample_params draws them.

    Draws run serially: numba keeps one RNG state per thread and seeds only the caller's.
    """
    np.random.seed(seed)
    shift = np.zeros((batch_size, 2), np.int32)
    flips = np.zeros(batch_size, np.int32)
    boxes = np.zeros((batch_size, 4), np.int32)
    for i in range(batch_size):
        if padding > 0:
            shift[i, 0] = np.random.randint(-padding, padding + 1)
            shift[i, 1] = np.random.randint(-padding, padding + 1)
        if flip:
            flips[i] = np.random.randint(0, 2)
        if cutout > 0:
            for axis in range(2):
                start = np.random.randint(0, IMAGE_SIZE) - cutout // 2
                boxes[i, 2 * axis] = min(max(start, 0), IMAGE_SIZE)
                boxes[i, 2 * axis + 1] = min(max(start + cutout, 0), IMAGE_SIZE)
        elif erase_prob > 0 and np.random.random() < erase_prob:
            for _ in range(ERASE_ATTEMPTS):
                area = IMAGE_SIZE * IMAGE_SIZE * np.random.uniform(erase_area[0], erase_area[1])
                ratio = math.exp(np.random.uniform(erase_log_ratio[0], erase_log_ratio[1]))
                height = int(round(math.sqrt(area * ratio)))
                width = int(round(math.sqrt(area / ratio)))
                if 0 < height < IMAGE_SIZE and 0 < width < IMAGE_SIZE:
                    y0 = np.random.randint(0, IMAGE_SIZE - height + 1)
                    x0 = np.random.randint(0, IMAGE_SIZE - width + 1)
                    boxes[i, 0], boxes[i, 1] = y0, y0 + height
                    boxes[i, 2], boxes[i, 3] = x0, x0 + width
                    break
    return shift, flips, boxes


def make_batch_function(config: AugmentConfig, seed: int, parallel_range=range):
    """The plain function FFCV compiles: (images uint8 [B,32,32,3], dst, indices) -> dst."""
    if config.mixing:
        raise UserError("the FFCV augmentation op does not mix images; apply mixup/cutmix "
                        "on the device batch (fastcifar.augment.augment) instead")
    if config.policy_steps:
        raise UserError("the FFCV augmentation op does not run augmentation policies; run "
                        "the fused op on the loaded batch (fastcifar.augment.augment) instead")
    lut = make_lut(config).numpy()
    padding, flip, cutout = int(config.padding), bool(config.flip), int(config.cutout)
    reflect = config.pad_mode == "reflect"
    erase_prob = float(config.erase_prob)
    erase_area = (float(config.erase_area[0]), float(config.erase_area[1]))
    erase_log_ratio = (math.log(config.erase_ratio[0]), math.log(config.erase_ratio[1]))
    seed = int(seed) & 0xFFFFFFFF

    def fused_augment(images, dst, indices):
        n = images.shape[0]
        shift, flips, boxes = sample_batch_params(
            n, batch_seed(seed, indices), padding, flip, cutout, erase_prob, erase_area,
            erase_log_ratio)
        for i in parallel_range(n):
            render_image(images[i], shift[i, 0], shift[i, 1], flips[i] != 0, boxes[i], lut,
                         reflect, dst[i])
        return dst[:n]

    return fused_augment


def make_ffcv_augment_op(config: AugmentConfig, seed: int):
    """An FFCV Operation running crop/flip/normalise/erase on uint8 HWC image batches."""
    require_extra("ffcv")
    from ffcv.pipeline.allocation_query import AllocationQuery
    from ffcv.pipeline.compiler import Compiler
    from ffcv.pipeline.operation import Operation

    make_batch_function(config, seed)  # refuse unsupported configs now, not in the loader

    class FusedAugment(Operation):
        def __init__(self):
            super().__init__()
            self.config, self.seed = config, seed

        def generate_code(self):
            code = make_batch_function(self.config, self.seed, Compiler.get_iterator())
            code.is_parallel = True
            code.with_indices = True
            return code

        def declare_state_and_memory(self, previous_state):
            if tuple(previous_state.shape) != (IMAGE_SIZE, IMAGE_SIZE, 3):
                raise UserError(f"the FFCV augmentation op needs 32x32x3 images, got "
                                f"{previous_state.shape}")
            shape, dtype = (IMAGE_SIZE, IMAGE_SIZE, 3), np.dtype("float32")
            state = replace(previous_state, jit_mode=True, shape=shape, dtype=dtype)
            return state, AllocationQuery(shape, dtype)

    return FusedAugment()
