"""AutoAugment's CIFAR-10 policy (Cubuk et al., 2019), batched: every sample its own draw.

The strong CIFAR-100 baseline applies it after pad-crop and flip, before normalisation:

    params = sample_autoaugment(batch_size, generator, device)   # all randomness here
    images = autoaugment(uint8 [B, 32, 32, 3], params)            # uint8, same layout

Each sample draws one of the 25 sub-policies; each of its two operations runs with the
policy's probability, and a signed magnitude flips its sign with probability 1/2. The
operations are torchvision's AutoAugment ops on uint8 images (nearest interpolation, fill
0, magnitudes from 10 bins), computed for the whole batch with per-sample magnitudes:
geometric ops as one affine grid per sample, colour ops as one blend with a per-sample
factor; no loop over images and no host sync, so it runs on the loader's stream.
tests/test_autoaugment.py compares every op with torchvision.transforms.v2.functional.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from fastcifar.augment.config import IMAGE_SIZE

NUM_BINS = 10

# op: (largest magnitude (bin 9), signed); magnitudes are linspace(0, largest, 10)
# except Posterize (bits, from 8 down to 4) and Solarize (threshold / 255, 1 down to 0).
OPS = {
    "ShearX": (0.3, True),
    "ShearY": (0.3, True),
    "TranslateX": (150.0 / 331.0 * IMAGE_SIZE, True),
    "TranslateY": (150.0 / 331.0 * IMAGE_SIZE, True),
    "Rotate": (30.0, True),
    "Brightness": (0.9, True),
    "Color": (0.9, True),
    "Contrast": (0.9, True),
    "Sharpness": (0.9, True),
    "Posterize": (None, False),
    "Solarize": (None, False),
    "AutoContrast": (None, False),
    "Equalize": (None, False),
    "Invert": (None, False),
}
OP_NAMES = tuple(OPS)
GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
_GEOMETRIC_ID = {name: OP_NAMES.index(name) for name in GEOMETRIC}
BLENDS = ("Brightness", "Color", "Contrast")

# The CIFAR-10 policy of the AutoAugment paper: 25 sub-policies of two
# (operation, probability, magnitude bin) steps; bin None where the op has no magnitude.
CIFAR10_POLICY = (
    (("Invert", 0.1, None), ("Contrast", 0.2, 6)),
    (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
    (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)),
    (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
    (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, None), ("Equalize", 0.5, None)),
    (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
    (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
    (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
    (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
    (("Solarize", 0.5, 2), ("Invert", 0.0, None)),
    (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.2, None), ("Equalize", 0.6, None)),
    (("Color", 0.9, 9), ("Equalize", 0.6, None)),
    (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)),
    (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)),
    (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)),
    (("Equalize", 0.8, None), ("Invert", 0.1, None)),
    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
)


def magnitude(op: str, level: int | None) -> float:
    """The unsigned magnitude of `op` at bin `level` (0..9), bit for bit torchvision's:
    its bins are float32 linspaces, and e.g. Solarize's 170 threshold is 170.000005."""
    if level is None:
        return 0.0
    if op == "Posterize":
        bits = (8 - (torch.arange(NUM_BINS) / ((NUM_BINS - 1) / 4))).round().int()
        return float(bits[level])
    if op == "Solarize":  # a fraction of 255
        return float(torch.linspace(1.0, 0.0, NUM_BINS)[level])
    largest, _ = OPS[op]
    return float(torch.linspace(0.0, largest, NUM_BINS)[level])


@dataclass
class AutoAugmentParams:
    """Per-sample draws, all on one device: policy int64 [B]; applied, negate bool [B, 2]."""

    policy: torch.Tensor
    applied: torch.Tensor
    negate: torch.Tensor


def sample_autoaugment(batch_size: int, generator: torch.Generator | None,
                       device: torch.device | str) -> AutoAugmentParams:
    kw = dict(generator=generator, device=device)
    policy = torch.randint(len(CIFAR10_POLICY), (batch_size,), **kw)
    probability = _tables(torch.device(device)).probability[policy]  # [B, 2]
    applied = torch.rand(batch_size, 2, **kw) < probability
    negate = torch.rand(batch_size, 2, **kw) < 0.5
    return AutoAugmentParams(policy=policy, applied=applied, negate=negate)


