"""Experiments with real (tiny) training runs on the CPU: a rerun from config.json equals
its original, time to target and --stop-at-target, TensorBoard event files, a seed
group with its statistics and --resume, and `fastcifar runs` over real run folders."""
from __future__ import annotations

import gc
import json
import statistics

import pytest
import torch
from click.testing import CliRunner

from fastcifar.cli import main
from fastcifar.engine import loop
from fastcifar.engine.resolve import resolve_config
from fastcifar.engine.run_lock import is_running
from fastcifar.engine.schedule import build_schedule, lr_at
from fastcifar.experiments.launch import train_from_options
from fastcifar.extras import has_module
from tests.helpers import crash_after_save, prepare_dataset, read_metrics, without_timing

# each test trains (seconds), on one torch thread (tests/conftest.py)
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

# Where the [tb] extra is missing (a GPU machine without a package index), the runs go on
# without TensorBoard and only the tests that read its files are skipped.
TENSORBOARD = ["--tensorboard"] if has_module("tensorboard") else []


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return prepare_dataset(tmp_path_factory.mktemp("tiny"), 200, 100, seed=5)


def train_cli(*args, exit_code=0):
    result = CliRunner().invoke(main, ["train", *args, "--no-progress"])
    assert result.exit_code == exit_code, result.output
    return result


def read_json(path):
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def original(data_dir, tmp_path_factory):
    """Three epochs with the strong recipe's moving parts (warmup + cosine, mixup/cutmix,
    label smoothing, EMA, TTA), TensorBoard on and a target it never reaches."""
    out = tmp_path_factory.mktemp("runs") / "original"
    train_cli("--model", "resnet20", "--dataset", "cifar10", "--data-dir", data_dir,
              "--device", "cpu", "--recipe", "strong", "--epochs", "3", "--batch-size", "50",
              "--ema", "--ema-decay", "0.9", "--seed", "11", "--target-acc", "1.0",
              *TENSORBOARD, "--out", str(out))
    return out


def test_a_rerun_from_config_json_equals_the_original(original):
    rerun = original.parent / "rerun"
    train_cli("--config", str(original / "config.json"), "--out", str(rerun))
    assert without_timing(read_metrics(rerun)) == without_timing(read_metrics(original))
    assert read_json(rerun / "summary.json")["param_checksums"] == \
        read_json(original / "summary.json")["param_checksums"]
    saved, again = read_json(original / "config.json"), read_json(rerun / "config.json")
    assert again["from_config"] == str(original / "config.json")
    differ = {k for k in saved if saved[k] != again[k]}
    assert differ == {"out", "from_config"}


def test_a_target_never_reached_is_null(original):
    summary = read_json(original / "summary.json")
    assert summary["target_acc"] == 1.0
    assert summary["epoch_to_target"] is None and summary["time_to_target_s"] is None
    assert summary["epochs"] == 3


def test_stop_at_target_ends_the_run_at_the_first_epoch_that_reached_it(original):
    accuracies = [r["test_acc"] for r in read_metrics(original)]
    # The first epoch whose accuracy is the best so far and not the first: a target
    # that only it reaches first.
    epoch = next(e for e in (2, 3) if accuracies[e - 1] > max(accuracies[:e - 1]))
    target = accuracies[epoch - 1]
    stopped = original.parent / "stopped"
    result = train_cli("--config", str(original), "--out", str(stopped), "--target-acc",
                       str(target), "--stop-at-target", "--no-tensorboard")
    assert f"reached at epoch {epoch}" in result.output
    records = read_metrics(stopped)
    assert without_timing(records) == without_timing(read_metrics(original)[:epoch])
    summary = read_json(stopped / "summary.json")
    assert summary["epoch_to_target"] == epoch and summary["epochs"] == epoch
    assert summary["time_to_target_s"] == pytest.approx(
        sum(r["epoch_seconds"] for r in records))
    assert summary["stopped_at_target"] is True


