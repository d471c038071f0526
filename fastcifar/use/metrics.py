"""Classification metrics, accumulated on the device batch by batch and read once.

What is kept is mergeable (sums and counts), so a test set of any size (CIFAR-10-C holds a
million images) costs a [K, K] confusion matrix and three 15-bin vectors, not its logits:

  - loss sum (plain cross-entropy, as the trainer's test loss)
  - the confusion matrix: rows are true classes, columns predicted ones (argmax of the
    logits, exactly what the trainer counts as correct)
  - calibration: the top-1 confidence (max softmax probability) of each image falls in
    one of 15 equal-width bins over (0, 1] (bin b holds (b/15, (b+1)/15]); per bin its
    image count, summed confidence and summed correctness. Expected calibration error
    ECE = sum_b (n_b / N) * |accuracy_b - confidence_b| (Guo et al., 2017, 15 bins).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

ECE_BINS = 15


class MetricsAccumulator:
    """Running sums over the batches given to update(); result() reads them (one sync)."""

    def __init__(self, num_classes: int, device: torch.device | str = "cpu"):
        self.num_classes = num_classes
        self.device = torch.device(device)
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
        # [3, bins]: image count, summed confidence, summed correctness
        self.bins = torch.zeros(3, ECE_BINS, dtype=torch.float64, device=device)
        self._inner_edges = torch.linspace(0, 1, ECE_BINS + 1, dtype=torch.float64,
                                           device=device)[1:-1]

    def update(self, logits: Tensor, labels: Tensor) -> None:
        """Add a batch: logits [B, K] (any float dtype), labels int64 [B], on the device."""
        logits = logits.float()
        k = self.num_classes
        self.loss_sum += F.cross_entropy(logits, labels, reduction="sum").double()
        predicted = logits.argmax(dim=1)
        self.confusion += torch.bincount(labels * k + predicted, minlength=k * k)
        confidence = logits.softmax(dim=1).gather(1, predicted[:, None])[:, 0].double()
        # bucketize (right=False) gives b with edge[b] < c <= edge[b + 1]: bins (lo, hi]
        which = torch.bucketize(confidence, self._inner_edges)
        correct = (predicted == labels).double()
        self.bins[0] += torch.bincount(which, minlength=ECE_BINS).double()
        self.bins[1] += torch.bincount(which, weights=confidence, minlength=ECE_BINS)
        self.bins[2] += torch.bincount(which, weights=correct, minlength=ECE_BINS)

    def merge(self, other: "MetricsAccumulator") -> None:
        self.loss_sum += other.loss_sum.to(self.device)
        self.confusion += other.confusion.to(self.device)
        self.bins += other.bins.to(self.device)

    def result(self) -> "Metrics":
        k = self.num_classes
        return Metrics(loss_sum=float(self.loss_sum),
                       confusion=self.confusion.reshape(k, k).cpu().numpy(),
                       bins=self.bins.cpu().numpy())


@dataclass(frozen=True)
class Metrics:
    loss_sum: float
    confusion: np.ndarray  # int64 [K, K], rows true class, columns predicted
    bins: np.ndarray  # float64 [3, ECE_BINS]: count, confidence sum, correct sum

    @property
    def num_images(self) -> int:
        return int(self.confusion.sum())

    @property
    def correct(self) -> int:
        return int(np.trace(self.confusion))

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.num_images, 1)

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.num_images, 1)

    @property
    def class_counts(self) -> np.ndarray:
        return self.confusion.sum(axis=1)

    @property
    def per_class_accuracy(self) -> list[float | None]:
        """Accuracy over each class's images (None for a class with no images)."""
        return [None if n == 0 else int(self.confusion[c, c]) / int(n)
                for c, n in enumerate(self.class_counts)]

    def reliability(self) -> dict:
        """Per bin: count, mean confidence and accuracy (None in an empty bin)."""
        count, confidence, correct = self.bins
        return {
            "bin_edges": np.linspace(0, 1, ECE_BINS + 1).tolist(),
            "count": [int(n) for n in count],
            "confidence": [_mean(s, n) for s, n in zip(confidence, count)],
            "accuracy": [_mean(s, n) for s, n in zip(correct, count)],
        }

    @property
    def ece(self) -> float:
        count, confidence, correct = self.bins
        return float(np.abs(correct - confidence).sum() / max(count.sum(), 1))

    def to_json(self, class_names: list[str]) -> dict:
        return {
            "num_images": self.num_images,
            "accuracy": self.accuracy,
            "loss": self.loss,
            "ece": self.ece,
            "per_class": [{"class": name, "count": int(n), "accuracy": acc} for name, n, acc
                          in zip(class_names, self.class_counts, self.per_class_accuracy)],
            "confusion_matrix": self.confusion.tolist(),
            "reliability": self.reliability(),
        }


def _mean(total: float, count: float) -> float | None:
    return None if count == 0 else float(total / count)