def autoaugment(images: torch.Tensor, params: AutoAugmentParams, *,
                sync_free: bool | None = None) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> uint8 [B, H, W, 3] (a new tensor; the input is not modified).

    sync_free (default: on CUDA) computes without reading anything back to the host
    (see _apply); both ways give the same result."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 [B, H, W, 3], got {images.dtype} "
                         f"{list(images.shape)}")
    tables = _tables(images.device)
    x = images.permute(0, 3, 1, 2)  # NCHW view of the HWC batch
    for step in range(2):
        op = tables.ops[params.policy, step]
        sign = torch.where(params.negate[:, step] & tables.signed[op], -1.0, 1.0)
        value = tables.magnitudes[params.policy, step] * sign  # float64 [B]
        x = _apply(x, op, value, params.applied[:, step],
                   images.is_cuda if sync_free is None else sync_free)
    return x.permute(0, 2, 3, 1).contiguous()


def _apply(x: torch.Tensor, op: torch.Tensor, value: torch.Tensor,
           applied: torch.Tensor, sync_free: bool = False) -> torch.Tensor:
    """One policy step: each sample's op (or none when not applied) on NCHW uint8 x.

    sync_free (CUDA): every op group runs on the whole batch and a mask picks each result:
    more arithmetic, but no host sync (the loader's stream keeps running ahead). On the
    CPU, where a sync costs nothing, each group runs only on its own samples (~10x less
    work, since a sample takes at most one op per step).
    """
    out = x.clone()
    for (_, kernel), ids in zip(_GROUPS, _tables(x.device).group_ops):
        mask = applied & torch.isin(op, ids)
        if sync_free:
            out = torch.where(mask[:, None, None, None], kernel(x, op, value), out)
            continue
        rows = mask.nonzero().squeeze(1)
        if rows.numel():
            out[rows] = kernel(x[rows], op[rows], value[rows])
    return out


def _posterize(x, _op, value):
    bits = value.round().clamp(0, 8).to(torch.int32)
    keep = ((1 << bits) - 1) << (8 - bits)  # the top `bits` bits
    return x & keep.to(torch.uint8)[:, None, None, None]


def _solarize(x, _op, value):
    threshold = (255.0 * value).float()[:, None, None, None]  # compared in float32
    return torch.where(x >= threshold, 255 - x, x)


def _autocontrast(x, _op, _value):
    """Stretch each channel of each image to 0..255 (torchvision's arithmetic, written
    with torch.where: its boolean-mask assignment would read the mask on the host)."""
    x = x.float()
    low = x.amin(dim=(-2, -1), keepdim=True)
    high = x.amax(dim=(-2, -1), keepdim=True)
    flat = high == low
    inv_scale = torch.where(flat, 1.0, (high - low).mul_(1.0 / 255))
    low = torch.where(flat, 0.0, low)
    return x.sub_(low).div_(inv_scale).clamp_(0, 255).to(torch.uint8)


def _equalize(x, _op, _value):
    """Histogram equalisation per image and channel: torchvision's batched kernel."""

    return TF.equalize(x)


def _geometric(x: torch.Tensor, op: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Shear/translate/rotate each sample by its own value (identity for the other ops),
    nearest neighbour, zeros outside: torchvision's affine/rotate with one grid per sample."""
    height, width = x.shape[-2:]
    zero = torch.zeros_like(value)
    shear = torch.atan(value)  # torchvision: shear = degrees(atan(magnitude))
    shear_x = torch.where(op == _GEOMETRIC_ID["ShearX"], shear, zero)
    shear_y = torch.where(op == _GEOMETRIC_ID["ShearY"], shear, zero)
    # Translations are whole pixels (int() truncates toward zero, as torchvision does).
    tx = torch.where(op == _GEOMETRIC_ID["TranslateX"], value.trunc(), zero)
    ty = torch.where(op == _GEOMETRIC_ID["TranslateY"], value.trunc(), zero)
    # rotate() passes -angle to the affine matrix; shears turn about the top-left corner.
    rotation = torch.where(op == _GEOMETRIC_ID["Rotate"], -value * (math.pi / 180.0), zero)
    shearing = (op == _GEOMETRIC_ID["ShearX"]) | (op == _GEOMETRIC_ID["ShearY"])
    cx = torch.where(shearing, torch.full_like(value, -0.5 * width), zero)
    cy = torch.where(shearing, torch.full_like(value, -0.5 * height), zero)

    # The inverse of T * C * R * SHy * SHx * C^-1 (torchvision's _get_inverse_affine_matrix).
    a = torch.cos(rotation - shear_y) / torch.cos(shear_y)
    b = -(a * torch.tan(shear_x) + torch.sin(rotation))
    c = torch.sin(rotation - shear_y) / torch.cos(shear_y)
    d = torch.cos(rotation) - c * torch.tan(shear_x)
    m00, m01, m10, m11 = d, -b, -c, a
    m02 = cx - m00 * (cx + tx) - m01 * (cy + ty)
    m12 = cy - m10 * (cx + tx) - m11 * (cy + ty)

    # Output pixel centres in image-centred coordinates, mapped and normalised to [-1, 1];
    # written out elementwise, not as a matmul, so that TF32 can never round it.
    u = torch.linspace((1.0 - width) * 0.5, (width - 1.0) * 0.5, width, device=x.device)
    v = torch.linspace((1.0 - height) * 0.5, (height - 1.0) * 0.5, height, device=x.device)
    u, v = u[None, None, :], v[None, :, None]

    def row(m0, m1, m2, half):
        m0, m1, m2 = ((m.float() / half)[:, None, None] for m in (m0, m1, m2))
        return u * m0 + v * m1 + m2

    grid = torch.stack([row(m00, m01, m02, 0.5 * width), row(m10, m11, m12, 0.5 * height)], -1)
    warped = F.grid_sample(x.float(), grid, mode="nearest", padding_mode="zeros",
                           align_corners=False)
    return warped.to(torch.uint8)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """factor * x + (1 - factor) * other, clamped and truncated to uint8 (torchvision's)."""
    ratio = factor.float()[:, None, None, None]
    rest = (1.0 - factor).float()[:, None, None, None]
    # addcmul_ rounds as torchvision's add_(other, alpha=1 - factor) does (one fused step).
    return (x.float() * ratio).addcmul_(other, rest).clamp_(0, 255).to(torch.uint8)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """float32 [B, 1, H, W]: ITU-R 601 luma, floored as torchvision does for uint8."""
    r, g, b = x.float().unbind(dim=1)
    return r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).floor_()[:, None]