def test_tensorboard_events_hold_the_metrics_and_the_lr_of_every_step(original):
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator")
    events = event_accumulator.EventAccumulator(str(original / "tb"))
    events.Reload()
    records = read_metrics(original)
    for key in ("test_acc", "train_loss", "images_per_sec", "epoch"):
        scalars = events.Scalars(f"epoch/{key}")
        assert [s.step for s in scalars] == [r["step"] - 1 for r in records]
        assert [s.value for s in scalars] == pytest.approx([r[key] for r in records])
    config = resolve_config({"resume": True, "out": str(original)})
    schedule = build_schedule(config, steps_per_epoch=200 // 50)
    lrs = events.Scalars("step/lr")
    assert [s.step for s in lrs] == list(range(records[-1]["step"]))
    assert [s.value for s in lrs] == pytest.approx([lr_at(schedule, s) for s in range(12)])
    assert lrs[5].value != lrs[0].value  # warmup then cosine: the values move


def test_a_seed_group_summarises_its_seeds_and_resumes_the_unfinished(data_dir, tmp_path,
                                                                        monkeypatch):
    group = tmp_path / "group"
    args = ["--model", "resnet20", "--dataset", "cifar10", "--data-dir", data_dir,
            "--device", "cpu", "--epochs", "2", "--batch-size", "100", "--seeds", "0,1,2",
            "--target-acc", "0.05", *TENSORBOARD, "--out", str(group)]

    live = []

    def locked_then_last_checkpoint_of_seed_1(trainer):
        live.append(is_running(trainer.run_dir) and is_running(group))
        return trainer.config.seed == 1 and trainer.epoch == 2  # no summary yet

    with crash_after_save(locked_then_last_checkpoint_of_seed_1):
        CliRunner().invoke(main, ["train", *args, "--no-progress"], catch_exceptions=False)
    assert live and all(live)  # the run and its group are locked while training
    assert (group / "seed-0" / "summary.json").exists()
    assert (group / "seed-1" / "checkpoint.pt").exists()
    assert read_json(group / "seed-1" / "config.json")["seed"] == 1
    assert not (group / "seed-2").exists() and not (group / "summary.json").exists()
    rows = json.loads(CliRunner().invoke(main, ["runs", str(group), "--json"]).stdout)
    assert rows[0]["state"] == "stopped" and rows[0]["seeds"] == {"finished": 1, "total": 3}

    seed_0_metrics = (group / "seed-0" / "metrics.jsonl").stat().st_mtime_ns
    result = train_cli("--resume", "--out", str(group))
    assert "seed 0 (1/3)" in result.output and "finished before" in result.output
    if TENSORBOARD:  # once for the group, not once per seed
        assert result.output.count("tensorboard: ") == 1
        assert f"tensorboard --logdir {group}\n" in result.output
    assert (group / "seed-0" / "metrics.jsonl").stat().st_mtime_ns == seed_0_metrics
    assert [r["epoch"] for r in read_metrics(group / "seed-1")] == [1, 2]
    if TENSORBOARD:
        # The resumed seed's TensorBoard view has each epoch and step once, across two
        # files (epoch 2's checkpoint was written, its events were not; the resume rewrote
        # the history, and TensorBoard dropped the first attempt's events of epoch 1).
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(group / "seed-1" / "tb"))
        events.Reload()
        assert [s.step for s in events.Scalars("epoch/epoch")] == [1, 3]
        assert [s.value for s in events.Scalars("epoch/epoch")] == [1, 2]
        assert [s.step for s in events.Scalars("step/lr")] == [0, 1, 2, 3]
        assert len(list((group / "seed-1" / "tb").iterdir())) == 2

    summary = read_json(group / "summary.json")
    seeds = {k: read_json(group / f"seed-{k}" / "summary.json") for k in (0, 1, 2)}
    assert {k: read_json(group / f"seed-{k}" / "config.json")["seed"] for k in seeds} == \
        {0: 0, 1: 1, 2: 2}
    accuracies = [seeds[k]["test_acc"] for k in (0, 1, 2)]
    assert summary["test_acc"]["values"] == {str(k): seeds[k]["test_acc"] for k in seeds}
    assert summary["test_acc"]["mean"] == pytest.approx(statistics.fmean(accuracies))
    assert summary["test_acc"]["std"] == pytest.approx(statistics.stdev(accuracies))
    assert (summary["test_acc"]["min"], summary["test_acc"]["max"], summary["test_acc"]["n"]) \
        == (min(accuracies), max(accuracies), 3)
    times = {str(k): s["time_to_target_s"] for k, s in seeds.items()}
    assert summary["time_to_target_s"]["values"] == times
    reached = [t for t in times.values() if t is not None]
    assert summary["time_to_target_s"]["n"] == len(reached)
    if reached:
        assert summary["time_to_target_s"]["mean"] == pytest.approx(statistics.fmean(reached))
    stats = summary["test_acc"]
    assert f"test_acc {stats['mean']:.4f} +- {stats['std']:.4f} (n=3, " in result.output

    rows = json.loads(CliRunner().invoke(main, ["runs", str(group), "--json"]).stdout)
    assert rows[0]["state"] == "finished" and rows[0]["test_acc"] == pytest.approx(stats["mean"])


