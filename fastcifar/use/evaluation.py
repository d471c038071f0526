"""`fastcifar eval`: a run's model on its prepared test split or on a test set from files.

The report is one JSON-ready dict: what was evaluated and how (run, checkpoint epoch,
weights, test set, TTA, device, dtype), the metrics (accuracy, loss, per-class accuracy,
confusion matrix, ECE with its 15-bin reliability table) and, for a corruptions folder,
the accuracy per corruption and severity with their mean. On the prepared split it also
carries the test accuracy the run recorded for the same checkpoint: with the run's TTA,
dtype, backend and device kind the two are equal (the batches, the model and the
arithmetic are the run's own).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastcifar.datasets import get_dataset
from fastcifar.engine.build import configure_backends
from fastcifar.errors import UserError
from fastcifar.use.inference import (
    InferenceSettings,
    array_loader,
    iter_logits,
    prepared_test_loader,
)
from fastcifar.use.metrics import MetricsAccumulator
from fastcifar.use.model import open_run, read_run_config
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
    tta: int | None = None  # level; None: the run's
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
    # The test set is read and checked before the model is loaded: a mistake in it is one
    # line at once (every corruption file too, memory-mapped, not after an hour of others).
    config = read_run_config(Path(request.run_dir))
    test_set, data = _read_test_set(request, config)
    run = open_run(request.run_dir, request.device)
    settings = InferenceSettings.for_run(run, dtype=request.dtype, tta=request.tta,
                                         batch_size=request.batch_size,
                                         progress=request.progress)
    configure_backends(run.config, run.device)  # the run's kernel choices (cuDNN, TF32)
    report = {
        "run": str(run.run_dir), "model": run.config.model, "dataset": run.config.dataset,
        "checkpoint_epoch": run.epoch, "checkpoint_batch": run.batch,
        "checkpoint": run.position, "weights": run.weights, "tta": settings.tta,
        "device": str(run.device), "dtype": settings.dtype, "batch_size": settings.batch_size,
    }
    if test_set["kind"] == "corruptions":
        return {**report, **_evaluate_corruptions(run, settings, test_set, data)}
    if test_set["kind"] == "prepared":
        loader = prepared_test_loader(run, settings, backend=test_set["backend"],
                                      data_dir=request.data_dir)
    else:
        loader = array_loader(run, settings, data.images, data.labels)
    metrics = _accumulate(run, loader, settings).result()
    report["test_set"] = {**test_set, "num_images": metrics.num_images}
    report["metrics"] = metrics.to_json(run.class_names)
    if test_set["kind"] == "prepared":
        report["recorded"] = _recorded(run, settings, test_set["backend"])
    return report


def _read_test_set(request: EvalRequest, config):
    """(what the report says of the test set, its arrays or its corruption severities)."""
    kind, dataset = request.test_set_kind, config.dataset
    num_classes = get_dataset(dataset).num_classes
    if kind == "prepared":
        return ({"kind": kind, "dataset": dataset, "split": "test",
                 "backend": request.backend or config.backend}, None)
    if kind == "npy":
        return ({"kind": kind, "path": request.images, "labels": request.labels},
                load_npy_pair(request.images, request.labels, num_classes))
    if kind == "source":
        return ({"kind": kind, "path": request.source},
                load_archive_test_split(request.source, dataset))
    return ({"kind": kind, "path": request.corruptions},
            [(name, load_corruption(path, num_classes))
             for name, path in corruption_files(request.corruptions)])


def _recorded(run, settings: InferenceSettings, backend: str) -> dict:
    """The run's own test accuracy for this checkpoint, and the settings it differs in."""
    config = run.config
    ran = {"tta": config.tta, "dtype": config.dtype, "loader": config.backend,
           "device": config.device}
    here = {"tta": settings.tta, "dtype": settings.dtype, "loader": backend,
            "device": run.device.type}
    return {"test_acc": run.recorded_test_acc, "epoch": run.epoch,
            "same_settings": ran == here,
            "run_settings": {k: v for k, v in ran.items() if here[k] != v}}


def _accumulate(run, loader, settings: InferenceSettings,
                description: str = "eval") -> MetricsAccumulator:
    metrics = MetricsAccumulator(run.num_classes, run.device)
    for logits, targets in iter_logits(run.model, loader, settings, description):
        metrics.update(logits, targets)
    return metrics


def _evaluate_corruptions(run, settings: InferenceSettings, test_set: dict,
                          corruptions: list) -> dict:
    pooled = MetricsAccumulator(run.num_classes, run.device)
    table = {}
    for name, severities in corruptions:
        table[name] = []
        for subset in severities:
            loader = array_loader(run, settings, subset.images, subset.labels)
            metrics = _accumulate(run, loader, settings, subset.name)
            pooled.merge(metrics)
            table[name].append(metrics.result().accuracy)
    result = pooled.result()
    return {
        "test_set": {**test_set, "num_images": result.num_images},
        "corruptions": table,
        "mean_corruption_accuracy": float(np.mean([a for accs in table.values() for a in accs])),
        "metrics": result.to_json(run.class_names),
    }
