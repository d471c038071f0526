"""End-to-end training on small generated CIFAR data (CPU): accuracy, files, resume,
divergence, run-directory rules and the CLI."""
import dataclasses
import json

import pytest
import torch
from click.testing import CliRunner

from fastcifar.cli import main
from fastcifar.engine import loop
from fastcifar.engine.checkpoint import load_checkpoint
from fastcifar.engine.migrate import CONFIG_SCHEMA_VERSION
from fastcifar.engine.resolve import resolve_config
from fastcifar.engine.run_dir import prepare_run_dir
from fastcifar.errors import UserError
from tests.helpers import (
    cpu_run_config,
    crash_after_save,
    prepare_dataset,
    read_metrics,
    without_timing,
)

# one torch thread: see tests/conftest.py one_thread
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def learn_data(tmp_path_factory):
    """1000 training images: enough for resnet20 to learn the generated classes."""
    return prepare_dataset(tmp_path_factory.mktemp("learn"), 1000, 250, seed=3)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """200 training images: for the mechanics (resume, divergence)."""
    return prepare_dataset(tmp_path_factory.mktemp("tiny"), 200, 100, seed=5)


@pytest.fixture(scope="module")
def finished_run(learn_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "resnet20"
    config = cpu_run_config(learn_data, out, epochs=2, batch_size=32, base_lr=0.1,
                            schedule="linear", warmup_epochs=0.3, nesterov=True)
    summary = loop.train(config)
    return config, out, summary


@pytest.mark.slow
def test_resnet20_learns_the_generated_task(finished_run):
    config, out, summary = finished_run
    records = read_metrics(out)
    assert [r["epoch"] for r in records] == [1, 2]
    assert summary["test_acc"] == records[-1]["test_acc"]
    assert records[0]["test_acc"] < 0.9 and records[-1]["test_acc"] >= 0.9, records
    assert records[-1]["train_loss"] < records[0]["train_loss"]


@pytest.mark.slow
def test_run_files(finished_run):
    config, out, summary = finished_run
    written = json.loads((out / "config.json").read_text())
    assert written["batch_size"] == 32 and written["per_rank_batch_size"] == 32
    assert written["peak_lr"] == pytest.approx(0.1 * 32 / 128)
    assert written["schema_version"] == CONFIG_SCHEMA_VERSION
    assert "global_batch" in written["lr_rule"]
    for r in read_metrics(out):
        assert {"epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc",
                "images_per_sec", "epoch_seconds"} <= set(r)
        assert 0 <= r["train_acc"] <= 1 and 0 <= r["test_acc"] <= 1
        assert r["images_per_sec"] > 0 and r["epoch_seconds"] > 0
    assert summary == json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["steps"] == 2 * (1000 // 32)
    assert summary["ranks_in_sync"] is True
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["epoch"] == 2 and state["step"] == 62
    assert without_timing(state["history"]) == without_timing(read_metrics(out))
    assert not list(out.glob(".*tmp*"))  # atomic writes leave no temporaries


@pytest.mark.slow
def test_finished_run_is_not_overwritten_without_force(finished_run):
    config, out, _ = finished_run
    with pytest.raises(UserError, match="finished run.*--force"):
        loop.train(config)
    with pytest.raises(UserError, match="already finished"):
        loop.train(dataclasses.replace(config, resume=True))
    forced = dataclasses.replace(config, out=str(out.parent / "copy"), force=True)
    (out.parent / "copy").mkdir()
    (out.parent / "copy" / "summary.json").write_text("{}")
    prepare_run_dir(forced)
    assert not (out.parent / "copy" / "summary.json").exists()


@pytest.mark.slow
def test_resume_matches_an_uninterrupted_run(tiny_data, tmp_path):
    """Strong recipe pieces (warmup + cosine, mixup/cutmix soft targets, label smoothing,
    Nesterov, no decay on BN) plus EMA, TTA and drop-path (which draws from the global
    RNG, so the checkpoint's RNG state must come back too): every piece of state."""
    options = dict(recipe="strong", epochs=3, batch_size=50, ema=True, ema_decay=0.9, tta=True,
                   drop_path=0.2)
    whole = loop.train(cpu_run_config(tiny_data, tmp_path / "whole", **options))

    with crash_after_save(lambda trainer: trainer.epoch == 1):
        loop.train(cpu_run_config(tiny_data, tmp_path / "split", **options))
    assert load_checkpoint(tmp_path / "split" / "checkpoint.pt")["epoch"] == 1
    with pytest.raises(UserError, match="unfinished run.*--resume"):
        loop.train(cpu_run_config(tiny_data, tmp_path / "split", **options))

    resumed_config = resolve_config({"resume": True, "out": str(tmp_path / "split"),
                                     "progress": False})
    resumed = loop.train(resumed_config)
    assert without_timing(read_metrics(tmp_path / "split")) == \
        without_timing(read_metrics(tmp_path / "whole"))
    assert resumed["param_checksums"] == whole["param_checksums"]


def test_a_run_stopped_before_its_first_checkpoint_starts_over(tiny_data, tmp_path):
    out = tmp_path / "stopped"
    out.mkdir()
    config = cpu_run_config(tiny_data, out, epochs=1, batch_size=100)
    (out / "config.json").write_text(json.dumps(config.to_json()))  # a Ctrl-C in epoch 1
    (out / "metrics.jsonl").write_text("")
    with pytest.raises(UserError, match="no checkpoint yet.*without --resume"):
        prepare_run_dir(dataclasses.replace(config, resume=True))
    summary = loop.train(config)
    assert summary["epochs"] == 1 and (out / "summary.json").exists()


def test_an_unreadable_checkpoint_is_one_line_without_torchs_advice(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"garbage")
    with pytest.raises(UserError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and "weights_only" not in message and str(path) in message


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path,
                                                                  monkeypatch):
    lr_at = loop.lr_at
    config = cpu_run_config(tiny_data, tmp_path / "nan", epochs=3, batch_size=50, log_every=1)
    steps_per_epoch = 200 // 50
    monkeypatch.setattr(
        loop, "lr_at",
        lambda schedule, step: (lr_at(schedule, step) if step < steps_per_epoch + 1
                                else float("nan")),
    )
    with pytest.raises(loop.TrainingDiverged) as info:
        loop.train(config)
    message = str(info.value)
    assert "\n" not in message and "nan" in message and "epoch 2" in message
    assert "checkpoint.pt (epoch 1)" in message
    state = load_checkpoint(tmp_path / "nan" / "checkpoint.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())
    assert len(read_metrics(tmp_path / "nan")) == 1
    assert not (tmp_path / "nan" / "summary.json").exists()


def run_cli(*args):
    return CliRunner().invoke(main, ["train", *args])


def test_cli_missing_data_names_the_prepare_command(tmp_path):
    result = run_cli("--model", "resnet20", "--dataset", "cifar10", "--device", "cpu",
                     "--data-dir", str(tmp_path / "nothing"), "--out", str(tmp_path / "run"))
    assert result.exit_code != 0
    assert f"fastcifar prepare --dataset cifar10 --data-dir {tmp_path / 'nothing'}" in result.output
    assert "Traceback" not in result.output
    # nothing was left behind: not even the empty run directory it made
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, message", [
    (["--model", "resnet20"], "--dataset is required"),
    (["--model", "not_a_model", "--dataset", "cifar10"], "unknown model"),
    (["--model", "resnet20", "--dataset", "cifar10", "--gpus", "2", "--device", "cpu"], "--nproc"),
    (["--resume"], "--resume needs --out"),
])
def test_cli_bad_arguments_are_one_line_errors(args, message):
    result = run_cli(*args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_cli_trains(tiny_data, tmp_path):
    result = run_cli("--model", "resnet20", "--dataset", "cifar10", "--device", "cpu",
                     "--data-dir", tiny_data, "--epochs", "1", "--batch-size", "100",
                     "--no-progress", "--out", str(tmp_path / "cli"))
    assert result.exit_code == 0, result.output
    assert "epoch 1/1" in result.output and "done: test acc" in result.output
    assert (tmp_path / "cli" / "summary.json").exists()