def test_a_diverged_seed_is_left_out_of_the_statistics_and_not_trained_again(
        data_dir, tmp_path, monkeypatch):
    train, diverging = loop.train, {1}

    def train_with_diverging_seeds(config):
        monkeypatch.setattr(loop, "lr_at", (lambda schedule, step: float("nan"))
                            if config.seed in diverging else lr_at)
        return train(config)

    monkeypatch.setattr(loop, "train", train_with_diverging_seeds)
    group = tmp_path / "group"
    args = ["--model", "resnet20", "--dataset", "cifar10", "--data-dir", data_dir,
            "--device", "cpu", "--epochs", "1", "--batch-size", "100", "--log-every", "1"]
    result = train_cli(*args, "--seeds", "3", "--out", str(group))
    assert "seed 1: training loss became nan" in result.output
    assert "1 of 3 seeds diverged (1): not counted above" in result.output
    summary = read_json(group / "summary.json")
    assert summary["diverged"] == [1] and summary["test_acc"]["n"] == 2
    assert set(summary["test_acc"]["values"]) == {"0", "2"}
    rows = json.loads(CliRunner().invoke(main, ["runs", str(group), "--json"]).stdout)
    assert rows[0]["state"] == "finished"

    # Resumed before its summary was written, the group does not train seed 1 again.
    (group / "summary.json").unlink()
    marker = (group / "seed-1" / "diverged.json").stat().st_mtime_ns
    result = train_cli("--resume", "--out", str(group))
    assert "seed 1 (2/3): " in result.output and "(diverged before)" in result.output
    assert (group / "seed-1" / "diverged.json").stat().st_mtime_ns == marker
    assert read_json(group / "summary.json")["diverged"] == [1]

    diverging.update({0, 1})
    result = train_cli(*args, "--seeds", "0,1", "--out", str(tmp_path / "all"), exit_code=2)
    assert "every seed of the group" in result.output


def test_runs_shows_real_finished_stopped_and_diverged_runs(data_dir, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    common = dict(model="resnet20", dataset="cifar10", data_dir=data_dir, device="cpu",
                  epochs=2, batch_size=100, progress=False, log_every=1)
    loop.train(resolve_config({**common, "out": str(runs / "finished")}))

    # the checkpoint of epoch 2 written, metrics.jsonl not yet
    with crash_after_save(lambda trainer: trainer.epoch == 2):
        loop.train(resolve_config({**common, "out": str(runs / "stopped")}))
    steps_per_epoch = 200 // 100
    monkeypatch.setattr(loop, "lr_at", lambda schedule, step: (
        float("nan") if step > steps_per_epoch else lr_at(schedule, step)))
    with pytest.raises(loop.TrainingDiverged):
        loop.train(resolve_config({**common, "out": str(runs / "diverged")}))

    marker = read_json(runs / "diverged" / "diverged.json")
    assert marker["epoch"] == 2 and "nan" in marker["error"]
    rows = {r["name"]: r for r in json.loads(
        CliRunner().invoke(main, ["runs", str(runs), "--json"]).stdout)}
    assert {name: r["state"] for name, r in rows.items()} == \
        {"finished": "finished", "stopped": "stopped", "diverged": "diverged"}
    assert [rows[name]["epochs_done"] for name in ("finished", "stopped", "diverged")] == \
        [2, 1, 1]
    assert rows["finished"]["test_acc"] == \
        read_json(runs / "finished" / "summary.json")["test_acc"]
    # Resumed (here with a finite lr again), a diverged run loses its marker.
    monkeypatch.setattr(loop, "lr_at", lr_at)
    train_cli("--resume", "--out", str(runs / "diverged"))
    assert not (runs / "diverged" / "diverged.json").exists()
    rows = json.loads(CliRunner().invoke(main, ["runs", str(runs), "--json"]).stdout)
    assert [r["state"] for r in rows] == ["finished", "finished", "stopped"]


@pytest.mark.cuda
def test_a_seed_group_on_a_gpu_captures_each_seed_and_holds_no_memory_after_it(data_dir,
                                                                             tmp_path):
    """Seeds run one after another in one process, each with its own captured graph: a
    group of three must hold no more GPU memory afterwards than a group of one."""
    def group(seeds, out):
        train_from_options(dict(model="resnet20", dataset="cifar10", data_dir=data_dir,
                                device="cuda", epochs=1, batch_size=50, seeds=seeds,
                                target_acc=0.05, tensorboard=bool(TENSORBOARD),
                                progress=False,
                                out=str(tmp_path / out)))
        gc.collect()
        torch.cuda.synchronize()
        return torch.cuda.memory_allocated()

    after_one = group((0,), "one")
    after_three = group((0, 1, 2), "three")
    assert after_three - after_one < 16 * 2**20, (after_one, after_three)
    summary = read_json(tmp_path / "three" / "summary.json")
    assert summary["test_acc"]["n"] == 3
    configs = [read_json(tmp_path / "three" / f"seed-{k}" / "config.json") for k in range(3)]
    assert all(c["graph"] and c["dtype"] == "bf16" for c in configs)
    first, second = (without_timing(read_metrics(tmp_path / "three" / f"seed-{k}"))
                     for k in (0, 1))
    assert first != second  # the seeds differ
