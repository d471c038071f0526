"""Small fast nets for speed runs, where the input pipeline is the bottleneck.

Both keep PyTorch's default init and scale the logits down by a constant (the recipes'
temperature) instead of tuning the loss. Plain modules: BN stays float under autocast,
no custom kernels. airbench94's exact network is in airbench.py; `airbench94_v0` here is
fastcifar's earlier approximation of it, kept so that runs started with it resume (an
older config.json naming `airbench94` is migrated to it, see engine/migrate.py).
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import conv3x3, conv_bn_relu
from .registry import register_model


class Residual(nn.Module):
    """x + branch(x); the branch's output ReLU makes zero-init of its last BN a dead
    branch, so these nets do not offer ``zero_init_residual``."""

    def __init__(self, branch: nn.Module):
        super().__init__()
        self.branch = branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


class ResNet9(nn.Module):
    """The DAWNBench ResNet-9 (Myrtle.ai, David Page 2018), 6.6M parameters.

    prep conv 64; conv 128 + pool + residual(2 convs); conv 256 + pool; conv 512 + pool
    + residual(2 convs); global max-pool; bias-free linear; logits x 0.125.
    """

    def __init__(self, num_classes: int = 10, *, logit_scale: float = 0.125):
        super().__init__()
        self.logit_scale = logit_scale
        self.body = nn.Sequential(
            conv_bn_relu(3, 64),
            conv_bn_relu(64, 128),
            nn.MaxPool2d(2),
            Residual(nn.Sequential(conv_bn_relu(128, 128), conv_bn_relu(128, 128))),
            conv_bn_relu(128, 256),
            nn.MaxPool2d(2),
            conv_bn_relu(256, 512),
            nn.MaxPool2d(2),
            Residual(nn.Sequential(conv_bn_relu(512, 512), conv_bn_relu(512, 512))),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(1),
        )
        self.linear = nn.Linear(512, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.body(x)) * self.logit_scale


class ConvGroupV0(nn.Module):
    """airbench's block: conv, 2x2 max-pool, BN, GELU, conv, BN, GELU (pooling before
    BN runs the BN and second conv on a quarter of the pixels)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels)
        self.pool = nn.MaxPool2d(2)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.pool(self.conv1(x))))
        return self.act(self.bn2(self.conv2(x)))


class Airbench94V0(nn.Module):
    """fastcifar's first airbench94 (before schema 2), 2.0M parameters: airbench's shape
    without its whitening init, BN settings or dirac init.

    A 2x2 conv stem with 24 filters (an ordinary trainable conv), GELU, three ConvGroups of
    64-256-256 filters (31 -> 15 -> 7 -> 3 pixels), global max-pool, bias-free linear,
    logits x 1/9.
    """

    def __init__(self, num_classes: int = 10, *, logit_scale: float = 1 / 9):
        super().__init__()
        self.logit_scale = logit_scale
        self.body = nn.Sequential(
            nn.Conv2d(3, 24, kernel_size=2, padding=0, bias=True),
            nn.GELU(),
            ConvGroupV0(24, 64),
            ConvGroupV0(64, 256),
            ConvGroupV0(256, 256),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(1),
        )
        self.linear = nn.Linear(256, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.body(x)) * self.logit_scale


@register_model
def resnet9(num_classes: int = 10, **options) -> ResNet9:
    """DAWNBench/Myrtle ResNet-9, 6.6M parameters."""
    return ResNet9(num_classes, **options)


@register_model
def airbench94_v0(num_classes: int = 10, **options) -> Airbench94V0:
    """fastcifar's earlier airbench94 approximation (no whitening), kept for old runs."""
    return Airbench94V0(num_classes, **options)
