"""eval, predict and export on a real run (resnet20, one epoch on generated CIFAR-10, EMA
and flip TTA on, CPU): eval reproduces the run's test accuracy; the tables on generated
test files match predictions computed independently (load_model + the loader's
normalisation + the model); exported files reproduce the eager logits."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import fastcifar
from fastcifar.cli import main
from fastcifar.engine import loop
from fastcifar.engine.resolve import resolve_config
from fastcifar.errors import UserError
from fastcifar.extras import has_module
from fastcifar.use import export as export_module
from fastcifar.use.evaluation import EvalRequest, evaluate
from fastcifar.use.export import ExportRequest, export
from fastcifar.use.exported import load_safetensors_model
from fastcifar.use.predict import PredictRequest, predict
from tests.cifar_fixtures import make_images
from tests.helpers import normalised, prepare_dataset

# trains a run (seconds) on one torch thread (tests/conftest.py); exports run the exporters
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
EVAL_BATCH = 50


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(run_dir, data_dir, summary): EMA + TTA, 120 test images in batches of 50."""
    root = tmp_path_factory.mktemp("use")
    data_dir = prepare_dataset(root, 320, 120, seed=11)
    config = resolve_config(dict(
        model="resnet20", dataset="cifar10", data_dir=data_dir, out=str(root / "run"),
        device="cpu", progress=False, epochs=1, batch_size=32, base_lr=0.1,
        schedule="linear", warmup_epochs=0.3, ema=True, ema_decay=0.9, tta=True,
        eval_batch_size=EVAL_BATCH))
    summary = loop.train(config)
    return root / "run", data_dir, summary


@pytest.fixture(scope="module")
def pool(trained):
    """600 generated images and the run's predictions on them, computed independently of
    fastcifar.use's loaders: the loader's normalisation table, the model, flip TTA."""
    images, _ = make_images(10, 600, seed=99, learnable=True)
    return images, reference_logits(trained[0], images).argmax(dim=1).numpy()


def reference_logits(run_dir, images, tta=True):
    model = fastcifar.load_model(run_dir)
    logits = []
    with torch.no_grad():
        for start in range(0, len(images), EVAL_BATCH):
            batch = normalised(images[start:start + EVAL_BATCH])
            batch = batch.contiguous(memory_format=torch.channels_last)
            out = model(batch)
            logits.append((out + model(batch.flip(3))) / 2 if tta else out)
    return torch.cat(logits)


def test_eval_reproduces_the_runs_test_accuracy(trained):
    run_dir, _, summary = trained
    report = evaluate(EvalRequest(run_dir=str(run_dir), device="cpu"))
    assert report["weights"] == "ema" and report["tta"] == 1
    assert 0.1 < summary["test_acc"] < 1.0  # a partly trained model: the check means something
    assert report["metrics"]["accuracy"] == summary["test_acc"]
    assert report["metrics"]["loss"] == pytest.approx(summary["test_loss"], rel=1e-5)
    assert report["recorded"] == {"test_acc": summary["test_acc"], "epoch": 1,
                                  "same_settings": True, "run_settings": {}}
    # the prepared data's own class names (the generated archive's)
    assert [row["class"] for row in report["metrics"]["per_class"]][:2] == ["class_0", "class_1"]
    plain = evaluate(EvalRequest(run_dir=str(run_dir), device="cpu", tta=0))
    images, labels = fastcifar.load("cifar10", "test", trained[1])
    expected = reference_logits(run_dir, images, tta=False).argmax(dim=1).numpy()
    assert plain["metrics"]["accuracy"] == np.mean(expected == labels)
    assert plain["recorded"]["run_settings"] == {"tta": 1}


