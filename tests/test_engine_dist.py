"""Distributed training on the CPU: `--device cpu --nproc 2` over gloo takes the same
path as `--gpus N` over NCCL (spawned workers, DDP, sharded loaders, all-reduced metrics),
and so do its ways out: a stop agreed by every rank mid-epoch that resumes to the
uninterrupted result, failures that end every process within seconds with one line, and
the captured graph (a sentinel here) released before the process group goes."""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from fastcifar.engine import build, loop, resume
from fastcifar.engine.checkpoint import load_checkpoint
from fastcifar.engine.resolve import resolve_config
from fastcifar.engine.run_dir import claimed_run_dir
from fastcifar.engine.step import GraphRunner
from fastcifar.engine.workers import WorkerFailed, _free_port, launch_local
from fastcifar.errors import RunStopped, UserError
from tests.helpers import SentinelGraph, prepare_dataset

pytestmark = pytest.mark.slow  # processes that start torch: seconds each


@pytest.fixture(scope="module")
def dist_data(tmp_path_factory):
    return prepare_dataset(tmp_path_factory.mktemp("dist"), 400, 100, seed=11)


def test_two_gloo_processes_train_and_stay_in_sync(dist_data, tmp_path):
    out = tmp_path / "ddp"
    config = resolve_config(dict(
        model="resnet20", dataset="cifar10", data_dir=dist_data, out=str(out), device="cpu",
        nproc=2, epochs=2, batch_size=40, base_lr=0.1, schedule="linear", warmup_epochs=0.3,
        nesterov=True, progress=False,
    ))
    assert config.world_size == 2 and config.per_rank_batch_size == 20
    summary = loop.train(config)

    # Bit-identical parameters and BN buffers on both ranks (gathered at the end).
    assert len(summary["param_checksums"]) == 2 and summary["ranks_in_sync"] is True
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    # The metrics were all-reduced: both shards' samples are counted.
    assert records[-1]["step"] == 2 * (400 // 2 // 20)
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert 0 <= records[-1]["test_acc"] <= 1
    written = json.loads((out / "config.json").read_text())
    assert written["world_size"] == 2 and written["per_rank_batch_size"] == 20
    # Only rank 0 wrote files: nothing but the run's own (and the lock it held).
    assert sorted(p.name for p in out.iterdir()) == \
        ["checkpoint.pt", "config.json", "metrics.jsonl", "run.lock", "summary.json"]


def die_on_rank_one(ctx):
    """Rank 1 dies abruptly; rank 0 waits in a collective that can never finish."""
    if ctx.rank == 1:
        time.sleep(0.5)
        os._exit(7)
    dist.barrier()
    time.sleep(60)


def raise_user_error(ctx):
    raise UserError(f"no data for rank {ctx.rank}")


def test_a_dead_worker_stops_the_run_with_a_clear_message():
    start = time.monotonic()
    with pytest.raises(WorkerFailed, match="rank 1 exited with code 7") as info:
        launch_local(die_on_rank_one, 2, "cpu")
    assert "\n" not in str(info.value)
    assert time.monotonic() - start < 50  # rank 0 was stopped, not waited for


def test_a_user_error_in_a_worker_comes_back_as_one_line():
    # Both ranks fail on their own: the earlier report is the one shown.
    with pytest.raises(UserError, match="^no data for rank [01]$"):
        launch_local(raise_user_error, 2, "cpu")


def test_torchrun_starts_the_same_run_from_its_environment(dist_data, tmp_path):
    """`torchrun ... -m fastcifar train` (the several-machines path, here one machine with
    two processes): each process joins from RANK/WORLD_SIZE/MASTER_ADDR, rank 0 writes."""
    out = tmp_path / "torchrun"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node",
        "2", "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
        "-m", "fastcifar", "train", "--model", "resnet20", "--dataset", "cifar10",
        "--data-dir", dist_data, "--out", str(out), "--device", "cpu", "--epochs", "1",
        "--batch-size", "40", "--no-progress",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    written = json.loads((out / "config.json").read_text())
    assert written["world_size"] == 2 and written["per_rank_batch_size"] == 20
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ranks_in_sync"] is True
    assert result.stdout.count("epoch 1/1") == 1  # one rank reports


# -- ways out of a two-process run -------------------------------------------------------

# Strong-recipe pieces (mixup/cutmix, erasing, label smoothing, warmup + cosine) with EMA
# and drop-path, on the torchvision loader without workers (no numba compile per
# process: these tests start many). 200 images, 2 ranks x 20 = 5 steps per epoch.
STOP_OPTIONS = dict(model="resnet20", dataset="cifar10", device="cpu", nproc=2,
                    backend="torchvision", num_workers=0, recipe="strong", autoaugment=False,
                    epochs=2, batch_size=40, ema=True, ema_decay=0.9, drop_path=0.1,
                    log_every=2, progress=False)
RUN_FLAGS = ["--model", "resnet20", "--dataset", "cifar10", "--device", "cpu",
             "--backend", "torchvision", "--num-workers", "0", "--recipe", "strong",
             "--no-autoaugment", "--epochs", "2", "--batch-size", "40", "--ema",
             "--ema-decay", "0.9", "--drop-path", "0.1", "--no-progress"]
STOP_FLAGS = [*RUN_FLAGS, "--nproc", "2"]
SIGNAL_AT_STEP = 5  # rank 1, during the 6th step; agreed after the 7th (log_every 2)
TIMING_KEYS = {"images_per_sec", "epoch_seconds", "eval_seconds"}


@pytest.fixture(scope="module")
def stop_data(tmp_path_factory):
    return prepare_dataset(tmp_path_factory.mktemp("stop"), 200, 100, seed=13)


def noting(note, name, function):
    def wrapped(*args, **kwargs):
        note(name)
        return function(*args, **kwargs)
    return wrapped


def patched_worker(ctx, config, scenario, log_dir):
    """loop.run_worker, in this spawned process, with a sentinel graph noting its reset,
    the process group's destroy and abort noted, and `scenario` injected."""
    log = Path(log_dir) / f"rank{ctx.rank}.log"

    def note(event):
        with open(log, "a") as f:
            f.write(f"{event} {time.time()}\n")

    build_runner = build.build_runner

    def graph_runner(*args, **kwargs):
        runner = GraphRunner(build_runner(*args, **kwargs).step, warmup_steps=0)
        runner.graph = SentinelGraph(runner.step, note)
        return runner

    build.build_runner = graph_runner
    dist.destroy_process_group = noting(note, "destroy", dist.destroy_process_group)
    c10d = dist.distributed_c10d
    c10d._abort_process_group = noting(note, "abort", c10d._abort_process_group)
    save, lr_at = torch.save, loop.lr_at
    if scenario == "stop" and ctx.rank == 1:
        def lr_at_then_signal(schedule, step):
            if step == SIGNAL_AT_STEP:
                note("signal")
                os.kill(os.getpid(), signal.SIGTERM)
            return lr_at(schedule, step)
        loop.lr_at = lr_at_then_signal
    if scenario == "stop" and ctx.rank == 0:
        def save_under_a_signal(obj, *args, **kwargs):
            if isinstance(obj, dict) and obj.get("batch"):  # the mid-epoch checkpoint
                os.kill(os.getpid(), signal.SIGTERM)  # must not tear the write
            return save(obj, *args, **kwargs)
        torch.save = save_under_a_signal
    if scenario == "rank1_reads_nothing" and ctx.rank == 1:
        def no_files(*args, **kwargs):
            raise AssertionError("rank 1 read the checkpoint")
        resume.load_checkpoint = no_files
    if scenario == "disk_full" and ctx.rank == 0:
        class FullDisk:  # the real file, full after 4 kB: torch's writer sees the OSError
            def __init__(self, file):
                self.file = file

            def write(self, data):
                if self.file.tell() + len(data) > 4096:
                    note("failure")
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return self.file.write(data)

            def flush(self):
                self.file.flush()

        def disk_full(obj, f, *args, **kwargs):
            if not (isinstance(obj, dict) and "format" in obj):  # pickling a tensor
                return save(obj, f, *args, **kwargs)
            return save(obj, FullDisk(f), *args, **kwargs)
        torch.save = disk_full
    loop.run_worker(ctx, config)


def launch_patched(config, scenario, log_dir):
    log_dir.mkdir(exist_ok=True)
    with claimed_run_dir(config):
        launch_local(patched_worker, 2, "cpu", (config, scenario, str(log_dir)))


def events(log_dir) -> dict[int, dict[str, float]]:
    """rank -> {event: time}, events in the order they happened."""
    out = {}
    for rank in (0, 1):
        lines = (log_dir / f"rank{rank}.log").read_text().splitlines()
        out[rank] = {name: float(t) for name, t in (line.split() for line in lines)}
    return out


def without_timing(run_dir):
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS}
            for line in lines]


