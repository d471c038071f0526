"""`--recipe airbench94` against the `airbench` package 0.1.8 itself, on the CPU.

airbench's code is run as published; only what ties it to CUDA is patched, while a test
runs: make_net94's `.half().cuda()` (kept float32 on the CPU), train()'s CUDA timing
events and synchronize (host stubs), and the CifarLoader train() builds for its own test
set from ./cifar10 on GPU 0 (built from the test's folder on the CPU). airbench's loaders
take gpu="cpu" as they are; their images are cast to float32 before the first epoch
(airbench keeps them float16, which the float32 net cannot take).
"""
from __future__ import annotations

import contextlib
from importlib import metadata

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fastcifar
from fastcifar.bench.race_data import write_airbench_data
from fastcifar.engine import loop
from fastcifar.engine.build import build_augment
from fastcifar.engine.evaluate import predict
from fastcifar.engine.lookahead import Lookahead
from fastcifar.engine.optim import build_optimizer, epoch_lr_scales
from fastcifar.engine.resolve import resolve_config
from fastcifar.engine.schedule import build_schedule, lr_at
from fastcifar.models import count_params, create_model, init_whitening
from fastcifar.pipelines import create_loader
from tests.cifar_fixtures import make_images
from tests.helpers import normalised, prepare_dataset

airbench = pytest.importorskip("airbench", reason="the reference: pip install airbench==0.1.8 "
                               "(in the dev extra)")
from airbench import lib_airbench94, utils  # noqa: E402

CIFAR_LOADER = utils.CifarLoader  # the class itself (one test patches the module's name)

pytestmark = [pytest.mark.skipif(metadata.version("airbench") != "0.1.8",
                                 reason="parity is with airbench 0.1.8"),
              pytest.mark.usefixtures("one_thread")]  # one torch thread (tests/conftest.py)


@contextlib.contextmanager
def float_on_cpu():
    """make_net94 calls net.half().cuda(): both become no-ops (a float32 CPU net)."""
    half, cuda = nn.Module.half, nn.Module.cuda
    nn.Module.half = lambda self: self
    nn.Module.cuda = lambda self, *args, **kwargs: self
    try:
        yield
    finally:
        nn.Module.half, nn.Module.cuda = half, cuda


def airbench_net(seed: int, **kwargs) -> nn.Sequential:
    torch.manual_seed(seed)
    with float_on_cpu():
        return lib_airbench94.make_net94(**kwargs)


def airbench_loader(folder, **kwargs):
    loader = CIFAR_LOADER(str(folder), gpu="cpu", **kwargs)
    loader.images = loader.images.float()
    return loader


@pytest.fixture(scope="module")
def structured_images():
    """uint8 NHWC images with real spatial structure (distinct patch eigenvalues)."""
    images, labels = make_images(10, 96, seed=5, learnable=True)
    return images, labels


def test_the_network_is_airbench94s():
    reference = airbench_net(0)
    torch.manual_seed(0)
    ours = create_model("airbench94")
    assert count_params(ours) == count_params(reference) == 1_972_792
    ref_state, our_state = reference.state_dict(), ours.state_dict()
    assert [v.shape for v in ref_state.values()] == [v.shape for v in our_state.values()]
    # Built in airbench's order: the same seed draws the same initial weights.
    for ref, mine in zip(ref_state.values(), our_state.values()):
        torch.testing.assert_close(mine, ref, rtol=0, atol=0)
    assert [p.requires_grad for p in reference.parameters()] == \
        [p.requires_grad for p in ours.parameters()]
    ref_norms = [m for m in reference.modules() if isinstance(m, nn.BatchNorm2d)]
    our_norms = [m for m in ours.modules() if isinstance(m, nn.BatchNorm2d)]
    assert [(m.eps, m.momentum) for m in ref_norms] == [(m.eps, m.momentum) for m in our_norms]
    images = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(ours.eval()(images), reference.eval()(images))


