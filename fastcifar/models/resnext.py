"""ResNeXt-29 for CIFAR (Xie et al. 2017, section 5.3 and Table 7).

3x3 stem with 64 filters, three stages of three bottleneck blocks with outputs
256-512-1024 and inner width cardinality x base_width x (1, 2, 4), grouped 3x3 convs
carrying the stride at the start of stages 2 and 3, 1x1 conv + BN projections where the
shape changes. 8x64d has 34.4M parameters, 16x64d 68.1M.
"""
from __future__ import annotations

from .layers import Bottleneck, Stage, StagedNet, build_stages, classifier_head, conv_bn_relu
from .registry import register_model


class ResNeXt29(StagedNet):
    def __init__(
        self,
        cardinality: int,
        base_width: int,
        num_classes: int = 10,
        *,
        zero_init_residual: bool = False,
        drop_path: float = 0.0,
    ):
        super().__init__()
        width = cardinality * base_width
        self.stem = conv_bn_relu(3, 64)
        self.stages = build_stages(
            lambda c_in, stage, stride, rate: Bottleneck(
                c_in,
                stage.out_channels,
                stride,
                width=stage.width,
                groups=cardinality,
                drop_path=rate,
            ),
            64,
            [
                Stage(3, 256, 1, width=width),
                Stage(3, 512, 2, width=2 * width),
                Stage(3, 1024, 2, width=4 * width),
            ],
            drop_path,
        )
        self.head = classifier_head(1024, num_classes)
        self.init_weights(zero_init_residual)


@register_model
def resnext29_1x64d(num_classes: int = 10, **options) -> ResNeXt29:
    """ResNeXt-29 1x64d."""
    return ResNeXt29(1, 64, num_classes, **options)


@register_model
def resnext29_2x64d(num_classes: int = 10, **options) -> ResNeXt29:
    """ResNeXt-29 2x64d."""
    return ResNeXt29(2, 64, num_classes, **options)


@register_model
def resnext29_4x64d(num_classes: int = 10, **options) -> ResNeXt29:
    """ResNeXt-29 4x64d."""
    return ResNeXt29(4, 64, num_classes, **options)


@register_model
def resnext29_8x64d(num_classes: int = 10, **options) -> ResNeXt29:
    """ResNeXt-29 8x64d, 34.4M parameters."""
    return ResNeXt29(8, 64, num_classes, **options)


@register_model
def resnext29_16x64d(num_classes: int = 10, **options) -> ResNeXt29:
    """ResNeXt-29 16x64d, 68.1M parameters."""
    return ResNeXt29(16, 64, num_classes, **options)


@register_model
def resnext29_32x4d(num_classes: int = 10, **options) -> ResNeXt29:
    """ResNeXt-29 32x4d."""
    return ResNeXt29(32, 4, num_classes, **options)


@register_model
def resnext29(num_classes: int = 10, **options) -> ResNeXt29:
    """ResNeXt-29 16x64d (the paper's best CIFAR model)."""
    return ResNeXt29(16, 64, num_classes, **options)
