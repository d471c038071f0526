"""What each augmentation policy can draw: its operations and their magnitude bins.

The three policies of torchvision's transforms v2 for a 32x32 image, magnitudes bit for
bit as torchvision computes them (float32 linspaces read back as Python floats):

    autoaugment     AutoAugment's CIFAR-10 policy (Cubuk et al. 2019): one of 25
                    sub-policies of two (op, probability, bin) steps, 10 bins
    randaugment     RandAugment (Cubuk et al. 2020): N ops drawn uniformly from 14, each
                    at bin M of 31
    trivialaugment  TrivialAugmentWide (Mueller and Hutter 2021): one op drawn uniformly
                    from 14, at a uniformly drawn bin of 31 (the wide magnitude ranges)

A signed op's magnitude is negated with probability 1/2. Every draw of one step is one
integer, its *entry* (op, bin, sign): entry = (op * num_bins + bin) * 2 + negated, with op
an index into the space's `ops`, whose first op is Identity, so entry 0 is a step that
does nothing (an AutoAugment step whose probability said no). policy_table.py turns each
entry into what the kernels compute; policy_sampler.py draws entries on the device.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from fastcifar.augment.config import IMAGE_SIZE
from fastcifar.augment_policies import RANDAUGMENT_BINS

# Magnitude ranges: op -> (largest magnitude, signed); bins are linspace(0, largest).
# Posterize (bits) and Solarize (threshold / 255) count down instead; the last three
# AutoAugment ops and Identity take no magnitude.
_STANDARD = {
    "ShearX": (0.3, True), "ShearY": (0.3, True),
    "TranslateX": (150.0 / 331.0 * IMAGE_SIZE, True),
    "TranslateY": (150.0 / 331.0 * IMAGE_SIZE, True),
    "Rotate": (30.0, True), "Brightness": (0.9, True), "Color": (0.9, True),
    "Contrast": (0.9, True), "Sharpness": (0.9, True),
}
_WIDE = {
    "ShearX": (0.99, True), "ShearY": (0.99, True),
    "TranslateX": (32.0, True), "TranslateY": (32.0, True),
    "Rotate": (135.0, True), "Brightness": (0.99, True), "Color": (0.99, True),
    "Contrast": (0.99, True), "Sharpness": (0.99, True),
}
_COLOUR_TAIL = ("Posterize", "Solarize", "AutoContrast", "Equalize")
NO_MAGNITUDE = frozenset({"Identity", "AutoContrast", "Equalize", "Invert"})

# AutoAugment's CIFAR-10 policy: 25 sub-policies of two (op, probability, bin) steps.
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


@dataclass(frozen=True, eq=False)  # one instance per policy: hashed by identity
class PolicySpace:
    """The operations one policy draws from and their magnitude bins."""

    name: str
    ops: tuple[str, ...]  # ops[0] is Identity
    num_bins: int
    ranges: dict  # op -> (largest magnitude, signed), for the linspace ops
    posterize_bits_span: int  # Posterize's bits fall from 8 to 8 - span over the bins

    def signed(self, op: str) -> bool:
        return op in self.ranges and self.ranges[op][1]

    def magnitude(self, op: str, level: int) -> float:
        """The unsigned magnitude of `op` at bin `level`, exactly torchvision's."""
        return _bins(self, op)[level]

    def entry(self, op: str, level: int, negated: bool = False) -> int:
        return (self.ops.index(op) * self.num_bins + level) * 2 + int(negated)

    def describe(self, entry: int) -> tuple[str, float]:
        """(op name, signed magnitude) of one entry: what torchvision's op is called with."""
        negated, rest = entry % 2, entry // 2
        op, level = self.ops[rest // self.num_bins], rest % self.num_bins
        if op in NO_MAGNITUDE:
            return op, 0.0
        value = self.magnitude(op, level)
        return op, -value if negated and self.signed(op) else value

    @property
    def num_entries(self) -> int:
        return len(self.ops) * self.num_bins * 2


@lru_cache(maxsize=None)
def _bins(space: PolicySpace, op: str) -> tuple[float, ...]:
    n = space.num_bins
    if op == "Posterize":
        steps = torch.arange(n) / ((n - 1) / space.posterize_bits_span)
        return tuple(float(b) for b in (8 - steps).round().int())
    if op == "Solarize":
        return tuple(float(v) for v in torch.linspace(1.0, 0.0, n))
    if op in NO_MAGNITUDE:
        return (0.0,) * n
    return tuple(float(v) for v in torch.linspace(0.0, space.ranges[op][0], n))


SPACES = {
    "autoaugment": PolicySpace(
        "autoaugment", ("Identity", *_STANDARD, *_COLOUR_TAIL, "Invert"), 10, _STANDARD, 4),
    "randaugment": PolicySpace(
        "randaugment", ("Identity", *_STANDARD, *_COLOUR_TAIL), RANDAUGMENT_BINS, _STANDARD, 4),
    "trivialaugment": PolicySpace(
        "trivialaugment", ("Identity", *_WIDE, *_COLOUR_TAIL), 31, _WIDE, 6),
}
