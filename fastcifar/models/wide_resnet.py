"""Wide ResNets (Zagoruyko & Komodakis 2016): WRN-d-k.

Pre-activation basic blocks (shared with preact_resnet.py) with 16k-32k-64k filters,
(d-4)/6 blocks per stage, dropout between the two convs, 1x1 projections where the
shape changes. WRN-28-10 has 36.5M parameters.
"""
from __future__ import annotations

from .layers import Stage
from .preact_resnet import PreActResNet
from .registry import register_model


def _wide_resnet(depth: int, widen: int, num_classes: int, **options) -> PreActResNet:
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(f"WRN depth must be 6n+4 (10, 16, 22, 28, ...), got {depth}")
    blocks = (depth - 4) // 6
    stages = [Stage(blocks, 16 * widen), Stage(blocks, 32 * widen, 2), Stage(blocks, 64 * widen, 2)]
    return PreActResNet(16, stages, num_classes, **options)


@register_model
def wrn28_10(num_classes: int = 10, **options) -> PreActResNet:
    """WRN-28-10, 36.5M parameters; ``dropout`` (default 0.0) between the convs."""
    return _wide_resnet(28, 10, num_classes, **options)


@register_model
def wrn16_8(num_classes: int = 10, **options) -> PreActResNet:
    """WRN-16-8, 11.0M parameters."""
    return _wide_resnet(16, 8, num_classes, **options)


@register_model
def wrn28_2(num_classes: int = 10, **options) -> PreActResNet:
    """WRN-28-2, 1.5M parameters."""
    return _wide_resnet(28, 2, num_classes, **options)
