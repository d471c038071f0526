"""ResNet-50 as the strong CIFAR-100 baseline uses it.

The ImageNet ResNet-50 body (bottlenecks, 3-4-6-3 blocks, 256-512-1024-2048 outputs,
stride on the 3x3 conv) with a 3x3 stride-1 stem and no max-pool, so stage 1 runs at
32x32; ResNet-D shortcuts (2x2 average pool, then a stride-1 1x1 conv + BN); optional
stochastic depth rising linearly over the 16 blocks.
"""
from __future__ import annotations

from .layers import Bottleneck, Stage, StagedNet, build_stages, classifier_head, conv_bn_relu
from .registry import register_model


class ResNet50Cifar(StagedNet):
    def __init__(
        self,
        num_classes: int = 10,
        *,
        zero_init_residual: bool = False,
        drop_path: float = 0.0,
    ):
        super().__init__()
        self.stem = conv_bn_relu(3, 64)
        self.stages = build_stages(
            lambda c_in, stage, stride, rate: Bottleneck(
                c_in, stage.out_channels, stride, width=stage.width, avg_down=True, drop_path=rate
            ),
            64,
            [
                Stage(3, 256, 1, width=64),
                Stage(4, 512, 2, width=128),
                Stage(6, 1024, 2, width=256),
                Stage(3, 2048, 2, width=512),
            ],
            drop_path,
        )
        self.head = classifier_head(2048, num_classes)
        self.init_weights(zero_init_residual)


@register_model
def resnet50_cifar(num_classes: int = 10, **options) -> ResNet50Cifar:
    """ResNet-50, 3x3 stem, no max-pool, ResNet-D shortcuts; 23.5M parameters."""
    return ResNet50Cifar(num_classes, **options)
