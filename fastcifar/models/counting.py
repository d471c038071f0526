"""Sizes and costs of the models, and the decay / no-decay parameter split.

FLOP convention: forward FLOPs for one 32x32 image, a multiply-add counted as 2 FLOPs
(torch.utils.flop_counter's convention); only convolutions and matrix products are
counted (BN, activations, pooling and adds are a few percent at most). The ResNeXt
paper's 16x64d figure, 10.7 G multiply-adds, is 21.4 GFLOPs in this convention.
Models are built and run on the meta device: shapes only, no memory, no arithmetic.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .registry import create_model, list_models


def count_params(model: nn.Module) -> int:
    """Number of parameters (each shared tensor once)."""
    return sum(param.numel() for param in model.parameters())


def count_flops(model: nn.Module, image_size: int = 32) -> int:
    """Forward FLOPs (multiply-add = 2) for one ``image_size`` RGB image, in eval mode."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.empty(1, 3, image_size, image_size, device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops()


def model_info(name: str, num_classes: int = 10) -> dict:
    """``{"name", "params", "gflops"}`` for a registered model, measured on the meta device."""
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes)
    return {"name": name, "params": count_params(model), "gflops": count_flops(model) / 1e9}


def format_model_table(names: list[str] | None = None, num_classes: int = 10) -> str:
    """A plain-text table of name, parameters (M) and forward GFLOPs per 32x32 image."""
    rows = [model_info(name, num_classes) for name in (list_models() if names is None else names)]
    width = max([len("model")] + [len(row["name"]) for row in rows])
    lines = [f"{'model':<{width}}  {'params (M)':>10}  {'GFLOPs':>8}"]
    for row in rows:
        lines.append(f"{row['name']:<{width}}  {row['params'] / 1e6:>10.2f}  {row['gflops']:>8.2f}")
    lines.append(
        f"({num_classes} classes; GFLOPs: forward, one 32x32 image, multiply-add = 2 FLOPs)"
    )
    return "\n".join(lines)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Optimizer groups: conv/linear weights decay; biases and BN (all 1-D) params don't.

    Only trainable parameters are included; empty groups are left out.
    """
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim > 1 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [group for group in groups if group["params"]]
