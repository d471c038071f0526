"""`fastcifar eval`: a run's model on its prepared test split or on a test set from files.

The report is one JSON-ready dict: what was evaluated and how (run, checkpoint epoch,
weights, test set, TTA, device, dtype), the metrics (accuracy, loss, per-class accuracy,
confusion matrix, ECE with its 15-bin reliability table) and, for a corruptions folder,
the accuracy per corruption and severity with their mean. On the prepared split it also
carries the test accuracy the run recorded for the same checkpoint: with the run's TTA,
dtype and backend the two are equal (the batches, the model and the arithmetic are the
run's own).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastcifar.engine.build import configure_backends
from fastcifar.errors import UserError
from fastcifar.use.inference import (
    InferenceSettings,
    array_loader,
    iter_logits,
    prepared_test_loader,
)
from fastcifar.use.metrics import MetricsAccumulator
from fastcifar.use.model import open_run
from fastcifar.use.testsets import (
    corruption_files,
    load_archive_test_split,
    load_corruption,
    load_npy_pair,
)


@dataclass(frozen=True)
class EvalRequest:
    """What `fastcifar eval` was asked; None means the run's own choice."""

    run_dir: str
    images: str | None = None  # with labels: an npy pair
    labels: str | None = None
    source: str | None = None  # a CIFAR-format archive or folder
    corruptions: str | None = None  # a CIFAR-10-C style folder
    tta: bool | None = None
    device: str = "auto"
    dtype: str | None = None
    batch_size: int | None = None
    backend: str | None = None  # prepared split only
    data_dir: str | None = None  # prepared split only
    progress: bool | None = False  # None: when stderr is a terminal

    def __post_init__(self):
        """Contradictions are refused when the request is made, in one line."""
        if (self.images is None) != (self.labels is None):
            raise UserError("--images and --labels go together (an npy pair)")
        given = [flag for flag, value in (("--images/--labels", self.images),
                                          ("--source", self.source),
                                          ("--corruptions", self.corruptions)) if value]
        if len(given) > 1:
            raise UserError(f"give one test set, not {' and '.join(given)}")
        if given and (self.backend or self.data_dir):
            raise UserError("--backend and --data-dir apply to the prepared test split only")

    @property
    def test_set_kind(self) -> str:
        """"prepared", "npy", "source" or "corruptions"."""
        if self.images:
            return "npy"
        if self.source:
            return "source"
        return "corruptions" if self.corruptions else "prepared"


def evaluate(request: EvalRequest) -> dict:
    kind = request.test_set_kind
    run = open_run(request.run_dir, request.device)
    settings = InferenceSettings.for_run(run, dtype=request.dtype, tta=request.tta,
                                         batch_size=request.batch_size,
                                         progress=request.progress)
    configure_backends(run.config, run.device)  # the run's kernel choices (cuDNN, TF32)
    report = {
        "run": str(run.run_dir), "model": run.config.model, "dataset": run.config.dataset,
        "checkpoint_epoch": run.epoch, "weights": run.weights, "tta": settings.tta,
        "device": str(run.device), "dtype": settings.dtype, "batch_size": settings.batch_size,
    }
    if kind == "corruptions":
        return {**report, **_evaluate_corruptions(run, settings, request.corruptions)}
    if kind == "prepared":
        backend = request.backend or run.config.backend
        loader = prepared_test_loader(run, settings, backend=backend, data_dir=request.data_dir)
        test_set = {"kind": "prepared", "dataset": run.config.dataset, "split": "test",
                    "backend": backend}
    else:
        arrays = (load_npy_pair(request.images, request.labels, run.num_classes)
                  if kind == "npy" else load_archive_test_split(request.source, run.config.dataset))
        loader = array_loader(run, settings, arrays.images, arrays.labels)
        test_set = {"kind": kind, "path": request.images or request.source}
        if kind == "npy":
            test_set["labels"] = request.labels
    metrics = _accumulate(run, loader, settings, "eval")
    report["test_set"] = {**test_set, "num_images": metrics.num_images}
    report["metrics"] = metrics.to_json(run.class_names)
    if kind == "prepared":
        report["recorded"] = {
            "test_acc": run.recorded_test_acc, "epoch": run.epoch,
            "same_settings": (settings.tta == run.config.tta
                              and settings.dtype == run.config.dtype
                              and test_set["backend"] == run.config.backend),
        }
    return report


def _accumulate(run, loader, settings, description: str):
    metrics = MetricsAccumulator(run.num_classes, run.device)
    for logits, targets in iter_logits(run.model, loader, settings, description):
        metrics.update(logits, targets)
    return metrics.result()


def _evaluate_corruptions(run, settings, folder) -> dict:
    # Every file is opened (memory-mapped) and checked before the first batch runs, so a
    # malformed file is reported at once, not after an hour of the others.
    corruptions = [(name, load_corruption(path, run.num_classes))
                   for name, path in corruption_files(folder)]
    pooled = MetricsAccumulator(run.num_classes, run.device)
    table = {}
    for name, severities in corruptions:
        table[name] = []
        for subset in severities:
            metrics = MetricsAccumulator(run.num_classes, run.device)
            loader = array_loader(run, settings, subset.images, subset.labels)
            for logits, targets in iter_logits(run.model, loader, settings, subset.name):
                metrics.update(logits, targets)
            pooled.merge(metrics)
            table[name].append(metrics.result().accuracy)
    result = pooled.result()
    return {
        "test_set": {"kind": "corruptions", "path": str(folder),
                     "num_images": result.num_images},
        "corruptions": table,
        "mean_corruption_accuracy": float(np.mean([a for accs in table.values() for a in accs])),
        "metrics": result.to_json(run.class_names),
    }
