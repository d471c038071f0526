"""The step profile (fastcifar.bench.profile): kernels grouped by layer kind, with FLOPs."""
import pytest
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from fastcifar.bench.profile import (
    conv_forward_flops,
    conv_kind,
    format_markdown,
    group_by_kind,
    profile_step,
)
from fastcifar.models import model_info


def test_conv_kinds_and_flops():
    assert conv_kind([128, 4, 3, 3], 128) == "conv 3x3 grouped"
    assert conv_kind([64, 64, 3, 3], 64) == "conv 3x3"
    assert conv_kind([256, 64, 1, 1], 64) == "conv 1x1"
    # 2 x N x Cout x Hout x Wout x Cin/g x k x k, stride 2 halves the output
    assert conv_forward_flops([2, 8, 16, 16], [8, 2, 3, 3], [2, 2], [1, 1], [1, 1]) == \
        2 * 2 * 8 * 8 * 8 * 2 * 9


def test_a_small_net_is_split_by_kind_with_its_flops():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, groups=4), nn.BatchNorm2d(16),
                        nn.ReLU(), nn.Conv2d(16, 8, 1))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.randn(4, 8, 8, 8)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(2):
            net(x).square().mean().backward()
            optimizer.step()
    kinds = group_by_kind(prof.events(), "cpu", steps=2)
    grouped = 2 * 4 * 16 * 8 * 8 * 2 * 9  # per step
    pointwise = 2 * 4 * 8 * 8 * 8 * 16
    assert kinds["conv 3x3 grouped fwd"].flops == grouped
    assert kinds["conv 1x1 fwd"].flops == pointwise
    # the input needs no gradient: the first conv's backward is wgrad alone
    assert kinds["conv 3x3 grouped bwd"].flops == grouped
    assert kinds["conv 1x1 bwd"].flops == 2 * pointwise
    assert kinds["conv 1x1 fwd"].calls == 1 and kinds["batchnorm"].calls == 2  # fwd + bwd
    assert {"batchnorm", "activation/add/pool", "optimizer"} <= set(kinds)
    assert all(k.seconds > 0 for k in kinds.values())


@pytest.mark.slow
def test_profile_step_of_a_registry_model_on_the_cpu():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report = profile_step("resnext29_2x64d", device="cpu", batch_size=2, steps=1, warmup=1)
    finally:
        torch.set_num_threads(threads)
    rows = {row["kind"]: row for row in report["rows"]}
    forward = sum(r.get("gflop_per_step", 0) for k, r in rows.items() if k.endswith(" fwd"))
    # forward convolutions are the model's FLOPs but for the classifier's matmul
    assert forward == pytest.approx(2 * model_info("resnext29_2x64d")["gflops"], rel=0.01)
    assert "conv 3x3 grouped fwd" in rows and rows["conv 3x3 grouped fwd"]["tflops"] > 0
    assert sum(r["share"] for r in rows.values()) == pytest.approx(1.0)
    assert "| conv 3x3 grouped fwd |" in format_markdown(report)
