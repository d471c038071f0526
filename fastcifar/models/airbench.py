"""airbench94's network, exactly (Keller Jordan, cifar10-airbench; the `airbench` package
0.1.8, lib_airbench94.py): 94.01% mean CIFAR-10 accuracy over 1,000 runs in 3.83 s on
an A100 with its own recipe (fastcifar's `--recipe airbench94`).

    whitening 2x2 conv (24 frozen filters from the training patches' eigenvectors, bias)
    GELU
    3 x ConvGroup(64, 256, 256): conv3x3, max-pool 2, BN, GELU, conv3x3, BN, GELU
    max-pool 3 (3x3 -> 1x1), linear without bias, logits x 1/9

BatchNorm: eps 1e-12, running statistics kept with weight 0.6 on the old value (torch's
momentum 0.4), weight frozen at 1 (only the bias trains). Convs: torch's default draw,
then the first `in_channels` filters set to pass their input channel through (dirac).
Modules are built in airbench's order, so the same seed draws the same initial weights,
and parameters and buffers come in airbench's order (its state dict maps by position).
"""
from __future__ import annotations

import torch
from torch import nn

from .registry import register_model
from .whitening import WhiteningConv

BN_EPS = 1e-12
BN_MOMENTUM = 0.4  # torch's convention: the new batch's weight (airbench's 0.6 is the old's)
LOGIT_SCALE = 1 / 9


class DiracConv(nn.Conv2d):
    """3x3 'same' conv without bias, the first in_channels filters initialised to identity."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, 3, padding="same", bias=False)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        with torch.no_grad():
            nn.init.dirac_(self.weight[: self.in_channels])


def frozen_weight_bn(channels: int) -> nn.BatchNorm2d:
    """BatchNorm whose weight stays 1: only the bias (a per-channel shift) trains."""
    norm = nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)
    norm.weight.requires_grad_(False)
    return norm


class ConvGroup(nn.Module):
    """conv, 2x2 max-pool, BN, GELU, conv, BN, GELU (pooling before BN runs the BN and
    the second conv on a quarter of the pixels)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = DiracConv(in_channels, out_channels)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = frozen_weight_bn(out_channels)
        self.conv2 = DiracConv(out_channels, out_channels)
        self.norm2 = frozen_weight_bn(out_channels)
        self.activ = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activ(self.norm1(self.pool(self.conv1(x))))
        return self.activ(self.norm2(self.conv2(x)))


class Airbench94(nn.Module):
    """airbench94's network; 1.97M parameters (1.97M trainable: all but the whitening
    filters and the BN weights). `widths`: the three groups' channels."""

    def __init__(self, num_classes: int = 10, *, widths: tuple[int, int, int] = (64, 256, 256)):
        super().__init__()
        self.whiten = WhiteningConv(3, kernel_size=2)
        self.activ = nn.GELU()
        channels = (self.whiten.out_channels, *widths)
        self.groups = nn.Sequential(*(ConvGroup(channels[i], channels[i + 1])
                                      for i in range(len(widths))))
        self.pool = nn.MaxPool2d(3)
        self.linear = nn.Linear(widths[-1], num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.groups(self.activ(self.whiten(x))))
        return self.linear(x.flatten(1)) * LOGIT_SCALE


@register_model
def airbench94(num_classes: int = 10, **options) -> Airbench94:
    """airbench94's network exactly: whitening stem, GELU, groups 64/256/256, 1.97M params."""
    return Airbench94(num_classes, **options)
