"""eval and predict on a GPU (skipped without CUDA), on a run trained there the default
way (bf16, CUDA graph, native loader with the Triton op) with EMA and flip TTA: eval
reproduces the run's test accuracy, a test set from files goes through the same path as
the prepared split, and predict on saved PNGs equals the model on the same pixels."""
import numpy as np
import pytest
import torch
from PIL import Image

import fastcifar
from fastcifar.engine import loop
from fastcifar.engine.resolve import resolve_config
from fastcifar.use.evaluation import EvalRequest, evaluate
from fastcifar.use.inference import InferenceSettings, array_loader, iter_logits
from fastcifar.use.model import open_run
from fastcifar.use.predict import PredictRequest, predict
from tests.helpers import prepare_dataset

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def cuda_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("use_cuda")
    data_dir = prepare_dataset(root, 1024, 300, seed=21)
    config = resolve_config(dict(
        model="resnet20", dataset="cifar10", data_dir=data_dir, out=str(root / "run"),
        device="cuda", progress=False, epochs=2, batch_size=64, base_lr=0.1,
        schedule="linear", warmup_epochs=0.3, ema=True, ema_decay=0.9, tta=True,
        eval_batch_size=128))
    assert config.dtype == "bf16" and config.graph  # the CUDA defaults
    return root / "run", data_dir, loop.train(config)


def test_eval_on_cuda_reproduces_the_runs_test_accuracy(cuda_run):
    run_dir, _, summary = cuda_run
    report = evaluate(EvalRequest(run_dir=str(run_dir), device="cuda"))
    assert report["device"].startswith("cuda") and report["dtype"] == "bf16"
    assert report["weights"] == "ema" and report["tta"] == 1
    assert report["metrics"]["accuracy"] == summary["test_acc"]
    assert report["metrics"]["loss"] == pytest.approx(summary["test_loss"], rel=1e-4)


def test_a_test_set_from_files_takes_the_prepared_splits_path(cuda_run, tmp_path):
    run_dir, data_dir, _ = cuda_run
    images, labels = fastcifar.load("cifar10", "test", data_dir)
    np.save(tmp_path / "x.npy", images)
    np.save(tmp_path / "y.npy", labels)
    prepared = evaluate(EvalRequest(run_dir=str(run_dir), device="cuda"))
    from_files = evaluate(EvalRequest(run_dir=str(run_dir), device="cuda",
                                      images=str(tmp_path / "x.npy"),
                                      labels=str(tmp_path / "y.npy")))
    assert from_files["metrics"]["confusion_matrix"] == prepared["metrics"]["confusion_matrix"]


def test_predict_on_cuda_equals_the_model_on_the_same_pixels(cuda_run, tmp_path):
    run_dir, data_dir, _ = cuda_run
    images, _ = fastcifar.load("cifar10", "test", data_dir)
    images = images[:40]
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{i:03d}.png")
    result = predict(PredictRequest(run_dir=str(run_dir), paths=(str(tmp_path),),
                                    device="cuda"))
    run = open_run(run_dir, "cuda")
    settings = InferenceSettings.for_run(run)
    loader = array_loader(run, settings, images, np.zeros(len(images), np.int64))
    logits = torch.cat([out for out, _ in iter_logits(run.model, loader, settings)])
    assert [p["top"][0]["index"] for p in result["predictions"]] == \
        logits.argmax(dim=1).tolist()