def test_a_checkpoint_saved_mid_epoch_is_named_so_and_claims_no_recorded_accuracy(
        trained, tmp_path):
    import shutil

    run_dir = tmp_path / "stopped"
    shutil.copytree(trained[0], run_dir)
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    torch.save({**state, "epoch": 0, "batch": 4}, run_dir / "checkpoint.pt")
    report = evaluate(EvalRequest(run_dir=str(run_dir), device="cpu"))
    assert (report["checkpoint_epoch"], report["checkpoint_batch"]) == (0, 4)
    assert report["recorded"]["test_acc"] is None
    result = CliRunner().invoke(main, ["eval", str(run_dir), "--device", "cpu",
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "epoch 1 batch 4, saved mid-epoch" in result.output
    assert "recorded no test accuracy for these weights" in result.output
    assert "the run recorded test_acc" not in result.output


def test_npy_pair_tables_match_independent_predictions(trained, pool, tmp_path):
    images, predicted = pool
    labels = np.random.default_rng(0).integers(0, 10, len(images))
    labels[:300] = predicted[:300]  # planted: right on exactly these (and on chance hits)
    np.save(tmp_path / "x.npy", images)
    np.save(tmp_path / "y.npy", labels)
    report = evaluate(EvalRequest(run_dir=str(trained[0]), device="cpu",
                                  images=str(tmp_path / "x.npy"), labels=str(tmp_path / "y.npy")))
    expected = np.zeros((10, 10), dtype=np.int64)
    np.add.at(expected, (labels, predicted), 1)
    metrics = report["metrics"]
    assert metrics["confusion_matrix"] == expected.tolist()
    assert metrics["accuracy"] == np.mean(predicted == labels)
    for row, k in zip(metrics["per_class"], range(10)):
        count = int((labels == k).sum())
        assert row["count"] == count
        assert row["accuracy"] == (None if count == 0 else expected[k, k] / count)
    assert report["test_set"] == {"kind": "npy", "path": str(tmp_path / "x.npy"),
                                  "labels": str(tmp_path / "y.npy"), "num_images": 600}


def test_corruption_table_matches_the_planted_answers(trained, pool, tmp_path):
    images, predicted = pool
    classes, counts = np.unique(predicted, return_counts=True)
    right, wrong = classes[np.argsort(counts)[-2:]]  # the two classes predicted most often
    per_severity = 6
    planted = {"fog": [6, 5, 4, 3, 2], "snow": [0, 6, 1, 2, 3]}  # right answers per severity
    folder = tmp_path / "CIFAR-10-C"
    folder.mkdir()
    np.save(folder / "labels.npy", np.full(5 * per_severity, right, dtype=np.uint8))
    right_images = images[predicted == right]
    wrong_images = images[predicted == wrong]
    assert len(right_images) >= 30 and len(wrong_images) >= 30
    for name, hits in planted.items():
        rows = [np.concatenate([right_images[:n], wrong_images[:per_severity - n]])
                for n in hits]
        np.save(folder / f"{name}.npy", np.concatenate(rows))
    report = evaluate(EvalRequest(run_dir=str(trained[0]), device="cpu",
                                  corruptions=str(folder)))
    assert report["corruptions"] == {name: [n / per_severity for n in hits]
                                     for name, hits in planted.items()}
    all_hits = [n for hits in planted.values() for n in hits]
    assert report["mean_corruption_accuracy"] == pytest.approx(np.mean(all_hits) / per_severity)
    assert report["metrics"]["num_images"] == 2 * 5 * per_severity


def test_predict_on_saved_test_images_equals_the_model_on_those_pixels(trained, pool, tmp_path):
    images, predicted = pool
    paths = []
    for i in range(12):
        paths.append(tmp_path / f"img_{i:02d}.png")
        Image.fromarray(images[i]).save(paths[-1])
    result = predict(PredictRequest(run_dir=str(trained[0]), paths=(str(tmp_path),),
                                    top_k=3, device="cpu"))
    assert [p["file"] for p in result["predictions"]] == [str(p) for p in paths]
    assert [p["top"][0]["index"] for p in result["predictions"]] == predicted[:12].tolist()
    probabilities = reference_logits(trained[0], images[:12]).softmax(dim=1)
    for row, expected in zip(result["predictions"], probabilities):
        assert [t["class"] for t in row["top"]] == [f"class_{t['index']}" for t in row["top"]]
        for t in row["top"]:
            assert t["probability"] == pytest.approx(expected[t["index"]].item(), abs=1e-6)
        assert row["top"][0]["probability"] >= row["top"][1]["probability"]


FORMATS = [
    "torchscript",
    pytest.param("safetensors", marks=pytest.mark.skipif(
        not has_module("safetensors"), reason="safetensors is not installed")),
    pytest.param("onnx", marks=pytest.mark.skipif(
        not all(has_module(m) for m in ("onnx", "onnxscript", "onnxruntime")),
        reason="the onnx extra is not installed")),
]


def run_exported(fmt, path, images01):
    if fmt == "torchscript":
        return torch.jit.load(str(path))(images01)
    if fmt == "safetensors":
        return load_safetensors_model(path)(images01)
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"images": images01.numpy()})[0])


