"""Evaluation: loss and accuracy accumulated on the device, read by the caller once."""
from __future__ import annotations

import torch
from torch import Tensor

from fastcifar.engine.step import (
    CORRECT,
    LOSS_SUM,
    SEEN,
    autocast_for,
    count_correct,
    cross_entropy,
)


def predict(model, images: Tensor, *, tta: bool = False) -> Tensor:
    """Logits; with tta, the mean of the logits of the image and its mirror image."""
    logits = model(images).float()
    if tta:
        logits = 0.5 * (logits + model(images.flip(3)).float())
    return logits


@torch.no_grad()
def evaluate(model, loader, *, device, dtype: str = "fp32", tta: bool = False,
             channels_last: bool = True) -> Tensor:
    """float64 [3] on the device: summed loss, correct count, samples (see step.py).

    The model is put in eval mode for the pass and restored afterwards. Loss is plain
    cross-entropy (no smoothing), so test losses compare across recipes.
    """
    was_training = model.training
    model.eval()
    metrics = torch.zeros(3, dtype=torch.float64, device=device)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    try:
        for images, targets in loader:
            images = images.contiguous(memory_format=layout)  # no copy when it already is
            with autocast_for(images.device, dtype):
                logits = predict(model, images, tta=tta)
            n = images.shape[0]
            metrics[LOSS_SUM] += cross_entropy(logits, targets).double() * n
            metrics[CORRECT] += count_correct(logits, targets).double()
            metrics[SEEN] += n
    finally:
        model.train(was_training)
    return metrics
