"""Stopping a run on a signal (one process, CPU): the handlers, the agreed checks, the
graph released on every way out, and a run stopped mid-epoch that resumes to exactly the
result of an uninterrupted one. Two processes: tests/test_engine_dist.py."""
import os
import signal

import pytest
import torch

from fastcifar.engine import build, loop, resume
from fastcifar.engine.checkpoint import load_checkpoint
from fastcifar.engine.checks import StepChecks
from fastcifar.engine.dist import DistContext
from fastcifar.engine.resolve import resolve_config
from fastcifar.engine.signals import StopRequested, StopSignals
from fastcifar.engine.step import LOSS_SUM, SEEN, GraphRunner
from fastcifar.errors import RunStopped, UserError
from tests.helpers import (
    SentinelGraph,
    cpu_run_config,
    prepare_dataset,
    read_metrics,
    without_timing,
)

# Strong-recipe pieces (warmup + cosine, mixup/cutmix soft targets, label smoothing,
# Nesterov) plus EMA, TTA and drop-path (which draws from the global RNG): every piece of
# state a mid-epoch checkpoint must carry. 200 images / 50 = 4 steps per epoch.
OPTIONS = dict(recipe="strong", autoaugment=False, epochs=3, batch_size=50, ema=True,
               ema_decay=0.9, tta=True, drop_path=0.2, log_every=1)


pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (tests/conftest.py)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return prepare_dataset(tmp_path_factory.mktemp("tiny"), 200, 100, seed=5)


# -- the handlers ------------------------------------------------------------------------


def test_a_signal_stops_at_once_before_training_and_is_only_recorded_after():
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals() as signals:
        with pytest.raises(StopRequested) as info:
            os.kill(os.getpid(), signal.SIGINT)
        assert info.value.signum == signal.SIGINT
        signals.defer()
        os.kill(os.getpid(), signal.SIGTERM)  # no exception: the run stops when agreed
        os.kill(os.getpid(), signal.SIGTERM)  # a second one changes nothing
        assert signals.stop_signal == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before


# -- the agreed checks -----------------------------------------------------------------


def test_checks_read_each_agreed_value_after_the_following_step():
    metrics = torch.zeros(3, dtype=torch.float64)
    checks = StepChecks(DistContext.single("cpu"), metrics, every=3)
    metrics[LOSS_SUM], metrics[SEEN] = 6.0, 3.0
    received = set()
    verdicts = [checks.after_step(step, received) for step in (1, 2, 3)]
    assert verdicts == [None, None, None]  # launched after step 3, read after step 4
    received.add(signal.SIGINT)  # arrives after the check was launched: seen at the next
    metrics[LOSS_SUM] = float("nan")
    first = checks.after_step(4, received)
    assert first.stop_signal is None and first.loss == 2.0 and not first.diverged
    assert [checks.after_step(step, received) for step in (5, 6)] == [None, None]
    second = checks.after_step(7, received)
    assert second.stop_signal == signal.SIGINT and second.diverged
    received.add(signal.SIGTERM)
    assert checks.now(received).stop_signal == signal.SIGTERM


# -- the graph goes first ----------------------------------------------------------------


def test_a_failing_run_releases_its_graph(tiny_data, tmp_path, monkeypatch):
    events = []
    build_runner = build.build_runner

    def graph_runner(*args, **kwargs):
        runner = GraphRunner(build_runner(*args, **kwargs).step, warmup_steps=0)
        runner.graph = SentinelGraph(runner.step, events.append)
        return runner

    def disk_full(*args, **kwargs):
        events.append("save")
        raise UserError("cannot write checkpoint: No space left on device")

    monkeypatch.setattr(build, "build_runner", graph_runner)
    monkeypatch.setattr(resume, "save_checkpoint", disk_full)
    config = cpu_run_config(tiny_data, tmp_path / "full", epochs=1, batch_size=100)
    with pytest.raises(UserError, match="No space left"):
        loop.train(config)
    assert events == ["save", "reset"]


# -- a mid-epoch stop and its resume -----------------------------------------------------


@pytest.fixture(scope="module")
def uninterrupted(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "whole"
    return out, loop.train(cpu_run_config(tiny_data, out, **OPTIONS))


@pytest.mark.slow
def test_sigterm_mid_epoch_then_resume_equals_an_uninterrupted_run(
        uninterrupted, tiny_data, tmp_path, monkeypatch):
    whole_dir, whole = uninterrupted
    lr_at, save = loop.lr_at, torch.save

    def lr_at_then_signal(schedule, step):
        if step == 5:  # during the 6th step (epoch 2): launched after it, agreed after the 7th
            os.kill(os.getpid(), signal.SIGTERM)
        return lr_at(schedule, step)

    def save_under_a_second_signal(obj, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("batch"):  # the mid-epoch checkpoint
            os.kill(os.getpid(), signal.SIGTERM)  # must not interrupt the write
        return save(obj, *args, **kwargs)

    monkeypatch.setattr(loop, "lr_at", lr_at_then_signal)
    monkeypatch.setattr(torch, "save", save_under_a_second_signal)
    out = tmp_path / "split"
    with pytest.raises(RunStopped) as info:
        loop.train(cpu_run_config(tiny_data, out, **OPTIONS))
    monkeypatch.undo()
    assert info.value.exit_status == 143
    assert str(info.value) == \
        f"stopped at epoch 2 step 7; resume with: fastcifar train --resume --out {out}"
    state = load_checkpoint(out / "checkpoint.pt")
    assert (state["epoch"], state["batch"], state["step"]) == (1, 3, 7)
    assert state["partial_epoch"]["ranks"][0]["metrics"][SEEN] == 3 * 50
    assert len(without_timing(read_metrics(out))) == 1

    resumed = loop.train(resolve_config({"resume": True, "out": str(out), "progress": False}))
    assert without_timing(read_metrics(out)) == without_timing(read_metrics(whole_dir))
    assert resumed["param_checksums"] == whole["param_checksums"]
