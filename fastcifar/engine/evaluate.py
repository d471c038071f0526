"""Evaluation: loss and accuracy accumulated on the device, read by the caller once."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fastcifar.engine.step import (
    CORRECT,
    LOSS_SUM,
    SEEN,
    autocast_for,
    count_correct,
    cross_entropy,
)

TTA_LEVELS = (0, 1, 2)


def predict(model, images: Tensor, *, tta: int = 0) -> Tensor:
    """float32 logits of normalised images, with test-time augmentation (airbench's levels):

    0  the image alone
    1  the mean of the image's and its mirror image's logits
    2  half of level 1, plus half the mean of level 1 over the image translated by one
       pixel up-left and one pixel down-right (reflect padding)
    """
    if tta not in TTA_LEVELS:
        raise ValueError(f"tta must be one of {TTA_LEVELS}, got {tta!r}")
    if tta == 0:
        return model(images).float()
    logits = _mirrored(model, images)
    if tta == 2:
        padded = F.pad(images, (1, 1, 1, 1), mode="reflect")
        height, width = images.shape[-2:]
        translated = [padded[:, :, :height, :width], padded[:, :, 2:, 2:]]
        logits = 0.5 * logits + 0.25 * sum(_mirrored(model, t) for t in translated)
    return logits


def _mirrored(model, images: Tensor) -> Tensor:
    return 0.5 * model(images).float() + 0.5 * model(images.flip(3)).float()


@torch.no_grad()
def evaluate(model, loader, *, device, dtype: str = "fp32", tta: int = 0,
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