def test_whitening_init_equals_airbenchs_on_the_same_images(structured_images):
    images = normalised(structured_images[0])
    reference, ours = airbench_net(0), create_model("airbench94")
    utils.init_whitening_conv(reference[0], images)
    assert init_whitening(ours, images)
    ref, mine = reference[0].weight, ours.whiten.weight
    assert not torch.allclose(mine, create_model("airbench94").whiten.weight)
    # An eigenvector's sign is arbitrary: filter i may be airbench's i or its negation
    # (which airbench keeps too, as filter i + 12).
    for i in range(12):
        sign = 1.0 if (mine[i] - ref[i]).abs().max() < (mine[i] + ref[i]).abs().max() else -1.0
        torch.testing.assert_close(mine[i], sign * ref[i], rtol=0, atol=5e-5)
        torch.testing.assert_close(mine[i + 12], -mine[i], rtol=0, atol=0)


@pytest.mark.parametrize("tta", [0, 1, 2])
def test_tta_logits_equal_airbenchs_for_the_same_weights(tmp_path, structured_images, tta):
    images, labels = structured_images
    write_airbench_data({"train": (images, labels), "test": (images, labels)}, tmp_path)
    loader = airbench_loader(tmp_path, train=False, batch_size=2000)
    reference = airbench_net(1, widths={"block1": 16, "block2": 16, "block3": 16})
    utils.init_whitening_conv(reference[0], loader.normalize(loader.images))
    ours = create_model("airbench94", widths=(16, 16, 16))
    ours.load_state_dict(dict(zip(ours.state_dict(), reference.state_dict().values())))
    expected = utils.infer(reference, loader, tta_level=tta)
    with torch.no_grad():
        logits = predict(ours.eval(), loader.normalize(loader.images), tta=tta)
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)


class _Timer:
    """torch.cuda.Event's part train() uses, on the host."""

    def __init__(self, **kwargs):
        pass

    def record(self):
        pass

    def elapsed_time(self, other):
        return 0.0


def record_airbench_run(monkeypatch, folder, batch_size):
    """Run airbench's train() to the end on a small net; return per step, per group
    (lr, weight_decay, momentum, nesterov), the whitening bias's requires_grad, and the
    lookahead's (steps done, decay) updates."""
    steps, lookahead_updates, nets = [], [], []

    class RecordingSGD(torch.optim.SGD):
        def step(self, closure=None):
            steps.append(([(float(g["lr"]), g["weight_decay"], g["momentum"], g["nesterov"])
                           for g in self.param_groups], nets[0][0].bias.requires_grad))
            return super().step(closure)

    class RecordingLookahead(utils.LookaheadState):
        def update(self, net, decay):
            lookahead_updates.append((len(steps), float(decay)))
            super().update(net, decay)

    def make_net():
        nets.append(airbench_net(2, widths={"block1": 8, "block2": 8, "block3": 8}))
        return nets[-1]

    monkeypatch.setattr(torch.optim, "SGD", RecordingSGD)
    monkeypatch.setattr(utils, "LookaheadState", RecordingLookahead)
    monkeypatch.setattr(torch.cuda, "Event", _Timer)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *args: None)
    monkeypatch.setattr(utils, "CifarLoader",  # train()'s own test loader
                        lambda path, **kwargs: airbench_loader(folder, **kwargs))
    train_loader = airbench_loader(folder, train=True, batch_size=batch_size,
                                   aug=lib_airbench94.hyp["aug"], altflip=True)
    lib_airbench94.train94(train_loader=train_loader, make_net=make_net, verbose=False)
    return steps, lookahead_updates


