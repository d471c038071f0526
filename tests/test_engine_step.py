"""The train step over static buffers, the device-lr SGD, the loss and EMA (CPU).

These prove the buffer protocol a CUDA graph relies on: the step reads only its buffers,
an lr written into the lr tensor between steps changes the next update, metrics
accumulate on the device. tests/test_engine_cuda.py proves the capture itself.
"""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fastcifar.engine.ema import EMA
from fastcifar.engine.evaluate import evaluate, predict
from fastcifar.engine.optim import SGD
from fastcifar.engine.step import (
    CORRECT,
    LOSS_SUM,
    SEEN,
    EagerRunner,
    StepBuffers,
    TrainStep,
    count_correct,
    cross_entropy,
)


def tiny_net(num_classes=4, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, num_classes),
    )


def batch(seed, b=8, num_classes=4, soft=False):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(b, 3, 32, 32, generator=g)
    labels = torch.randint(0, num_classes, (b,), generator=g)
    if soft:
        return images, torch.softmax(torch.randn(b, num_classes, generator=g), dim=1)
    return images, labels


def lr_tensor(value=0.0):
    return torch.tensor(value, dtype=torch.float32)


# -- optimizer ---------------------------------------------------------------------


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_matches_torch_sgd_with_changing_lr(nesterov):
    """Same trajectory as torch.optim.SGD (the reference) while the lr changes every step,
    with a decay and a no-decay group."""
    ours_net, ref_net = tiny_net(), tiny_net()
    lr = lr_tensor()
    groups = lambda net: [  # noqa: E731
        {"params": [p for p in net.parameters() if p.ndim > 1], "weight_decay": 5e-4},
        {"params": [p for p in net.parameters() if p.ndim <= 1], "weight_decay": 0.0},
    ]
    ours = SGD(groups(ours_net), lr=lr, momentum=0.9, nesterov=nesterov)
    ref = torch.optim.SGD(groups(ref_net), lr=0.1, momentum=0.9, nesterov=nesterov, foreach=False)
    for step, value in enumerate([0.1, 0.05, 0.3, 0.0, 0.02]):
        images, labels = batch(step)
        lr.fill_(value)
        for group in ref.param_groups:
            group["lr"] = value
        for net, opt in ((ours_net, ours), (ref_net, ref)):
            opt.zero_grad()
            F.cross_entropy(net(images), labels).backward()
            opt.step()
        for a, b in zip(ours_net.parameters(), ref_net.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_lr_tensor_change_between_steps_takes_effect_exactly():
    """Plain SGD: p1 = p0 - lr0 * g0, p2 = p1 - lr1 * g1 with the lr read from the tensor."""
    w = nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    lr = lr_tensor(0.5)
    opt = SGD([w], lr=lr, momentum=0.0)
    w.grad = torch.tensor([1.0, 1.0, 1.0])
    opt.step()
    assert w.tolist() == [0.5, -2.5, 2.5]
    lr.fill_(0.25)  # between steps, as the loop does before each replay
    w.grad = torch.tensor([2.0, 0.0, -4.0])
    opt.step()
    assert w.tolist() == [0.0, -2.5, 3.5]


def test_sgd_momentum_state_exists_before_the_first_step_and_survives_load():
    net = tiny_net()
    lr = lr_tensor(0.1)
    opt = SGD(net.parameters(), lr=lr, momentum=0.9)
    buffers = [opt.state[p]["momentum_buffer"] for p in net.parameters()]
    assert all(b.abs().sum() == 0 for b in buffers)
    images, labels = batch(0)
    F.cross_entropy(net(images), labels).backward()
    opt.step()
    saved = copy.deepcopy(opt.state_dict())
    addresses = [b.data_ptr() for b in buffers]
    for b in buffers:
        b.zero_()
    opt.load_state_dict(saved)
    assert [opt.state[p]["momentum_buffer"].data_ptr() for p in net.parameters()] == addresses
    assert opt.lr is lr
    for index, b in enumerate(buffers):
        torch.testing.assert_close(b, saved["state"][index]["momentum_buffer"])
        assert b.abs().sum() > 0


def test_sgd_rejects_a_float_lr():
    with pytest.raises(ValueError):
        SGD(tiny_net().parameters(), lr=0.1)


# -- loss and accuracy ---------------------------------------------------------------


def test_soft_target_loss_is_the_hand_computed_cross_entropy():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    targets = torch.tensor([[0.7, 0.2, 0.1], [0.0, 0.5, 0.5]])
    expected = 0.0
    for z, t in zip(logits.tolist(), targets.tolist()):
        log_norm = math.log(sum(math.exp(v) for v in z))
        expected += -sum(ti * (zi - log_norm) for zi, ti in zip(z, t))
    expected /= 2
    # label_smoothing is ignored for soft targets: the loader already smoothed them
    smoothed = cross_entropy(logits, targets, label_smoothing=0.3).item()
    assert smoothed == pytest.approx(expected, rel=1e-6)


def test_label_smoothing_applies_to_class_indices():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    eps = 0.1
    log_p = torch.log_softmax(logits, 1)[0].tolist()
    smoothed = [eps / 3 + (1 - eps) * (i == 0) for i in range(3)]
    expected = -sum(t * lp for t, lp in zip(smoothed, log_p))
    assert cross_entropy(logits, torch.tensor([0]), eps).item() == pytest.approx(expected, rel=1e-6)


def test_count_correct_uses_argmax_of_soft_targets():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    assert count_correct(logits, torch.tensor([0, 1, 1])).item() == 2
    soft = torch.tensor([[0.6, 0.4], [0.3, 0.7], [0.45, 0.55]])
    assert count_correct(logits, soft).item() == 2


# -- the step over static buffers ------------------------------------------------------


def make_step(net, lr, images, targets, label_smoothing=0.0):
    buffers = StepBuffers.like(images, targets, lr)
    opt = SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    return TrainStep(net, opt, buffers, label_smoothing=label_smoothing), buffers


def test_step_equals_a_plain_training_loop_and_accumulates_metrics():
    net, ref_net = tiny_net(), tiny_net()
    lr = lr_tensor()
    first = batch(0)
    step, buffers = make_step(net, lr, *first, label_smoothing=0.1)
    runner = EagerRunner(step)
    ref_opt = torch.optim.SGD(ref_net.parameters(), lr=0.0, momentum=0.9, weight_decay=5e-4,
                              foreach=False)
    loss_sum = correct = 0.0
    schedule = [0.2, 0.1, 0.05]
    for i, value in enumerate(schedule):
        images, labels = batch(i)
        lr.fill_(value)
        runner(images, labels)
        ref_opt.param_groups[0]["lr"] = value
        ref_opt.zero_grad()
        logits = ref_net(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=0.1)
        loss.backward()
        ref_opt.step()
        loss_sum += loss.item() * len(labels)
        correct += (logits.argmax(1) == labels).sum().item()
    for a, b in zip(net.parameters(), ref_net.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(net.buffers(), ref_net.buffers()):  # BN running statistics too
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    metrics = buffers.metrics.tolist()
    assert metrics[SEEN] == 3 * 8
    assert metrics[CORRECT] == correct
    assert metrics[LOSS_SUM] == pytest.approx(loss_sum, rel=1e-5)
    buffers.reset_metrics()
    assert buffers.metrics.tolist() == [0.0, 0.0, 0.0]


def test_step_reads_only_its_buffers():
    """The step is a function of its buffers: what the runner copied in is what trains,
    and a loader that writes straight into the buffers skips the copy."""
    net = tiny_net()
    lr = lr_tensor(0.1)
    images, labels = batch(3)
    step, buffers = make_step(net, lr, images, labels)
    addresses = (buffers.images.data_ptr(), buffers.targets.data_ptr())
    EagerRunner(step)(images, labels)
    assert torch.equal(buffers.images, images) and torch.equal(buffers.targets, labels)
    assert (buffers.images.data_ptr(), buffers.targets.data_ptr()) == addresses

    # A loader writing into the static buffers: same tensors, no copy, still trains.
    other_images, other_labels = batch(4)
    buffers.images.copy_(other_images)
    buffers.targets.copy_(other_labels)
    before = [p.clone() for p in net.parameters()]
    EagerRunner(step)(buffers.images, buffers.targets)
    assert torch.equal(buffers.images, other_images)
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_zero_lr_leaves_weights_unchanged_but_updates_bn_statistics():
    net = tiny_net()
    lr = lr_tensor(0.0)
    step, buffers = make_step(net, lr, *batch(0))
    weights = [p.clone() for p in net.parameters()]
    stats = [b.clone() for b in net.buffers()]
    EagerRunner(step)(*batch(0))
    assert all(torch.equal(a, b) for a, b in zip(weights, net.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(stats, net.buffers()))


def test_step_with_soft_targets():
    net = tiny_net()
    lr = lr_tensor(0.1)
    images, soft = batch(0, soft=True)
    step, buffers = make_step(net, lr, images, soft)
    with torch.no_grad():
        expected = cross_entropy(net(images), soft).item()  # BN in train mode, as the step
    EagerRunner(step)(images, soft)
    assert buffers.metrics[LOSS_SUM].item() / 8 == pytest.approx(expected, rel=1e-5)


def test_buffers_refuse_a_batch_of_another_shape():
    lr = lr_tensor()
    buffers = StepBuffers.allocate(8, 4, soft_targets=False, lr=lr)
    assert buffers.images.shape == (8, 3, 32, 32) and buffers.targets.dtype == torch.int64
    images, labels = batch(0, b=5)
    with pytest.raises(ValueError, match="drop the last partial batch"):
        buffers.load(images, labels)
    soft = StepBuffers.allocate(8, 4, soft_targets=True, lr=lr, channels_last=True)
    assert soft.targets.shape == (8, 4) and soft.targets.dtype == torch.float32
    assert soft.images.is_contiguous(memory_format=torch.channels_last)


# -- EMA and evaluation ----------------------------------------------------------------


@pytest.mark.parametrize("warmup", [False, True])
def test_ema_follows_the_formula(warmup):
    net = tiny_net()
    ema = EMA(net, decay=0.99, every=2, warmup=warmup)
    for n in range(3):
        start = [p.clone() for p in ema.model.parameters()]
        with torch.no_grad():
            for p in net.parameters():
                p.add_(1.0)
        ema.maybe_update(2 * n)  # not an update step (every=2)
        assert all(torch.equal(a, b) for a, b in zip(start, ema.model.parameters()))
        ema.maybe_update(2 * n + 1)
        decay = min(0.99**2, (1 + n) / (10 + n)) if warmup else 0.99**2
        for s, p, e in zip(start, net.parameters(), ema.model.parameters()):
            torch.testing.assert_close(e, s + (1 - decay) * (p - s))
    assert not any(p.requires_grad for p in ema.model.parameters())
    restored = EMA(tiny_net(seed=1), decay=0.99, every=2, warmup=warmup)
    restored.load_state_dict(ema.state_dict())
    assert restored.updates == 3 and restored.current_decay() == ema.current_decay()


def test_evaluate_counts_a_partial_batch_and_tta_averages_logits():
    net = tiny_net().eval()
    data = [batch(0, b=8), batch(1, b=3)]
    metrics = evaluate(net, data, device="cpu").tolist()
    assert metrics[SEEN] == 11
    with torch.no_grad():
        logits = torch.cat([net(x) for x, _ in data])
        labels = torch.cat([y for _, y in data])
        flipped = predict(net, data[0][0], tta=True)
        torch.testing.assert_close(flipped, 0.5 * (net(data[0][0]) + net(data[0][0].flip(3))))
    assert metrics[CORRECT] == (logits.argmax(1) == labels).sum().item()
    loss_sum = F.cross_entropy(logits, labels, reduction="sum").item()
    assert metrics[LOSS_SUM] == pytest.approx(loss_sum, rel=1e-5)
    assert not net.training