@pytest.fixture(scope="module")
def uninterrupted(stop_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("whole")
    config = resolve_config({**STOP_OPTIONS, "data_dir": stop_data, "out": str(root / "run")})
    launch_patched(config, "finish", root / "log")
    return root / "run", json.loads((root / "run" / "summary.json").read_text()), root / "log"


def test_a_finished_run_releases_the_graph_before_leaving_the_group(uninterrupted):
    _, summary, log_dir = uninterrupted
    assert summary["ranks_in_sync"] is True
    for rank_events in events(log_dir).values():
        assert list(rank_events) == ["reset", "destroy"]


@pytest.fixture(scope="module")
def stopped(stop_data, tmp_path_factory):
    """A run whose rank 1 alone got SIGTERM during step 6 (epoch 2)."""
    root = tmp_path_factory.mktemp("stopped")
    config = resolve_config({**STOP_OPTIONS, "data_dir": stop_data, "out": str(root / "run")})
    with pytest.raises(RunStopped) as info:
        launch_patched(config, "stop", root / "log")
    return root / "run", info.value, time.time(), events(root / "log")


def test_a_stop_on_one_rank_stops_both_at_the_same_step(stopped):
    out, stop, ended, noted = stopped
    assert stop.exit_status == 143
    assert str(stop) == \
        f"stopped at epoch 2 step 7; resume with: fastcifar train --resume --out {out}"
    assert ended - noted[1]["signal"] < 30
    for rank_events in noted.values():  # the graph first, then the group (aborted)
        assert rank_events["reset"] < rank_events["abort"]
    state = load_checkpoint(out / "checkpoint.pt")
    assert (state["epoch"], state["batch"], state["step"]) == (1, 2, 7)
    assert [r["metrics"][2] for r in state["partial_epoch"]["ranks"]] == [40, 40]


def test_the_stopped_run_resumes_to_the_uninterrupted_result(stopped, uninterrupted,
                                                            tmp_path):
    """Resumed twice from copies of the stopped run: by the local launcher (rank 1 may
    not read the checkpoint: rank 0 reads and broadcasts it) and under torchrun (rank 1
    resolves nothing; rank 0's config comes to it), each equal to the uninterrupted run."""
    out = stopped[0]
    whole_dir, whole, _ = uninterrupted
    local, under_torchrun = tmp_path / "local", tmp_path / "torchrun"
    shutil.copytree(out, local)
    shutil.copytree(out, under_torchrun)

    config = resolve_config({"resume": True, "out": str(local)})
    launch_patched(config, "rank1_reads_nothing", tmp_path / "log")
    assert without_timing(local) == without_timing(whole_dir)
    summary = json.loads((local / "summary.json").read_text())
    assert summary["param_checksums"] == whole["param_checksums"]

    result = run_torchrun("--resume", "--out", str(under_torchrun), "--no-progress")
    assert result.returncode == 0, result.stderr[-2000:]
    assert without_timing(under_torchrun) == without_timing(whole_dir)
    summary = json.loads((under_torchrun / "summary.json").read_text())
    assert summary["param_checksums"] == whole["param_checksums"]


def test_a_failed_save_ends_every_process_with_one_line(stop_data, tmp_path):
    config = resolve_config({**STOP_OPTIONS, "data_dir": stop_data, "out": str(tmp_path / "r")})
    with pytest.raises(UserError) as info:
        launch_patched(config, "disk_full", tmp_path / "log")
    ended = time.time()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"cannot write checkpoint {tmp_path / 'r' / 'checkpoint.pt'}: "
                              "No space left on device")
    assert not [p for p in (tmp_path / "r").iterdir() if ".tmp-" in p.name]
    noted = events(tmp_path / "log")
    assert ended - noted[0]["failure"] < 30
    for rank_events in noted.values():
        assert rank_events["reset"] < rank_events["abort"]


