"""The augmentation as one Triton kernel launch per batch (GPU; CPU through the interpreter).

The kernels are in triton_kernels.py: one grid of coalesced chunks without a policy, one
program per sample with one. The launch reads no device value on the host and, given
`out` and `out_targets`, allocates nothing (the LUT and the policy table are cached per
device), so it can be captured in a CUDA graph once it has run (and compiled) outside the
capture. CPU tensors run through Triton's interpreter (see triton_modes.py).
"""
from __future__ import annotations

import contextlib
from functools import lru_cache

import torch
import triton

from fastcifar.augment.call import IMAGE_ELEMENTS, prepare_call, target_coefficients
from fastcifar.augment.config import AugmentConfig, make_lut
from fastcifar.augment.params import AugmentParams
from fastcifar.augment.policy_table import policy_table
from fastcifar.augment.triton_kernels import SHARED, augment_kernel, policy_kernel
from fastcifar.augment.triton_modes import jit_functions
from fastcifar.augment.triton_policy_ops import FUNCTIONS as POLICY_OPS

BLOCK = 1024
# No FMA contraction: mixup blends, soft targets and the policy ops' float32 arithmetic
# then round exactly as the torch reference does (the kernels are memory-bound, so this
# costs nothing measurable).
LAUNCH_OPTIONS = {"enable_fp_fusion": False}


@lru_cache(maxsize=2)
def _kernels(interpret: bool) -> dict:
    """Both kernels compiled for the GPU, or wrapped for Triton's CPU interpreter."""
    return jit_functions([*SHARED, *POLICY_OPS, augment_kernel, policy_kernel], interpret)


def _kernel(interpret: bool, policy: bool = False):
    return _kernels(interpret)["policy_kernel" if policy else "augment_kernel"]


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
    common = (images, images if indices is None else indices, labels, params.shift,
              params.flip, params.erase_box, params.partner, params.mix_weight,
              params.mix_box, params.target_weight, make_lut(config, device=images.device))
    constexprs = kernel_constexprs(config, has_indices=indices is not None)
    # Triton launches on the current device: make that the tensors' (a rank whose
    # current device is another GPU would otherwise launch there).
    on_device = torch.cuda.device(images.device) if images.is_cuda else contextlib.nullcontext()
    with on_device:
        if config.policy_steps:
            table = policy_table(config.augment_policy, images.device)
            del constexprs["BLOCK"]
            _kernel(bool(interpret), policy=True)[(batch_size,)](
                *common, params.policy, table.kinds, table.coefficients, out, out_targets,
                keep, fill, config.num_classes, config.policy_steps, **constexprs,
                **LAUNCH_OPTIONS)
        else:
            grid = (batch_size, triton.cdiv(IMAGE_ELEMENTS, BLOCK))
            _kernel(bool(interpret))[grid](*common, out, out_targets, keep, fill,
                                           config.num_classes, **constexprs, **LAUNCH_OPTIONS)
    return out, out_targets


def kernel_constexprs(config: AugmentConfig, has_indices: bool) -> dict:
    """The compile-time switches of one launch (one compiled variant per combination)."""
    return dict(
        HAS_INDICES=has_indices, REFLECT=config.pad_mode == "reflect", MIXING=config.mixing,
        NUM_SOURCES=2 if config.mixing else 1, SOFT=config.soft_targets,
        CLASS_BLOCK=triton.next_power_of_2(config.num_classes), BLOCK=BLOCK,
    )
