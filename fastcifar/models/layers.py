"""Pieces shared by the residual families: conv helpers, stochastic depth, the
bottleneck block, stage assembly, the pooled linear head and weight init.

Residual blocks that support ``zero_init_residual`` define ``zero_init_target()``: the
weight whose zeroing makes the residual branch output exactly zero, so each block starts
as the identity (or as its projection shortcut).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import nn


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, groups=groups, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)


def conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        conv3x3(in_channels, out_channels, stride),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class DropPath(nn.Module):
    """Stochastic depth: drop a sample's whole residual branch with probability ``p``
    in training and scale the kept ones by 1/(1-p); the identity in eval mode."""

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop path probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        # The mask is drawn on the device (no host sync), so a CUDA graph can capture it.
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        mask = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def make_drop_path(p: float) -> nn.Module:
    return DropPath(p) if p > 0.0 else nn.Identity()


def drop_path_rates(num_blocks: int, max_rate: float) -> list[float]:
    """The linear rule of Huang et al. 2016: block l of L drops with rate l/L * max_rate."""
    return [max_rate * (index + 1) / num_blocks for index in range(num_blocks)]


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped, strided), 1x1 expand, BN after each, ReLU after the add.

    ``groups`` > 1 makes it a ResNeXt block. The shortcut is the identity, or a 1x1 conv
    + BN projection where the shape changes; with ``avg_down`` (ResNet-D) a strided
    projection averages 2x2 first and then uses a stride-1 conv, so it sees every pixel.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        *,
        width: int,
        groups: int = 1,
        avg_down: bool = False,
        drop_path: float = 0.0,
    ):
        super().__init__()
        self.conv1 = conv1x1(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.drop_path = make_drop_path(drop_path)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            if avg_down and stride != 1:
                pool = nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False)
                projection = [pool, conv1x1(in_channels, out_channels)]
            else:
                projection = [conv1x1(in_channels, out_channels, stride)]
            self.shortcut = nn.Sequential(*projection, nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        # Out-of-place add: the in-place ReLU then acts on a fresh tensor autograd doesn't need.
        return self.relu(self.drop_path(out) + self.shortcut(x))

    def zero_init_target(self) -> nn.Parameter:
        return self.bn3.weight


class Stage(NamedTuple):
    """One resolution stage: ``num_blocks`` blocks, the first with ``stride``."""

    num_blocks: int
    out_channels: int
    stride: int = 1
    width: int = 0  # inner width, for bottleneck blocks


# make_block(in_channels, stage, stride, drop_path) -> block
BlockFactory = Callable[[int, Stage, int, float], nn.Module]


def build_stages(
    make_block: BlockFactory, in_channels: int, stages: list[Stage], drop_path: float = 0.0
) -> nn.Sequential:
    """nn.Sequential of stages (each an nn.Sequential of blocks), drop-path rates rising
    linearly over all blocks of the network."""
    rates = iter(drop_path_rates(sum(stage.num_blocks for stage in stages), drop_path))
    built = []
    for stage in stages:
        blocks = []
        for index in range(stage.num_blocks):
            stride = stage.stride if index == 0 else 1
            blocks.append(make_block(in_channels, stage, stride, next(rates)))
            in_channels = stage.out_channels
        built.append(nn.Sequential(*blocks))
    return nn.Sequential(*built)


def classifier_head(
    in_channels: int, num_classes: int, *, pre_act: bool = False
) -> nn.Sequential:
    """Global average pool, then linear; ``pre_act`` puts BN-ReLU first (pre-activation nets)."""
    norm = [nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True)] if pre_act else []
    return nn.Sequential(
        *norm, nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(in_channels, num_classes)
    )


class StagedNet(nn.Module):
    """stem -> stages -> head. Subclasses set the three parts, then call ``init_weights``."""

    stem: nn.Module
    stages: nn.Module
    head: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))

    def init_weights(self, zero_init_residual: bool) -> None:
        """He init for convs, BN at (1, 0); optionally zero each block's residual output."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            zero_init_residual_(self)


def zero_init_residual_(model: nn.Module) -> int:
    """Zero every block's ``zero_init_target()`` (bag of tricks); returns how many blocks."""
    blocks = [module for module in model.modules() if hasattr(module, "zero_init_target")]
    for block in blocks:
        nn.init.zeros_(block.zero_init_target())
    return len(blocks)
