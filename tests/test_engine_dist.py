"""Distributed training on the CPU: `--device cpu --nproc 2` over gloo takes the same
path as `--gpus N` over NCCL (spawned workers, DDP, sharded loaders, all-reduced metrics)."""
import json
import os
import subprocess
import sys
import time

import pytest
import torch.distributed as dist

from fastcifar.engine import loop
from fastcifar.engine.dist import WorkerFailed, _free_port, launch_local
from fastcifar.engine.resolve import resolve_config
from fastcifar.errors import UserError
from tests.helpers import prepare_dataset

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
    # Only rank 0 wrote files: nothing but the run's own.
    assert sorted(p.name for p in out.iterdir()) == \
        ["checkpoint.pt", "config.json", "metrics.jsonl", "summary.json"]


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
    with pytest.raises(UserError, match="^no data for rank 0$"):
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
