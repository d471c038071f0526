"""Experiments without training (fast): time to target, seed statistics, --config
resolution, the run lock, and `fastcifar runs` over run folders written by hand."""
from __future__ import annotations

import json
import statistics

import numpy as np
import pytest
from click.testing import CliRunner

from fastcifar.cli import main
from fastcifar.engine.config import TrainConfig
from fastcifar.engine.migrate import migrate_config
from fastcifar.engine.resolve import resolve_config
from fastcifar.engine.run_dir import claimed_run_dir
from fastcifar.engine.run_lock import holding_run_lock, is_running
from fastcifar.engine.target import first_reaching, target_summary
from fastcifar.errors import UserError
from fastcifar.experiments.runs import collect_runs
from fastcifar.experiments.statistics import describe, format_line, summarize_seeds

MODELS = ["resnet20", "resnet9"]


def resolve(**options):
    cuda_devices = options.pop("cuda", 0)
    base = dict(model="resnet20", dataset="cifar10", out="/tmp/unused-run")
    return resolve_config({**base, **options}, cuda_devices=cuda_devices, known_models=MODELS)


def records(accuracies, seconds=1.5):
    return [{"epoch": i + 1, "step": 4 * (i + 1), "lr": 0.1, "train_loss": 1.0,
             "train_acc": 0.5, "test_loss": 1.0, "test_acc": acc, "images_per_sec": 100.0,
             "epoch_seconds": seconds * (i + 1), "eval_seconds": 0.25}
            for i, acc in enumerate(accuracies)]


# -- time to target -----------------------------------------------------------------------


def test_time_to_target_is_the_first_epoch_reaching_it_in_training_seconds():
    history = records([0.5, 0.91, 0.89, 0.95])  # epoch_seconds 1.5, 3.0, 4.5, 6.0
    assert first_reaching(history, 0.9) == (2, 4.5)  # eval_seconds are not counted
    assert first_reaching(history, 0.95) == (4, 15.0)
    assert first_reaching(history, 0.96) is None
    config = resolve(epochs=10, target_acc=0.9)
    assert target_summary(config, history) == {
        "target_acc": 0.9, "epoch_to_target": 2, "time_to_target_s": 4.5,
        "stopped_at_target": False}
    stopped = resolve(epochs=10, target_acc=0.9, stop_at_target=True)
    assert target_summary(stopped, history[:2])["stopped_at_target"] is True
    assert target_summary(resolve(epochs=10), history)["time_to_target_s"] is None


# -- statistics over seeds ----------------------------------------------------------------


def test_seed_statistics_are_the_sample_statistics_of_the_counted_values():
    values = {"0": 0.9401, "1": 0.9382, "2": 0.9421, "3": None}
    stats = describe(values)
    counted = np.array([0.9401, 0.9382, 0.9421])
    assert stats["mean"] == pytest.approx(counted.mean())
    assert stats["std"] == pytest.approx(counted.std(ddof=1))
    assert (stats["min"], stats["max"], stats["n"]) == (0.9382, 0.9421, 3)
    assert stats["values"] == values
    assert describe({"0": 0.5})["std"] is None
    assert describe({"0": None})["mean"] is None


def test_the_console_line_of_a_group():
    stats = {"mean": 0.94014, "std": 0.00131, "min": 0.9382, "max": 0.9421, "n": 5}
    assert format_line("test_acc", stats) == \
        "test_acc 0.9401 +- 0.0013 (n=5, min 0.9382, max 0.9421)"


def test_summarize_seeds_counts_only_the_seeds_that_reached_the_target():
    summaries = {0: {"test_acc": 0.9, "time_to_target_s": 3.0, "epoch_to_target": 2},
                 1: {"test_acc": 0.8, "time_to_target_s": None, "epoch_to_target": None}}
    stats = summarize_seeds(summaries, target_acc=0.85)
    assert stats["time_to_target_s"]["n"] == 1 and stats["time_to_target_s"]["mean"] == 3.0
    assert stats["time_to_target_s"]["values"] == {"0": 3.0, "1": None}
    assert stats["test_acc"]["n"] == 2
    assert summarize_seeds(summaries, target_acc=None)["time_to_target_s"] is None


