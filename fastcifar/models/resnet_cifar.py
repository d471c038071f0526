"""ResNet-20/32/44/56/110 for CIFAR (He et al. 2016, section 4.2).

16-32-64 filters on 32-16-8 pixel maps, 6n+2 layers, option A shortcuts: where the shape
changes the identity is subsampled by the stride and zero-padded to the new width, so
the shortcuts add no parameters (ResNet-20 is 0.27M, ResNet-110 1.7M).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import (
    Stage,
    StagedNet,
    build_stages,
    classifier_head,
    conv3x3,
    conv_bn_relu,
    make_drop_path,
)
from .registry import register_model


class ZeroPadShortcut(nn.Module):
    """Option A: keep every ``stride``-th pixel and append zero channels; no parameters."""

    def __init__(self, out_channels: int, stride: int):
        super().__init__()
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        # F.pad keeps a channels_last input channels_last (checked in the tests).
        return F.pad(x, (0, 0, 0, 0, 0, self.out_channels - x.shape[1]))


class BasicBlock(nn.Module):
    """Post-activation block: conv-BN-ReLU-conv-BN, add the shortcut, ReLU."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, *, drop_path: float = 0.0
    ):
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.drop_path = make_drop_path(drop_path)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = ZeroPadShortcut(out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(self.drop_path(out) + self.shortcut(x))

    def zero_init_target(self) -> nn.Parameter:
        return self.bn2.weight


class ResNetCifar(StagedNet):
    def __init__(
        self,
        depth: int,
        num_classes: int = 10,
        *,
        zero_init_residual: bool = False,
        drop_path: float = 0.0,
    ):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, ...), got {depth}")
        blocks = (depth - 2) // 6
        self.stem = conv_bn_relu(3, 16)
        self.stages = build_stages(
            lambda c_in, stage, stride, rate: BasicBlock(
                c_in, stage.out_channels, stride, drop_path=rate
            ),
            16,
            [Stage(blocks, 16), Stage(blocks, 32, 2), Stage(blocks, 64, 2)],
            drop_path,
        )
        self.head = classifier_head(64, num_classes)
        self.init_weights(zero_init_residual)


@register_model
def resnet20(num_classes: int = 10, **options) -> ResNetCifar:
    """ResNet-20, 0.27M parameters."""
    return ResNetCifar(20, num_classes, **options)


@register_model
def resnet32(num_classes: int = 10, **options) -> ResNetCifar:
    """ResNet-32, 0.46M parameters."""
    return ResNetCifar(32, num_classes, **options)


@register_model
def resnet44(num_classes: int = 10, **options) -> ResNetCifar:
    """ResNet-44, 0.66M parameters."""
    return ResNetCifar(44, num_classes, **options)


@register_model
def resnet56(num_classes: int = 10, **options) -> ResNetCifar:
    """ResNet-56, 0.85M parameters."""
    return ResNetCifar(56, num_classes, **options)


@register_model
def resnet110(num_classes: int = 10, **options) -> ResNetCifar:
    """ResNet-110, 1.7M parameters."""
    return ResNetCifar(110, num_classes, **options)
