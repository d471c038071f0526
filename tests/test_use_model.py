"""fastcifar.load_model on a run directory written by an older fastcifar (config.json schema
0, checkpoint format 1: tests/fixtures/run_v0), and the one-line refusals of eval, predict
and export before any model runs."""
import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import fastcifar
from fastcifar.cli import main
from fastcifar.datasets import CIFAR10
from fastcifar.engine.checkpoint import load_checkpoint

FIXTURE = Path(__file__).parent / "fixtures" / "run_v0"


def copy_run(tmp_path, **changes) -> Path:
    """The fixture run copied, with config.json fields changed."""
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, **changes}))
    return run


def test_load_model_gives_the_trained_model_ready_for_inference(tmp_path):
    run = copy_run(tmp_path, data_dir=str(tmp_path / "gone"))
    state = torch.get_rng_state()
    model = fastcifar.load_model(run)
    assert torch.equal(torch.get_rng_state(), state)  # building it drew no caller randomness
    assert isinstance(model, torch.nn.Module) and not model.training
    assert model.model_name == "resnet20" and model.dataset == "cifar10"
    # the run's data folder is gone: the official names of the dataset
    assert model.class_names == list(CIFAR10.class_names)
    assert model.normalization == {"mean": CIFAR10.mean, "std": CIFAR10.std}
    saved = load_checkpoint(FIXTURE / "checkpoint.pt")["model"]
    loaded = model.state_dict()
    assert loaded.keys() == saved.keys()
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_load_model_reads_ema_weights_when_the_run_used_ema(tmp_path):
    run = copy_run(tmp_path, ema=True)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in state["model"].items()}
    state["ema"] = {"model": ema, "updates": 3}
    torch.save(state, run / "checkpoint.pt")
    loaded = fastcifar.load_model(run).state_dict()
    assert all(torch.equal(loaded[k], ema[k]) for k in ema)


def run_cli(args):
    result = CliRunner().invoke(main, args)
    assert "Traceback" not in result.output, result.output
    return result


@pytest.mark.parametrize("command", ["eval", "predict", "export"])
def test_a_folder_that_is_not_a_run_is_one_line(tmp_path, command):
    image = tmp_path / "cat.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    extra = {"eval": [], "predict": [str(image)],
             "export": ["--format", "safetensors", "--out", str(tmp_path / "m.safetensors")]}
    for run_dir, message in ((tmp_path / "nope", "is not a run directory"),
                             (tmp_path, "holds no run (config.json is missing)")):
        result = run_cli([command, str(run_dir), *extra[command]])
        assert result.exit_code == 2 and result.stderr.count("\n") == 1
        assert message in result.stderr


def test_a_run_without_checkpoint_is_one_line(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(FIXTURE / "config.json", run)
    result = run_cli(["eval", str(run)])
    assert result.exit_code == 2
    assert "has no checkpoint.pt (the run stopped before its first epoch ended)" in result.stderr


def test_outputs_into_missing_folders_are_refused_before_any_work(tmp_path):
    result = run_cli(["eval", str(FIXTURE), "--json", str(tmp_path / "no" / "eval.json")])
    assert result.exit_code == 2 and "the folder" in result.stderr and "does not exist" in \
        result.stderr
    result = run_cli(["export", str(FIXTURE), "--format", "onnx", "--out",
                      str(tmp_path / "no" / "m.onnx")])
    assert result.exit_code == 2 and "does not exist" in result.stderr


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
@pytest.mark.parametrize("args", [["eval", "--json"], ["eval", "--plot"],
                                  ["predict", "IMAGE", "--json"],
                                  ["export", "--format", "safetensors", "--out"]])
def test_outputs_that_cannot_be_written_are_refused_before_any_work(tmp_path, args):
    """/proc takes no new files, not even root's: the same as a read-only folder."""
    image = tmp_path / "cat.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    command, *rest = [str(image) if a == "IMAGE" else a for a in args]
    result = run_cli([command, str(FIXTURE), *rest, "/proc/fastcifar-out"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert "/proc/fastcifar-out: cannot write there" in result.stderr


def test_a_failed_write_after_the_work_is_one_line(tmp_path, monkeypatch):
    from fastcifar.use import report

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(report, "atomic_write", disk_full)
    result = run_cli(["eval", str(FIXTURE), "--json", str(tmp_path / "e.json")])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert f"cannot write {tmp_path / 'e.json'}: No space left on device" in result.stderr


def test_export_never_replaces_a_file_without_force(tmp_path):
    out = tmp_path / "model.safetensors"
    out.write_text("precious")
    result = run_cli(["export", str(FIXTURE), "--format", "safetensors", "--out", str(out)])
    assert result.exit_code == 2 and "exists; pass --force" in result.stderr
    assert out.read_text() == "precious"