# -- --config -------------------------------------------------------------------------------


def saved_run(tmp_path, **options):
    config = resolve(out=str(tmp_path / "original"), **options)
    (tmp_path / "original").mkdir()
    (tmp_path / "original" / "config.json").write_text(json.dumps(config.to_json()))
    return config


def test_config_resolves_to_the_saved_settings_and_records_its_origin(tmp_path):
    original = saved_run(tmp_path, recipe="strong", epochs=12, batch_size=64, seed=7,
                         cutout=8, ema=True)
    for given in (tmp_path / "original" / "config.json", tmp_path / "original"):
        rerun = resolve(config=str(given), out=str(tmp_path / "rerun"))
        assert rerun.from_config == str(tmp_path / "original" / "config.json")
        assert {**rerun.identity(), "from_config": None} == original.identity()
        assert rerun.out == str(tmp_path / "rerun")
    assert json.loads(json.dumps(rerun.to_json()))["from_config"] == rerun.from_config


def test_config_flags_override_and_epochs_keep_the_schedule_shape(tmp_path):
    saved_run(tmp_path, recipe="paper", epochs=40, seed=3)  # milestones 20, 30
    rerun = resolve(config=str(tmp_path / "original"), epochs=20, seed=4, base_lr=0.05)
    assert (rerun.epochs, rerun.seed, rerun.base_lr) == (20, 4, 0.05)
    assert rerun.milestones == (10.0, 15.0)
    assert resolve(config=str(tmp_path / "original"), epochs=20,
                   milestones=(5.0,)).milestones == (5.0,)


def test_config_from_a_gpu_run_reruns_on_the_cpu_when_asked(tmp_path):
    saved_run(tmp_path, cuda=2, device="cuda", gpus=2)
    with pytest.raises(UserError, match="no CUDA device"):
        resolve(config=str(tmp_path / "original"))
    rerun = resolve(config=str(tmp_path / "original"), device="cpu")
    assert (rerun.device, rerun.graph, rerun.world_size, rerun.dtype) == ("cpu", False, 1, "bf16")


def test_config_with_another_policy_drops_randaugment_settings(tmp_path):
    saved_run(tmp_path, augment_policy="randaugment", ra_n=3, ra_m=20)
    rerun = resolve(config=str(tmp_path / "original"), augment_policy="trivialaugment")
    assert (rerun.augment_policy, rerun.ra_n, rerun.ra_m) == ("trivialaugment", 2, 9)
    assert resolve(config=str(tmp_path / "original"), ra_m=5).ra_m == 5
    with pytest.raises(UserError, match="needs? --augment-policy randaugment"):
        resolve(config=str(tmp_path / "original"), augment_policy="none", ra_n=3)


@pytest.mark.parametrize("make, options, message", [
    (None, {}, "does not exist"),
    ("garbage", {}, "cannot read"),
    ("group", {}, "is a seed group; give one of its runs"),
    ("run", {"resume": True}, "give one of them"),
])
def test_bad_config_is_one_line(tmp_path, make, options, message):
    folder = tmp_path / "original"
    if make == "garbage":
        folder.mkdir()
        (folder / "config.json").write_text("{not json")
    elif make == "group":
        folder.mkdir()
        (folder / "seeds.json").write_text("{}")
    elif make == "run":
        saved_run(tmp_path)
    with pytest.raises(UserError, match=message) as info:
        resolve(config=str(folder), **options)
    assert "\n" not in str(info.value)


def test_a_schema_1_config_gets_the_experiment_fields_from_its_migration():
    data = resolve().to_json()
    data["schema_version"] = 1
    for key in ("from_config", "target_acc", "stop_at_target", "tensorboard"):
        del data[key]
    migrated = migrate_config(data)
    assert (migrated["from_config"], migrated["target_acc"], migrated["stop_at_target"],
            migrated["tensorboard"]) == (None, None, False, False)
    assert TrainConfig.from_json(data) == resolve()


