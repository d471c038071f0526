"""GPU checks of the multi-GPU and preemption paths (issue 11), one prepared script.

    python benchmarks/gpu_checks.py --out DIR            # every check (never run yet)
    python benchmarks/gpu_checks.py --out DIR --only drop_path_replays

fastcifar must be installed from this checkout (`pip install -e .`; gpu_suite.sh does it).

Each check runs in its own process under a timeout (a hang in NCCL cannot block the
others, and every process group is new), prints one line (PASS / FAIL / SKIP / INFO with
its figures) and the whole is written to DIR/gpu_checks.json; the exit status is 1 when
any check failed. benchmarks/gpu_suite.sh runs it as a stage (150 s by default): the
checks run in the order below, most important first, and those left without time are
SKIPs. The per-check timeouts add up to ~17 min, far above what a healthy run takes, but
a device call has 10 min: on a short device budget run the skipped ones in a call of
their own, e.g. `--only ddp_graph_fp32 ddp_graph_bf16_compile ddp_graph_fp32_compile
buffer_sync_cost --budget-s 540`.

Checks:
  ddp_graph_{fp32,bf16}[_compile]  a world-size-1 NCCL group, the DDP-wrapped step built
                        by the engine (one side stream for DDP, warm-up and capture)
                        and captured, equals the same step run eagerly over 20 steps
                        with an lr that changes every step; no "AccumulateGrad node's
                        stream does not match" warning; then graph.reset() and
                        destroy_process_group() end under a 30 s watchdog
  drop_path_replays     drop-path masks differ between replays of one captured step
                        (same batch, lr 0: only the masks can change the loss)
  sync_free_replays     30 replays of the trainer's per-batch body (native loader,
                        captured step, EMA, progress polling, the agreed stop/NaN check)
                        under torch.cuda.set_sync_debug_mode("error")
  stop_resume_graph     a captured run with EMA and drop-path, stopped by SIGTERM mid-epoch
                        (a second SIGTERM during the save), resumed: same result as an
                        uninterrupted run (figures: the largest metric difference)
  triton_device_guard   the fused op's Triton launch on tensors of cuda:1 while cuda:0 is
                        current (needs two GPUs)
  buffer_sync_cost      INFO: the captured DDP step with and without DDP's per-step buffer
                        broadcast (world size 1 here: the saving grows with the ranks)
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
TIMEOUTS = {"ddp_graph_fp32": 90, "ddp_graph_bf16": 90, "ddp_graph_fp32_compile": 180,
            "ddp_graph_bf16_compile": 180, "drop_path_replays": 60, "sync_free_replays": 120,
            "stop_resume_graph": 180, "triton_device_guard": 60, "buffer_sync_cost": 90}


class Skip(Exception):
    pass


class Info(Exception):
    """Not a pass/fail check: its message is the figure."""


# -- helpers (run inside a check's process) ------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _need_gpus(count: int = 1):
    import torch

    if not torch.cuda.is_available() or torch.cuda.device_count() < count:
        raise Skip(f"needs {count} CUDA GPU(s)")
    return torch


def _nccl_world_of_one(torch, device):
    """A one-rank NCCL process group, set up as the trainer sets up a captured one."""
    os.environ["TORCH_NCCL_ASYNC_ERROR_HANDLING"] = "0"  # as dist.init_process does
    torch.distributed.init_process_group(
        "nccl", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1,
        device_id=device)
    # ctx.distributed is what makes the engine wrap the model in DDP.
    return SimpleNamespace(distributed=True, device=device, rank=0, world_size=1,
                           is_main=True)


def _destroy_within(torch, seconds: float = 30.0) -> float:
    """destroy_process_group() on a watchdog thread; returns its duration."""
    start = time.monotonic()
    done = threading.Thread(target=torch.distributed.destroy_process_group, daemon=True)
    done.start()
    done.join(seconds)
    if done.is_alive():
        raise AssertionError(f"destroy_process_group() still running after {seconds:.0f} s")
    return time.monotonic() - start


def _tiny_net(torch, seed: int = 0):
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    ).cuda().to(memory_format=torch.channels_last)


def _step_parts(torch, model, dtype: str, batch_size: int = 32):
    from fastcifar.engine.optim import SGD
    from fastcifar.engine.step import TORCH_DTYPES, StepBuffers

    lr = torch.zeros((), dtype=torch.float32, device="cuda")
    buffers = StepBuffers.allocate(batch_size, 10, soft_targets=False, lr=lr,
                                   dtype=TORCH_DTYPES[dtype])
    optimizer = SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    return buffers, optimizer


def _batches(torch, count: int, dtype, batch_size: int = 32):
    generator = torch.Generator(device="cuda").manual_seed(1)
    out = []
    for _ in range(count):
        images = torch.randn(batch_size, 3, 32, 32, device="cuda", generator=generator)
        labels = torch.randint(0, 10, (batch_size,), device="cuda", generator=generator)
        out.append((images.to(dtype).contiguous(memory_format=torch.channels_last), labels))
    return out


# -- the checks --------------------------------------------------------------------------


def ddp_graph(dtype: str, compiled: bool) -> str:
    torch = _need_gpus()
    from fastcifar.engine import build
    from fastcifar.engine.step import TORCH_DTYPES

    device = torch.device("cuda", 0)
    torch.cuda.set_device(device)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    ctx = _nccl_world_of_one(torch, device)
    batches = _batches(torch, 20, TORCH_DTYPES[dtype])
    lrs = [0.02 * (1 + i % 5) for i in range(20)]  # a different lr every step
    results, runners = {}, []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for graph in (False, True):
            model = _tiny_net(torch)
            buffers, optimizer = _step_parts(torch, model, dtype)
            config = SimpleNamespace(graph=graph, compile=compiled, dtype=dtype, mixing=False,
                                     label_smoothing=0.1)
            runner = build.build_runner(config, ctx, model, optimizer, buffers, None)
            for (images, labels), lr in zip(batches, lrs):
                buffers.lr.fill_(lr)
                runner(images, labels)
            torch.cuda.synchronize()
            results[graph] = ([p.detach().clone() for p in model.parameters()],
                              buffers.metrics.clone())
            runners.append(runner)
    assert runners[1].captured, "the step was not captured"
    mismatch = [str(w.message) for w in caught
                if "AccumulateGrad" in str(w.message) and "stream" in str(w.message)]
    assert not mismatch, f"stream warning: {mismatch[0][:200]}"
    tolerance = dict(rtol=2e-2, atol=2e-3) if compiled else dict(rtol=1e-4, atol=1e-5)
    worst = 0.0
    for eager, graphed in zip(results[False][0], results[True][0]):
        torch.testing.assert_close(graphed, eager, **tolerance)
        worst = max(worst, (graphed.float() - eager.float()).abs().max().item())
    torch.testing.assert_close(results[True][1], results[False][1], rtol=1e-3, atol=1e-3)
    for runner in runners:
        runner.close()  # graph.reset(): the communicator is referenced no more
    seconds = _destroy_within(torch)
    return (f"20 steps, changing lr: max |graph - eager| {worst:.2e}; no stream warning; "
            f"reset then destroy_process_group in {seconds:.2f} s")


def drop_path_replays() -> str:
    torch = _need_gpus()
    from fastcifar.engine.step import LOSS_SUM, GraphRunner, TrainStep
    from fastcifar.models import create_model

    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10, drop_path=0.5).cuda().to(
        memory_format=torch.channels_last)
    buffers, optimizer = _step_parts(torch, model, "bf16")
    runner = GraphRunner(TrainStep(model, optimizer, buffers, dtype="bf16"), warmup_steps=3)
    images, labels = _batches(torch, 1, torch.bfloat16)[0]
    buffers.lr.fill_(0.0)  # no update, no decay: only the drop-path masks move the loss
    losses = []
    for _ in range(12):
        before = buffers.metrics[LOSS_SUM].item()
        runner(images, labels)
        losses.append(buffers.metrics[LOSS_SUM].item() - before)
    assert runner.captured
    replayed = losses[4:]  # after 3 warm-ups and the capture
    distinct = len({round(x, 6) for x in replayed})
    assert distinct > 1, f"the same loss in every replay ({replayed[0]:.6f}): frozen masks"
    runner.close()
    return f"{distinct} distinct losses in {len(replayed)} replays of one batch"


def sync_free_replays() -> str:
    torch = _need_gpus()
    from fastcifar.bench.training import train_config
    from fastcifar.engine.dist import DistContext
    from fastcifar.engine.loop import Trainer
    from fastcifar.engine.progress import EpochProgress
    from fastcifar.synthetic import prepare_synthetic

    with tempfile.TemporaryDirectory() as data_dir:
        prepare_synthetic(data_dir, "cifar10", train_size=8192, test_size=512)
        config = train_config("resnet20", "cifar10", "cuda", data_dir=data_dir, batch_size=128,
                              ema=True, drop_path=0.1, log_every=3)
        trainer = Trainer(DistContext.single("cuda"), config)
        loader = trainer.train_loader
        loader.set_epoch(0)
        batches = iter(loader)
        progress = EpochProgress(epoch=0, epochs=1, steps=len(loader),
                                 metrics=trainer.buffers.metrics, images_per_step=128,
                                 log_every=3, enabled=True)
        verdicts = 0
        for _ in range(trainer.runner.warmup_calls):  # eager warm-ups, then the capture
            trainer.train_batch(*next(batches))
        assert trainer.runner.captured
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for index in range(trainer.runner.warmup_calls, trainer.runner.warmup_calls + 30):
                lr = trainer.train_batch(*next(batches))
                progress.step(index, lr)
                verdicts += trainer.checks.after_step(trainer.step, set()) is not None
        finally:
            torch.cuda.set_sync_debug_mode(0)
            progress.close()
        torch.cuda.synchronize()
        trainer.close()
    return f"30 replays (loader, EMA, progress, {verdicts} agreed checks) without a host sync"


def stop_resume_graph() -> str:
    torch = _need_gpus()
    from fastcifar.engine import loop
    from fastcifar.engine.checkpoint import load_checkpoint
    from fastcifar.engine.resolve import resolve_config
    from fastcifar.errors import RunStopped
    from fastcifar.synthetic import prepare_synthetic

    with tempfile.TemporaryDirectory() as root:
        data_dir = prepare_synthetic(Path(root) / "data", "cifar10", train_size=4096,
                                     test_size=512)
        options = dict(model="resnet20", dataset="cifar10", data_dir=str(data_dir),
                       device="cuda", epochs=3, batch_size=256, ema=True, ema_decay=0.9,
                       drop_path=0.1, log_every=4, progress=False)
        assert resolve_config({**options, "out": root}).graph
        whole = loop.train(resolve_config({**options, "out": f"{root}/whole"}))
        lr_at, save = loop.lr_at, torch.save

        def lr_at_then_signal(schedule, step):
            if step == 21:  # epoch 2 (16 steps per epoch): agreed after step 25
                os.kill(os.getpid(), signal.SIGTERM)
            return lr_at(schedule, step)

        def save_under_a_signal(obj, *args, **kwargs):
            if isinstance(obj, dict) and obj.get("batch"):  # the mid-epoch checkpoint
                os.kill(os.getpid(), signal.SIGTERM)
            return save(obj, *args, **kwargs)

        loop.lr_at, torch.save = lr_at_then_signal, save_under_a_signal
        try:
            loop.train(resolve_config({**options, "out": f"{root}/split"}))
            raise AssertionError("the run was not stopped")
        except RunStopped as stopped:
            line = str(stopped)
        finally:
            loop.lr_at, torch.save = lr_at, save
        state = load_checkpoint(f"{root}/split/checkpoint.pt")
        position = (state["epoch"], state["batch"], state["step"])
        assert state["batch"] > 0, f"not stopped mid-epoch: {position}"
        resumed = loop.train(resolve_config({"resume": True, "out": f"{root}/split",
                                             "progress": False}))
        records = [[json.loads(line) for line in (Path(root) / run / "metrics.jsonl")
                    .read_text().splitlines()] for run in ("whole", "split")]
    timing = {"images_per_sec", "epoch_seconds", "eval_seconds"}
    worst = max(abs(a[k] - b[k]) for a, b in zip(*records) for k in a if k not in timing)
    same = resumed["param_checksums"] == whole["param_checksums"]
    assert worst < 1e-3, f"resumed run differs by {worst:.3g} (stopped: {line})"
    return (f"{line.split(';')[0]} (checkpoint at epoch, batch, step {position}); resumed: "
            f"largest metric difference {worst:.2e}, parameters "
            f"{'bit-identical' if same else 'not bit-identical (cudnn.benchmark)'}")


def triton_device_guard() -> str:
    torch = _need_gpus(2)
    from fastcifar.augment import AugmentConfig, augment, augment_reference, sample_params

    config = AugmentConfig.for_dataset("cifar10", padding=4, flip=True, cutout=8)
    generator = torch.Generator(device="cuda:1").manual_seed(0)
    images = torch.randint(0, 256, (64, 32, 32, 3), dtype=torch.uint8, device="cuda:1",
                           generator=generator)
    labels = torch.randint(0, 10, (64,), device="cuda:1", generator=generator)
    params = sample_params(config, 64, generator, "cuda:1")
    torch.cuda.set_device(0)
    out, _ = augment(images, labels, params, config, impl="triton")
    torch.cuda.synchronize(1)
    want, _ = augment_reference(images.cpu(), labels.cpu(), params.to("cpu"), config)
    torch.testing.assert_close(out.cpu(), want)
    return "cuda:1 tensors augmented correctly while cuda:0 was current"


def buffer_sync_cost() -> str:
    torch = _need_gpus()
    from torch.nn.parallel import DistributedDataParallel

    from fastcifar.engine.build import buffer_sync_option
    from fastcifar.engine.step import GraphRunner, TrainStep
    from fastcifar.models import create_model

    device = torch.device("cuda", 0)
    torch.cuda.set_device(device)
    _nccl_world_of_one(torch, device)
    figures = {}
    for sync in (True, False):
        torch.manual_seed(0)
        model = create_model("resnet20", num_classes=10).cuda().to(
            memory_format=torch.channels_last)
        buffers, optimizer = _step_parts(torch, model, "bf16", batch_size=512)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            wrapped = DistributedDataParallel(model, device_ids=[0],
                                              **buffer_sync_option(sync))
        torch.cuda.current_stream().wait_stream(stream)
        runner = GraphRunner(TrainStep(wrapped, optimizer, buffers, dtype="bf16"),
                             warmup_steps=11, stream=stream)
        buffers.lr.fill_(0.01)
        for _ in range(20):
            runner(buffers.images, buffers.targets)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(200):
            runner(buffers.images, buffers.targets)
        torch.cuda.synchronize()
        figures[sync] = (time.perf_counter() - start) / 200 * 1e3
        runner.close()
    _destroy_within(torch)
    raise Info(f"resnet20 bf16 batch 512 captured DDP step: {figures[True]:.3f} ms with the "
               f"buffer broadcast, {figures[False]:.3f} ms without (world size 1)")


# The most telling first: a budget that runs out cuts the tail.
CHECKS = {
    "ddp_graph_bf16": lambda: ddp_graph("bf16", False),
    "stop_resume_graph": stop_resume_graph,
    "sync_free_replays": sync_free_replays,
    "drop_path_replays": drop_path_replays,
    "ddp_graph_fp32": lambda: ddp_graph("fp32", False),
    "ddp_graph_bf16_compile": lambda: ddp_graph("bf16", True),
    "ddp_graph_fp32_compile": lambda: ddp_graph("fp32", True),
    "buffer_sync_cost": buffer_sync_cost,
    "triton_device_guard": triton_device_guard,
}


# -- running them ------------------------------------------------------------------------


def run_one(name: str, result_path: Path) -> None:
    """Inside the check's own process: run it, write {status, detail}."""
    try:
        status, detail = "PASS", CHECKS[name]()
    except Skip as exc:
        status, detail = "SKIP", str(exc)
    except Info as exc:
        status, detail = "INFO", str(exc)
    except BaseException as exc:  # a check's failure is a result, not a crash
        status = "FAIL"
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        traceback.print_exc()
    result_path.write_text(json.dumps({"status": status, "detail": detail}))
    sys.stdout.flush()
    os._exit(0)  # no teardown of process groups left behind by a failed check