def test_lr_momentum_wd_per_step_equal_airbenchs_over_a_whole_run(monkeypatch, tmp_path,
                                                                   structured_images):
    images, labels = structured_images
    write_airbench_data({"train": (images[:64], labels[:64]), "test": (images, labels)},
                        tmp_path)
    batch_size = 16
    steps, airbench_lookahead = record_airbench_run(monkeypatch, tmp_path, batch_size)

    config = resolve_config({"model": "airbench94", "dataset": "cifar10",
                             "recipe": "airbench94", "batch_size": batch_size,
                             "device": "cpu", "out": str(tmp_path / "run")})
    steps_per_epoch = 64 // batch_size
    schedule = build_schedule(config, steps_per_epoch)
    model = create_model("airbench94", widths=(8, 8, 8))
    optimizer = build_optimizer(model, config, torch.zeros(()))
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert set(groups) == {"whiten_bias", "bn", "decay"}
    lookahead = Lookahead(model, total_steps=schedule.total_steps,
                          decay=config.lookahead_decay, every=config.lookahead_every)
    lookahead_updates = []
    lookahead.update = lambda decay: lookahead_updates.append((step + 1, decay))

    assert len(steps) == schedule.total_steps == 40  # ceil(4 x 9.9)
    for step, ((bn, other), whiten_bias_trains) in enumerate(steps):
        if step % steps_per_epoch == 0:
            for name, scale in epoch_lr_scales(config, step // steps_per_epoch).items():
                optimizer.set_lr_scale(name, scale)
        lr = lr_at(schedule, step)
        # airbench sums the loss over the batch, fastcifar averages it: the same update
        # takes lr x batch and weight decay / batch (see recipes.py).
        for (air_lr, air_wd, momentum, nesterov), name in ((bn, "bn"), (other, "decay")):
            group = groups[name]
            assert lr * group.get("lr_scale", 1.0) == pytest.approx(air_lr * batch_size,
                                                                      rel=1e-6)
            assert group["weight_decay"] == pytest.approx(air_wd / batch_size, rel=1e-12)
            assert (group["momentum"], group["nesterov"]) == (momentum, nesterov)
        assert groups["whiten_bias"]["lr_scale"] == (1.0 if whiten_bias_trains else 0.0)
        assert groups["whiten_bias"]["weight_decay"] == groups["decay"]["weight_decay"]
        lookahead.maybe_update(step + 1)
    assert [s for s, _ in lookahead_updates] == [s for s, _ in airbench_lookahead]
    for (_, ours), (_, theirs) in zip(lookahead_updates, airbench_lookahead):
        assert ours == pytest.approx(theirs, rel=1e-6)


@pytest.mark.slow
def test_the_trainer_applies_airbenchs_lr_wd_and_lookahead_at_every_step(
        monkeypatch, tmp_path, structured_images):
    """The same comparison through fastcifar's own Trainer: what its SGD hands the fused
    update kernel per group and step, and when its lookahead updates."""
    images, labels = structured_images
    write_airbench_data({"train": (images[:64], labels[:64]), "test": (images, labels)},
                        tmp_path / "airbench")
    batch_size = 16
    steps, airbench_lookahead = record_airbench_run(monkeypatch, tmp_path / "airbench",
                                                    batch_size)
    monkeypatch.undo()

    updates, lookahead_updates, trainer = [], [], []
    fused_sgd = torch._fused_sgd_

    def recording_sgd(params, *args, **kwargs):
        updates.append((len(params), float(kwargs["lr"]), kwargs["weight_decay"],
                        kwargs["momentum"], kwargs["nesterov"]))
        return fused_sgd(params, *args, **kwargs)

    update = Lookahead.update

    def recording_update(self, decay):
        lookahead_updates.append((trainer[0].step, decay))
        return update(self, decay)

    init = loop.Trainer.__init__

    def keep_trainer(self, *args, **kwargs):
        trainer.append(self)
        init(self, *args, **kwargs)

    monkeypatch.setattr(torch, "_fused_sgd_", recording_sgd)
    monkeypatch.setattr(Lookahead, "update", recording_update)
    monkeypatch.setattr(loop.Trainer, "__init__", keep_trainer)
    data_dir = prepare_dataset(tmp_path / "ours", 64, 16, seed=3)
    summary = loop.train(resolve_config({
        "model": "airbench94", "dataset": "cifar10", "recipe": "airbench94",
        "batch_size": batch_size, "device": "cpu", "data_dir": data_dir,
        "out": str(tmp_path / "run"), "progress": False}))
    monkeypatch.undo()

    assert summary["steps"] == len(steps) == 40
    groups = [g["name"] for g in trainer[0].optimizer.param_groups]
    assert groups == ["whiten_bias", "bn", "decay"]
    assert len(updates) == 3 * len(steps)
    for step, ((bn, other), whiten_bias_trains) in enumerate(steps):
        ours = dict(zip(groups, updates[3 * step:3 * step + 3]))
        for (air_lr, air_wd, momentum, nesterov), name in ((bn, "bn"), (other, "decay")):
            _, lr, wd, our_momentum, our_nesterov = ours[name]
            # airbench sums the loss, fastcifar averages it (see recipes.py)
            assert lr == pytest.approx(air_lr * batch_size, rel=1e-6), (step, name)
            assert wd == pytest.approx(air_wd / batch_size, rel=1e-12)
            assert (our_momentum, our_nesterov) == (momentum, nesterov)
        whiten_lr = ours["whiten_bias"][1]
        assert whiten_lr == (ours["decay"][1] if whiten_bias_trains else 0.0), step
    assert [s for s, _ in lookahead_updates] == [s for s, _ in airbench_lookahead]
    for (_, ours), (_, theirs) in zip(lookahead_updates, airbench_lookahead):
        assert ours == pytest.approx(theirs, rel=1e-6)


def shifts_and_flips(outputs: torch.Tensor, sources: torch.Tensor, padding: int = 2):
    """(flip, dy, dx) of each output image: the one candidate it equals exactly, among
    every translation (reflect padding) and mirror of its normalised source image."""
    padded = F.pad(sources, (padding,) * 4, mode="reflect")
    found = torch.full((len(outputs), 3), -99)
    size = sources.shape[-1]
    for dy in range(-padding, padding + 1):
        for dx in range(-padding, padding + 1):
            crop = padded[:, :, padding + dy:padding + dy + size, padding + dx:padding + dx + size]
            for flip, candidate in ((0, crop), (1, crop.flip(3))):
                hit = (candidate == outputs).flatten(1).all(dim=1)
                found[hit] = torch.tensor([flip, dy, dx])
    assert (found[:, 0] >= 0).all(), "an output is no translation or mirror of its source"
    return found


def assert_airbench_distribution(draws: list[torch.Tensor]):
    """Flips: fair coins once per image, inverted every epoch; shifts: uniform over the
    25 translations, drawn anew every epoch."""
    flips = torch.stack([d[:, 0] for d in draws])
    assert (flips[1:] == 1 - flips[:-1]).all()
    assert 0.4 < flips[0].float().mean() < 0.6
    shifts = torch.cat([d[:, 1:] for d in draws])
    counts = torch.bincount((shifts[:, 0] + 2) * 5 + shifts[:, 1] + 2, minlength=25).double()
    expected = len(shifts) / 25
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 51.2  # the 99.9% quantile of chi-square with 24 degrees of freedom
    assert not torch.equal(draws[0][:, 1:], draws[2][:, 1:])


@pytest.mark.slow
def test_alternating_flip_and_translate_equal_airbenchs_in_distribution(tmp_path):
    data_dir = prepare_dataset(tmp_path, 256, 16, seed=9)
    images, labels = fastcifar.load("cifar10", "train", data_dir)
    write_airbench_data({"train": (images, labels), "test": (images[:16], labels[:16])},
                        tmp_path / "airbench")
    epochs = 4

    reference = airbench_loader(tmp_path / "airbench", train=True, batch_size=256,
                                aug={"flip": True, "translate": 2}, altflip=True,
                                shuffle=False)
    sources = reference.normalize(reference.images)
    torch.manual_seed(0)
    airbench_draws = [shifts_and_flips(next(iter(reference))[0], sources)
                      for _ in range(epochs)]

    config = resolve_config({"model": "airbench94", "dataset": "cifar10",
                             "recipe": "airbench94", "device": "cpu", "out": str(tmp_path)})
    augment = build_augment(config)  # the recipe's: translate 2 reflect, alternating flip
    # impl auto: the numba op, what the recipe runs on the CPU
    ours = create_loader("native", "cifar10", "train", batch_size=256, train=True,
                         augment=augment, data_dir=data_dir, seed=0)
    our_draws = []
    for epoch in range(epochs):
        ours.set_epoch(epoch)
        order = ours.epoch_indices()
        output = torch.empty(256, 3, 32, 32)
        output[order] = next(iter(ours))[0]  # back into dataset order
        our_draws.append(shifts_and_flips(output, normalised(images)))

    assert_airbench_distribution(airbench_draws)
    assert_airbench_distribution(our_draws)
    assert not torch.equal(our_draws[0][:, 0], airbench_draws[0][:, 0])  # own draws