@pytest.mark.parametrize("options, message", [
    (dict(target_acc=94.0), "--target-acc is a fraction"),
    (dict(target_acc=0.0), "--target-acc is a fraction"),
    (dict(stop_at_target=True), "--stop-at-target needs --target-acc"),
])
def test_bad_target_options(options, message):
    with pytest.raises(UserError, match=message):
        resolve(**options)


def test_tensorboard_without_the_extra_names_it(monkeypatch):
    monkeypatch.setattr("fastcifar.engine.validate.has_module", lambda name: False)
    with pytest.raises(UserError, match=r"pip install 'fastcifar\[tb\]'"):
        resolve(tensorboard=True)


@pytest.mark.parametrize("args, message", [
    (["--seeds", "0"], "a count of seeds must be at least 1, got 0"),
    (["--seeds", "0,,1"], "give a count"),
    (["--seeds", "0,1,"], "give a count"),
    (["--seeds", "1,1"], "distinct"),
    (["--seeds", "a,b"], "give a count"),
    (["--seeds", "3", "--seed", "1"], "not both"),
])
def test_cli_bad_seeds_are_one_line(args, message):
    result = CliRunner().invoke(main, ["train", "--model", "resnet20", "--dataset", "cifar10",
                                       *args])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr


# -- the run lock ---------------------------------------------------------------------------


def test_the_run_lock_marks_a_live_run_and_refuses_a_second_trainer(tmp_path):
    run_dir = tmp_path / "run"
    assert not is_running(run_dir)
    with holding_run_lock(run_dir):
        assert is_running(run_dir)
        config = resolve(out=str(run_dir))
        with pytest.raises(UserError, match="in use: another fastcifar process"):
            with claimed_run_dir(config):
                pass
    assert not is_running(run_dir)


# -- fastcifar runs over folders written by hand -----------------------------------------


def write_run(folder, accuracies, *, summary=False, diverged=False, checkpoint=True,
              **options):
    folder.mkdir(parents=True)
    config = resolve(out=str(folder), epochs=5, **options)
    (folder / "config.json").write_text(json.dumps(config.to_json()))
    history = records(accuracies)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    if checkpoint:
        (folder / "checkpoint.pt").write_bytes(b"")
    if summary:
        reached = target_summary(config, history)
        (folder / "summary.json").write_text(json.dumps(
            {"test_acc": accuracies[-1], **reached}))
    if diverged:
        (folder / "diverged.json").write_text(json.dumps({"epoch": len(accuracies) + 1}))
    return config


def write_group(folder, finals, epochs_done=5, **options):
    config = resolve(out=str(folder), epochs=5, **options)
    folder.mkdir(parents=True)
    (folder / "seeds.json").write_text(json.dumps(
        {"format": 1, "seeds": list(range(len(finals))), "config": config.to_json()}))
    for seed, final in enumerate(finals):
        accuracies = [0.5] * (epochs_done - 1) + [final]
        write_run(folder / f"seed-{seed}", accuracies, summary=epochs_done == 5,
                  seed=seed, **options)


@pytest.fixture()
def run_folders(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs / "done", [0.5, 0.7, 0.8, 0.85, 0.9], summary=True, target_acc=0.8)
    write_run(runs / "stopped", [0.5, 0.6])
    write_run(runs / "started", [], checkpoint=False)
    write_run(runs / "nan", [0.5], diverged=True)
    write_run(runs / "old" / "live", [0.4])
    write_group(runs / "group", [0.9, 0.92, 0.94], target_acc=0.91)
    (runs / "group" / "summary.json").write_text("{}")
    (runs / "empty-folder").mkdir()
    return runs