def run_cli(*args, timeout=300):
    command = [sys.executable, "-m", "fastcifar", "train", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def test_divergence_ends_both_processes_with_one_line(stop_data, tmp_path):
    start = time.monotonic()
    result = run_cli(*STOP_FLAGS, "--data-dir", stop_data, "--out", str(tmp_path / "nan"),
                     "--lr", "1e9")
    assert time.monotonic() - start < 60
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: training loss became "), lines
    assert "try a lower --lr" in lines[0]


def test_sigterm_to_the_launcher_saves_and_the_resumed_run_matches(uninterrupted, stop_data,
                                                                  tmp_path):
    """`kill -TERM` of `fastcifar train --nproc 2`: wherever it lands after epoch 1, the
    run stops with a checkpoint and a resume command, and resuming ends as the
    uninterrupted run did."""
    whole_dir, whole, _ = uninterrupted
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "fastcifar", "train", *STOP_FLAGS, "--log-every", "1",
               "--data-dir", stop_data, "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        deadline = time.monotonic() + 240
        metrics = out / "metrics.jsonl"
        while not (metrics.exists() and metrics.read_text().strip()):
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 143, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("stopped at epoch ") and \
        last.endswith(f"; resume with: fastcifar train --resume --out {out}")
    result = run_cli("--resume", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert without_timing(out) == without_timing(whole_dir)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["param_checksums"] == whole["param_checksums"]


def run_torchrun(*args):
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node",
        "2", "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
        "-m", "fastcifar", "train", *args,
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def test_torchrun_refuses_a_finished_run_directory_in_one_line(uninterrupted, stop_data):
    """Every rank checks the run directory before the process group exists: one line
    (from the machine's first process), a non-zero status, and no rank left waiting."""
    whole_dir, _, _ = uninterrupted
    start = time.monotonic()
    result = run_torchrun(*RUN_FLAGS, "--data-dir", stop_data, "--out", str(whole_dir))
    assert time.monotonic() - start < 60
    assert result.returncode != 0
    errors = [line for line in (result.stdout + result.stderr).splitlines()
              if line.startswith("error: ")]
    assert errors == [f"error: {whole_dir} holds a finished run (summary.json exists); pass "
                      "--force to overwrite it or choose another --out"], result.stderr


def test_the_buffer_sync_keyword_follows_the_installed_torch(monkeypatch):
    """torch 2.14 renamed DDP's broadcast_buffers to forward_sync_buffers; the GPU machines
    run older torch builds, where only the old name exists."""
    (name, value), = build.buffer_sync_option(False).items()
    assert value is False
    import inspect

    from torch.nn.parallel import DistributedDataParallel
    assert name in inspect.signature(DistributedDataParallel.__init__).parameters

    class OlderDDP:
        def __init__(self, module, device_ids=None, broadcast_buffers=True):
            pass

    monkeypatch.setattr(build, "DistributedDataParallel", OlderDDP)
    assert build.buffer_sync_option(False) == {"broadcast_buffers": False}