_BLEND_TARGETS = {
    "Brightness": lambda x: torch.zeros((), device=x.device),
    "Color": _gray,
    "Contrast": lambda x: _gray(x).mean(dim=(1, 2, 3), keepdim=True),
}


def _sharpness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend the interior with a 3x3 smoothing of itself (borders kept), as torchvision."""
    kernel = _tables(x.device).sharpness_kernel
    out = x.float()
    blurred = F.conv2d(out, kernel, groups=3).round_()
    interior = out[..., 1:-1, 1:-1]
    rest = (1.0 - factor).float()[:, None, None, None]
    interior.addcmul_(blurred - interior, rest)
    return out.clamp_(0, 255).to(torch.uint8)


def _blend_op(name):
    def kernel(x, _op, value):
        return _blend(x, _BLEND_TARGETS[name](x), 1.0 + value)
    return kernel


# (op names, kernel(x, op, value) -> uint8 x'): each sample is in at most one group.
_GROUPS = (
    (GEOMETRIC, lambda x, op, value: _geometric(x, op, value)),
    *(((name,), _blend_op(name)) for name in BLENDS),
    (("Sharpness",), lambda x, _op, value: _sharpness(x, 1.0 + value)),
    (("Posterize",), _posterize),
    (("Solarize",), _solarize),
    (("AutoContrast",), _autocontrast),
    (("Equalize",), _equalize),
    (("Invert",), lambda x, _op, _value: 255 - x),
)


class _Tables(NamedTuple):
    """The policy and op constants as tensors on one device."""

    ops: torch.Tensor  # int64 [25, 2]: op id of each sub-policy's steps
    probability: torch.Tensor  # float32 [25, 2]
    magnitudes: torch.Tensor  # float64 [25, 2]
    signed: torch.Tensor  # bool [num ops]: the magnitude's sign is drawn
    group_ops: tuple[torch.Tensor, ...]  # the op ids of each of _GROUPS
    sharpness_kernel: torch.Tensor  # float32 [3, 1, 3, 3]: 1s around a 5, over 13, per channel


_TABLE_CACHE: dict = {}


def _tables(device: torch.device) -> _Tables:
    """The tables on `device`, built once per device (building copies from the host:
    never per batch)."""
    if device not in _TABLE_CACHE:
        ops = [[OP_NAMES.index(name) for name, _, _ in policy] for policy in CIFAR10_POLICY]
        probability = [[p for _, p, _ in policy] for policy in CIFAR10_POLICY]
        magnitudes = [[magnitude(name, level) for name, _, level in policy]
                      for policy in CIFAR10_POLICY]
        signed = [OPS[name][1] for name in OP_NAMES]
        sharpness = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
        _TABLE_CACHE[device] = _Tables(
            ops=torch.tensor(ops, device=device),
            probability=torch.tensor(probability, dtype=torch.float32, device=device),
            magnitudes=torch.tensor(magnitudes, dtype=torch.float64, device=device),
            signed=torch.tensor(signed, device=device),
            group_ops=tuple(torch.tensor([OP_NAMES.index(n) for n in names], device=device)
                            for names, _ in _GROUPS),
            sharpness_kernel=sharpness.expand(3, 1, 3, 3).contiguous().to(device),
        )
    return _TABLE_CACHE[device]
