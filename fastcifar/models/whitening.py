"""A patch-whitening stem: a small conv whose frozen filters whiten the image's patches.

airbench94's first layer (Keller Jordan 2024, after tysam-code's hlb-CIFAR10): a k x k
conv whose filters are the eigenvectors of the training images' k x k patch covariance,
each scaled by 1 / sqrt(eigenvalue + eps), and the same filters negated (so a GELU after
it keeps both signs). The filters stay fixed; only the bias trains (the trainer freezes
it after a few epochs, see engine/optim.py).

The filters depend on training data, so they are set after the model is built:
`init_whitening(model, images)` is the hook the trainer calls with normalised training
images (engine/build.py); the model layer itself never reads data.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

WHITENING_EPS = 5e-4  # airbench's: keeps the scale of near-zero-variance directions finite


class WhiteningConv(nn.Conv2d):
    """k x k conv, 2 * C * k * k output channels, bias; its weight never trains."""

    def __init__(self, in_channels: int = 3, kernel_size: int = 2, eps: float = WHITENING_EPS):
        out_channels = 2 * in_channels * kernel_size * kernel_size
        super().__init__(in_channels, out_channels, kernel_size, padding=0, bias=True)
        self.eps = eps
        self.weight.requires_grad_(False)

    def reset_parameters(self) -> None:
        # airbench's Conv init (the weight is replaced by init_from_images before training):
        # torch's default draw, zero bias, and the first in_channels filters pass their
        # input channel through (dirac).
        super().reset_parameters()
        with torch.no_grad():
            self.bias.zero_()
            nn.init.dirac_(self.weight[: self.in_channels])

    @torch.no_grad()
    def init_from_images(self, images: Tensor) -> None:
        """Set the filters from normalised images [N, C, H, W] (any float dtype)."""
        filters = whitening_filters(images, self.kernel_size[0], self.eps)
        self.weight.copy_(filters.to(self.weight.dtype))


def whitening_filters(images: Tensor, kernel_size: int, eps: float = WHITENING_EPS) -> Tensor:
    """float32 [2 * C * k * k, C, k, k]: the patch covariance's eigenvectors, largest
    eigenvalue first, each divided by sqrt(eigenvalue + eps); then the same, negated."""
    channels, k = images.shape[1], kernel_size
    # Every k x k patch at stride 1, as rows of C * k * k values in (c, y, x) order.
    patches = images.float().unfold(2, k, 1).unfold(3, k, 1)  # [N, C, H', W', k, k]
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, channels * k * k)
    covariance = patches.T @ patches / patches.shape[0]
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending order
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
    filters = eigenvectors.T / torch.sqrt(eigenvalues + eps)[:, None]
    filters = filters.reshape(-1, channels, k, k)
    return torch.cat((filters, -filters))


def whitening_layers(model: nn.Module) -> list[WhiteningConv]:
    return [module for module in model.modules() if isinstance(module, WhiteningConv)]


def init_whitening(model: nn.Module, images: Tensor) -> bool:
    """Initialise every whitening stem of `model` from `images`; False if it has none."""
    layers = whitening_layers(model)
    for layer in layers:
        layer.init_from_images(images.to(layer.weight.device))
    return bool(layers)
