"""The captured step on a GPU (skipped without CUDA): replay equals eager, the lr tensor
written between replays changes the update, metrics accumulate across replays, and a
full CUDA run (graph + bf16 + native loader) trains."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fastcifar.engine.optim import SGD
from fastcifar.engine.step import SEEN, EagerRunner, GraphRunner, StepBuffers, TrainStep

pytestmark = pytest.mark.cuda


@pytest.fixture(autouse=True)
def deterministic_kernels():
    benchmark, deterministic = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    yield
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = benchmark, deterministic


def net(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
    )
    return model.cuda().to(memory_format=torch.channels_last)


def batches(count, b=16, soft=False):
    g = torch.Generator(device="cuda").manual_seed(1)
    out = []
    for _ in range(count):
        x = torch.randn(b, 3, 32, 32, device="cuda", generator=g)
        y = torch.randint(0, 10, (b,), device="cuda", generator=g)
        if soft:
            y = F.one_hot(y, 10).float() * 0.9 + 0.01
        out.append((x.contiguous(memory_format=torch.channels_last), y))
    return out


def build(runner_cls, dtype="fp32", soft=False, **runner_options):
    model = net()
    lr = torch.zeros((), dtype=torch.float32, device="cuda")
    buffers = StepBuffers.allocate(16, 10, soft_targets=soft, lr=lr)
    opt = SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    step = TrainStep(model, opt, buffers, label_smoothing=0.1, dtype=dtype)
    return model, buffers, runner_cls(step, **runner_options)


@pytest.mark.parametrize("dtype, soft", [("fp32", False), ("bf16", False), ("bf16", True)])
def test_replayed_step_equals_eager_step(dtype, soft):
    data = batches(10, soft=soft)
    lrs = [0.05 * (i + 1) for i in range(10)]  # changes every step, captured or not
    results = []
    for runner_cls, options in ((EagerRunner, {}), (GraphRunner, {"warmup_steps": 3})):
        model, buffers, runner = build(runner_cls, dtype=dtype, soft=soft, **options)
        for (x, y), lr in zip(data, lrs):
            buffers.lr.fill_(lr)
            runner(x, y)
        torch.cuda.synchronize()
        results.append((model, buffers.metrics.clone(), runner))
    (eager, eager_metrics, _), (graphed, graph_metrics, runner) = results
    assert runner.captured
    for a, b in zip(eager.state_dict().values(), graphed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(eager_metrics, graph_metrics, rtol=1e-5, atol=1e-5)
    assert graph_metrics[SEEN].item() == 10 * 16


def test_lr_written_between_replays_changes_the_update():
    """SGD without momentum or decay: each replay moves p by exactly -lr * grad, for the
    lr in the tensor at replay time (not the value at capture)."""
    model = net()
    lr = torch.zeros((), dtype=torch.float32, device="cuda")
    buffers = StepBuffers.allocate(16, 10, soft_targets=False, lr=lr)
    opt = SGD(model.parameters(), lr=lr, momentum=0.0)
    runner = GraphRunner(TrainStep(model, opt, buffers), warmup_steps=2)
    data = batches(6)
    for x, y in data[:3]:  # 2 eager warm-up steps, then capture + replay
        runner(x, y)
    assert runner.captured
    weight = model[-1].weight
    for value, (x, y) in zip((0.0, 0.1, 0.3), data[3:]):
        before = weight.detach().clone()
        lr.fill_(value)
        runner(x, y)
        torch.cuda.synchronize()
        torch.testing.assert_close(weight.detach(), before - value * weight.grad, rtol=0, atol=1e-6)
        if value:
            assert not torch.equal(weight.detach(), before)


def test_cuda_training_run_with_graph(tmp_path):
    from fastcifar.engine import loop
    from fastcifar.engine.resolve import resolve_config
    from tests.helpers import prepare_dataset

    data_dir = prepare_dataset(tmp_path, 1000, 250, seed=3)
    config = resolve_config(dict(model="resnet20", dataset="cifar10", data_dir=data_dir,
                                 out=str(tmp_path / "run"), epochs=4, batch_size=32, base_lr=0.1,
                                 schedule="linear", warmup_epochs=0.3, nesterov=True,
                                 ema=True, ema_decay=0.9, tta=True, progress=False))
    assert config.device == "cuda" and config.graph and config.dtype == "bf16"
    summary = loop.train(config)
    assert summary["test_acc"] >= 0.9
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert all(r["images_per_sec"] > 0 for r in records)


def test_compiled_model_under_capture_matches_eager():
    data = batches(8)
    results = []
    for compiled in (False, True):
        model = net()
        lr = torch.zeros((), dtype=torch.float32, device="cuda")
        buffers = StepBuffers.allocate(16, 10, soft_targets=False, lr=lr)
        opt = SGD(model.parameters(), lr=lr, momentum=0.9)
        call = torch.compile(model) if compiled else model
        runner = GraphRunner(TrainStep(call, opt, buffers, dtype="bf16"), warmup_steps=3)
        for i, (x, y) in enumerate(data):
            lr.fill_(0.1 / (i + 1))
            runner(x, y)
        torch.cuda.synchronize()
        results.append(model)
    for a, b in zip(results[0].parameters(), results[1].parameters()):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-3)


def test_fp16_with_grad_scaler_runs_eagerly():
    model = net()
    lr = torch.full((), 0.1, dtype=torch.float32, device="cuda")
    buffers = StepBuffers.allocate(16, 10, soft_targets=False, lr=lr, dtype=torch.float16)
    opt = SGD(model.parameters(), lr=lr, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda")
    step = TrainStep(model, opt, buffers, dtype="fp16", grad_scaler=scaler)
    with pytest.raises(ValueError, match="GradScaler"):
        GraphRunner(step)
    runner = EagerRunner(step)
    before = [p.detach().clone() for p in model.parameters()]
    for x, y in batches(3):
        runner(x.half(), y)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