def test_runs_reads_every_state_from_the_files(run_folders):
    with holding_run_lock(run_folders / "old" / "live"):
        rows = {row["name"]: row for row in collect_runs([str(run_folders)])}
    assert list(rows) == ["done", "group", "nan", "old/live", "started", "stopped"]
    states = {name: row["state"] for name, row in rows.items()}
    assert states == {"done": "finished", "group": "finished", "nan": "diverged",
                      "old/live": "running", "started": "stopped", "stopped": "stopped"}
    done = rows["done"]
    assert (done["epochs_done"], done["epochs_planned"], done["test_acc"]) == (5, 5, 0.9)
    assert (done["epoch_to_target"], done["time_to_target_s"]) == (3, 1.5 + 3.0 + 4.5)
    assert done["time_s"] == pytest.approx(sum(1.5 * e + 0.25 for e in range(1, 6)))
    group = rows["group"]
    assert group["seeds"] == {"finished": 3, "total": 3} and group["kind"] == "seed group"
    assert group["test_acc"] == pytest.approx(statistics.fmean([0.9, 0.92, 0.94]))
    assert group["test_acc_std"] == pytest.approx(statistics.stdev([0.9, 0.92, 0.94]))
    assert group["targets_reached"] == 2  # 0.92 and 0.94 reach 0.91 in their last epoch
    assert group["epochs_done"] == 15 and group["epochs_planned"] == 15


def test_a_group_with_a_diverged_seed_and_one_running(tmp_path):
    write_group(tmp_path / "g", [0.9, 0.92], epochs_done=3)
    (tmp_path / "g" / "seed-1" / "diverged.json").write_text("{}")
    assert collect_runs([str(tmp_path / "g")])[0]["state"] == "diverged"
    with holding_run_lock(tmp_path / "g"):
        row = collect_runs([str(tmp_path / "g")])[0]
    assert row["state"] == "running" and row["seeds"] == {"finished": 0, "total": 2}
    assert row["test_acc"] is None and row["name"] == "g"


def test_cli_runs_table_json_and_plot(run_folders, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["runs", str(run_folders)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["name", "model", "dataset"]
    done = next(line for line in lines if line.startswith("done "))
    assert "5/5" in done and "0.9000" in done and "9.0 s @3" in done and "finished" in done
    group = next(line for line in lines if line.startswith("group "))
    assert "3/3" in group and "0.9200 +- 0.0200" in group and "(2/3)" in group
    assert "15/15 (5/seed)" in group
    assert "diverged" in next(line for line in lines if line.startswith("nan "))

    result = runner.invoke(main, ["runs", str(run_folders), "--json"])
    rows = json.loads(result.stdout)
    assert {row["name"]: row["state"] for row in rows}["stopped"] == "stopped"

    pytest.importorskip("matplotlib")
    plot = tmp_path / "acc.png"
    result = runner.invoke(main, ["runs", str(run_folders), "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "(5 runs)" in result.output  # those with an epoch: done, group, nan, live, stopped


def test_cli_runs_on_a_missing_folder_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["runs", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "no such folder" in result.stderr
    (tmp_path / "runs.json").write_text("[]")
    result = CliRunner().invoke(main, ["runs", str(tmp_path / "runs.json")])
    assert result.exit_code == 2 and "runs.json: is not a folder" in result.stderr


def test_a_damaged_metrics_file_is_named_in_its_warning(run_folders):
    (run_folders / "done" / "metrics.jsonl").write_text('{"epoch": 1, "test_')
    result = CliRunner().invoke(main, ["runs", str(run_folders)])
    assert result.exit_code == 0
    assert f"cannot read {run_folders / 'done' / 'metrics.jsonl'}" in result.stderr


def test_a_group_curve_averages_only_the_epochs_every_seed_reached():
    from fastcifar.experiments.runs_plot import _band

    # seed 1 stopped at its target after epoch 2: the mean must not drop to seed 0's 0.3
    assert _band([[0.1, 0.2, 0.3], [0.5, 0.6]]) == ([0.3, 0.4], [0.1, 0.2], [0.5, 0.6])


def test_a_stopped_seed_points_to_its_group_for_resuming(tmp_path):
    from types import SimpleNamespace

    from fastcifar.engine.loop import resume_hint

    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "seeds.json").write_text("{}")
    hint = resume_hint(SimpleNamespace(out=str(tmp_path / "g" / "seed-1")))
    assert hint == f"resume with: fastcifar train --resume --out {tmp_path / 'g'}"
    hint = resume_hint(SimpleNamespace(out=str(tmp_path / "single")))
    assert hint == f"resume with: fastcifar train --resume --out {tmp_path / 'single'}"
