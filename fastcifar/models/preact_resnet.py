"""Pre-activation ResNets (He et al., "Identity Mappings in Deep Residual Networks", 2016).

``preact_resnet18`` follows Kuang Liu's CIFAR PreActResNet18 (64-128-256-512 filters,
2 blocks per stage, 1x1 projection shortcuts, 11.2M parameters) plus the paper's final
BN-ReLU before pooling. ``preact_resnet20`` is the 16-32-64 CIFAR layout of ResNet-20.
The block is shared with the wide ResNets (``dropout`` between the two convs).
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import (
    Stage,
    StagedNet,
    build_stages,
    classifier_head,
    conv1x1,
    conv3x3,
    make_drop_path,
)
from .registry import register_model


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3, BN-ReLU-(dropout)-conv3x3, plus the shortcut; no ReLU after the add.

    A projection shortcut (1x1 conv) where the shape changes reads the pre-activated
    input, as in the paper.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        *,
        dropout: float = 0.0,
        drop_path: float = 0.0,
    ):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout) if dropout > 0.0 else nn.Identity()
        self.drop_path = make_drop_path(drop_path)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = conv1x1(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.dropout(self.relu(self.bn2(out))))
        return self.drop_path(out) + shortcut

    def zero_init_target(self) -> nn.Parameter:
        # Not bn2's gamma: a BN that feeds a ReLU, zeroed with its zero beta, sits at the
        # ReLU's kink, so gamma and beta get zero gradient and the branch never wakes up.
        # Zeroing the last conv gives the same zero branch and keeps it trainable.
        return self.conv2.weight


class PreActResNet(StagedNet):
    def __init__(
        self,
        stem_channels: int,
        stages: list[Stage],
        num_classes: int = 10,
        *,
        zero_init_residual: bool = False,
        drop_path: float = 0.0,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.stem = conv3x3(3, stem_channels)
        self.stages = build_stages(
            lambda c_in, stage, stride, rate: PreActBlock(
                c_in, stage.out_channels, stride, dropout=dropout, drop_path=rate
            ),
            stem_channels,
            stages,
            drop_path,
        )
        self.head = classifier_head(stages[-1].out_channels, num_classes, pre_act=True)
        self.init_weights(zero_init_residual)


@register_model
def preact_resnet18(num_classes: int = 10, **options) -> PreActResNet:
    """Pre-activation ResNet-18 for CIFAR, 11.2M parameters."""
    stages = [Stage(2, 64), Stage(2, 128, 2), Stage(2, 256, 2), Stage(2, 512, 2)]
    return PreActResNet(64, stages, num_classes, **options)


@register_model
def preact_resnet20(num_classes: int = 10, **options) -> PreActResNet:
    """Pre-activation ResNet-20 (16-32-64 filters), 0.27M parameters."""
    stages = [Stage(3, 16), Stage(3, 32, 2), Stage(3, 64, 2)]
    return PreActResNet(16, stages, num_classes, **options)