@pytest.mark.filterwarnings(r"ignore:.*torch\.jit.*deprecated:FutureWarning")
@pytest.mark.parametrize("fmt", FORMATS)
def test_exported_models_reproduce_the_eager_logits(trained, pool, tmp_path, fmt):
    out = tmp_path / f"model.{fmt}"
    result = export(ExportRequest(run_dir=str(trained[0]), format=fmt, out=str(out)))
    assert result["max_abs_difference"] <= result["relative_tolerance"] * result["max_abs_logit"]
    images = pool[0][:13]  # a batch size the export never saw
    images01 = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        got = run_exported(fmt, out, images01)
    # the run's model on the loader's normalisation (no TTA: the exported model has none)
    expected = reference_logits(trained[0], images, tta=False)
    scale = expected.abs().max().item()
    assert (got - expected).abs().max().item() <= 1e-4 * scale
    assert torch.equal(got.argmax(dim=1), expected.argmax(dim=1))
    if fmt == "safetensors":
        model = load_safetensors_model(out)
        assert model.class_names == [f"class_{i}" for i in range(10)]


def test_an_export_that_fails_its_check_leaves_nothing(trained, tmp_path, monkeypatch):
    write, read = export_module.FORMATS["torchscript"]

    def read_perturbed(path):
        module = read(path)
        return lambda images: module(images) + 1e-3

    monkeypatch.setitem(export_module.FORMATS, "torchscript", (write, read_perturbed))
    out = tmp_path / "model.pt"
    with pytest.raises(UserError, match="export check failed: .* nothing was written"):
        export(ExportRequest(run_dir=str(trained[0]), format="torchscript", out=str(out)))
    assert list(tmp_path.iterdir()) == []


def test_cli_eval_predict_export_on_the_run(trained, tmp_path):
    run_dir, _, summary = trained
    runner = CliRunner()
    result = runner.invoke(main, ["eval", str(run_dir), "--device", "cpu", "--json",
                                  str(tmp_path / "eval.json"), "--plot", str(tmp_path / "e.png")])
    assert result.exit_code == 0, result.output
    assert f"accuracy {100 * summary['test_acc']:.2f}%" in result.output
    assert "with the same TTA, dtype, loader and device" in result.output
    assert json.loads((tmp_path / "eval.json").read_text())["metrics"]["accuracy"] == \
        summary["test_acc"]
    assert (tmp_path / "e.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(tmp_path / "black.jpg")
    result = runner.invoke(main, ["predict", str(run_dir), str(tmp_path / "black.jpg"),
                                  "--top-k", "2", "--json", "-"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)["predictions"][0]["top"]) == 2
    result = runner.invoke(main, ["export", str(run_dir), "--format", "torchscript", "--out",
                                  str(tmp_path / "m.pt")])
    assert result.exit_code == 0 and result.output.startswith(f"wrote {tmp_path}/m.pt")