def run_all(names: list[str], out: Path, budget_s: float) -> int:
    out.mkdir(parents=True, exist_ok=True)
    start, results = time.monotonic(), []
    for name in names:
        left = budget_s - (time.monotonic() - start)
        limit = min(TIMEOUTS[name], left)
        if limit < 10:
            result = {"status": "SKIP", "detail": f"no time left of the {budget_s:.0f} s budget"}
        else:
            result = _run_in_process(name, out, limit)
        results.append({"check": name, **result})
        print(f"{result['status']:4}  {name}: {result['detail']}", flush=True)
    (out / "gpu_checks.json").write_text(json.dumps(
        {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "results": results}, indent=2) + "\n")
    return int(any(r["status"] == "FAIL" for r in results))


def _run_in_process(name: str, out: Path, limit: float) -> dict:
    result_path = out / f"{name}.result.json"
    result_path.unlink(missing_ok=True)
    log = out / f"{name}.log"
    began = time.monotonic()
    with open(log, "w") as log_file:
        process = subprocess.Popen(
            [sys.executable, __file__, "--run", name, "--out", str(out)], cwd=ROOT,
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            return {"status": "FAIL", "detail": f"timed out after {limit:.0f} s (see {log})"}
        finally:  # timed out, or this script was stopped: the check goes too
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    took = time.monotonic() - began
    if not result_path.exists():
        return {"status": "FAIL", "detail": f"exited with {process.returncode} and no result "
                                            f"(see {log})"}
    result = json.loads(result_path.read_text())
    result["detail"] += f" [{took:.0f} s]"
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu-checks"))
    parser.add_argument("--only", nargs="+", choices=sorted(CHECKS), default=None)
    parser.add_argument("--budget-s", type=float, default=600.0)
    parser.add_argument("--run", choices=sorted(CHECKS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    # Stopped from outside (gpu_suite.sh's timeout): unwind, so the running check is killed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.run:
        run_one(args.run, args.out / f"{args.run}.result.json")
    return run_all(args.only or list(CHECKS), args.out, args.budget_s)


if __name__ == "__main__":
    sys.exit(main())
