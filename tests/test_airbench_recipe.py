"""The airbench94 recipe's pieces in fastcifar (CPU): triangle schedule, per-group lr
scale, decoupled lr/wd, lookahead, whitening init hook, alternating flip sampler, TTA
level 2, the config migration and a whole run with resume. Parity with the airbench
package itself: tests/test_airbench_parity.py."""
from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

import fastcifar
from fastcifar.augment import AugmentConfig
from fastcifar.cli import main
from fastcifar.engine import loop
from fastcifar.engine.build import build_augment, init_from_data
from fastcifar.engine.checkpoint import load_checkpoint
from fastcifar.engine.config import TrainConfig
from fastcifar.engine.evaluate import predict
from fastcifar.engine.lookahead import Lookahead
from fastcifar.engine.migrate import migrate_checkpoint, migrate_config
from fastcifar.engine.optim import SGD, build_param_groups
from fastcifar.engine.resolve import resolve_config
from fastcifar.engine.schedule import Schedule, lr_at
from fastcifar.errors import UserError
from fastcifar.models import create_model
from fastcifar.pipelines import create_loader
from fastcifar.pipelines.base import epoch_batch_params, make_spec
from tests.helpers import crash_after_save, prepare_dataset

# one torch thread: see tests/conftest.py one_thread
pytestmark = pytest.mark.usefixtures("one_thread")


def airbench_config(tmp_path, **options):
    return resolve_config({"model": "airbench94", "dataset": "cifar10", "recipe": "airbench94",
                           "device": "cpu", "out": str(tmp_path / "run"), **options})


# -- recipe and schedule ------------------------------------------------------------


def test_the_recipe_is_airbenchs_hyperparameters_in_fastcifars_terms(tmp_path):
    config = airbench_config(tmp_path)
    assert (config.epochs, config.batch_size, config.schedule, config.triangle) == \
        (9.9, 1024, "triangle", (0.2, 0.23, 0.07))
    # 11.5 per 1024 examples at momentum 0.85 -> 1.5 on a mean loss; wd 0.0153 / 11.5
    assert config.peak_lr == pytest.approx(1.5)
    assert config.weight_decay == pytest.approx(0.0153 / 11.5)
    assert (config.momentum, config.nesterov, config.bn_lr_scale) == (0.85, True, 64.0)
    assert (config.label_smoothing, config.lookahead, config.tta, config.ema) == \
        (0.2, True, 2, False)
    assert (config.crop_padding, config.pad_mode, config.flip_mode) == (2, "reflect",
                                                                       "alternating")
    assert config.whiten_bias_epochs == 3
    assert airbench_config(tmp_path, batch_size=512).peak_lr == pytest.approx(0.75)
    assert TrainConfig.from_json(json.loads(json.dumps(config.to_json()))) == config


def test_triangle_runs_through_start_peak_and_end():
    schedule = Schedule(kind="triangle", peak_lr=2.0, total_steps=100,
                        triangle=(0.2, 0.25, 0.1))
    values = [lr_at(schedule, s) for s in range(100)]
    assert values[0] == pytest.approx(0.4)
    assert values[25] == pytest.approx(2.0) and max(values) == values[25]
    assert values[10] == pytest.approx(0.4 + 1.6 * 10 / 25)
    assert values[99] == pytest.approx(2.0 + (0.2 - 2.0) * 74 / 75)  # step 100 would be 0.2


@pytest.mark.parametrize("options, message", [
    ({"warmup_epochs": 1.0}, "triangle schedule rises on its own"),
    ({"tta": 3}, "--tta must be"),
    ({"backend": "torchvision"}, "alternating flip.*native backend only"),
    ({"epochs": 0}, "--epochs must be a positive"),
])
def test_bad_airbench_options_are_one_line(tmp_path, options, message):
    with pytest.raises(UserError, match=message):
        airbench_config(tmp_path, **options)


def test_cli_takes_fractional_epochs_and_a_tta_level(monkeypatch):
    seen = []
    monkeypatch.setattr("fastcifar.engine.loop.train", seen.append)
    base = ["train", "--model", "airbench94", "--dataset", "cifar10", "--device", "cpu",
            "--recipe", "airbench94"]
    for extra, tta in ((["--tta"], 1), (["--tta", "0"], 0), ([], 2)):
        result = CliRunner().invoke(main, [*base, "--epochs", "4.5", *extra])
        assert result.exit_code == 0, result.output
        assert (seen[-1].tta, seen[-1].epochs) == (tta, 4.5)


# -- optimizer ------------------------------------------------------------------------


def test_a_group_lr_scale_multiplies_the_lr_and_zero_freezes_exactly():
    torch.manual_seed(0)
    scaled, plain = nn.Parameter(torch.randn(5)), nn.Parameter(torch.randn(5))
    lr = torch.tensor(0.1)
    opt = SGD([{"params": [scaled], "name": "bn", "lr_scale": 4.0, "weight_decay": 0.01},
               {"params": [plain], "weight_decay": 0.01}], lr=lr, momentum=0.9, nesterov=True)
    ref_scaled, ref_plain = (nn.Parameter(p.detach().clone()) for p in (scaled, plain))
    reference = torch.optim.SGD([{"params": [ref_scaled], "lr": 0.4},
                                 {"params": [ref_plain], "lr": 0.1}], lr=0.1, momentum=0.9,
                                nesterov=True, weight_decay=0.01)
    for _ in range(3):
        grads = torch.randn(2, 5)
        for p, g in zip((scaled, plain, ref_scaled, ref_plain), (*grads, *grads)):
            p.grad = g.clone()
        opt.step()
        reference.step()
    torch.testing.assert_close(scaled.detach(), ref_scaled.detach())
    torch.testing.assert_close(plain.detach(), ref_plain.detach())

    assert opt.set_lr_scale("bn", 0.0) and not opt.set_lr_scale("absent", 1.0)
    frozen = scaled.detach().clone()
    scaled.grad = torch.randn(5)
    opt.step()
    assert torch.equal(scaled.detach(), frozen)


def test_lr_scales_survive_load_state_dict_at_their_addresses():
    param = nn.Parameter(torch.ones(3))
    opt = SGD([{"params": [param], "name": "whiten_bias", "lr_scale": 1.0}], lr=torch.tensor(1.0))
    scale = opt._scaled_lrs[0][0]
    opt.set_lr_scale("whiten_bias", 0.0)
    saved = copy.deepcopy(opt.state_dict())
    opt.set_lr_scale("whiten_bias", 1.0)
    opt.load_state_dict(saved)
    assert opt._scaled_lrs[0][0] is scale and scale.item() == 0.0
    older = copy.deepcopy(saved)  # a checkpoint written before groups had names and scales
    for group in older["param_groups"]:
        del group["name"], group["lr_scale"]
    opt.load_state_dict(older)
    assert opt.set_lr_scale("whiten_bias", 0.5) and scale.item() == 0.5


def test_airbenchs_summed_loss_update_is_fastcifars_mean_loss_update_scaled():
    """torch SGD on the summed loss with (lr, wd) moves the weights as fastcifar's SGD on
    the mean loss with (lr x batch, wd / batch): the recipe's translation."""
    torch.manual_seed(0)
    net = nn.Linear(6, 3)
    ours, theirs = copy.deepcopy(net), copy.deepcopy(net)
    batch, lr, wd = 8, 0.01, 0.2
    reference = torch.optim.SGD(theirs.parameters(), lr=lr, momentum=0.85, nesterov=True,
                                weight_decay=wd)
    opt = SGD(ours.parameters(), lr=torch.tensor(lr * batch), momentum=0.85, nesterov=True,
              weight_decay=wd / batch)
    for _ in range(5):
        x, y = torch.randn(batch, 6), torch.randint(0, 3, (batch,))
        for model, optimizer, reduction in ((theirs, reference, "sum"), (ours, opt, "mean")):
            optimizer.zero_grad()
            F.cross_entropy(model(x), y, reduction=reduction).backward()
            optimizer.step()
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_param_groups_of_the_recipe_and_of_older_runs(tmp_path):
    model = create_model("airbench94")
    groups = {g["name"]: g for g in build_param_groups(model, airbench_config(tmp_path))}
    assert groups["whiten_bias"]["params"] == [model.whiten.bias]
    norms = [m.bias for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert groups["bn"]["params"] == norms and groups["bn"]["lr_scale"] == 64.0
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert sum(len(g["params"]) for g in groups.values()) == len(trainable)
    assert model.whiten.weight.requires_grad is False
    # Without the new fields: the groups runs had before (one decay group).
    plain = resolve_config({"model": "resnet20", "dataset": "cifar10", "device": "cpu",
                            "out": str(tmp_path)})
    assert [(g["name"], "lr_scale" in g) for g in build_param_groups(create_model("resnet20"),
                                                                      plain)] == [("decay", False)]


# -- lookahead --------------------------------------------------------------------------


def test_lookahead_pulls_the_model_back_to_its_slow_copy():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    start = copy.deepcopy(model.state_dict())
    lookahead = Lookahead(model, total_steps=10, decay=0.5, every=5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    lookahead.maybe_update(4)  # not an update step
    assert torch.equal(model[0].weight, start["0.weight"] + 1)
    lookahead.maybe_update(5)
    d = 0.5 ** 5 * (5 / 10) ** 3
    expected = d * start["0.weight"] + (1 - d) * (start["0.weight"] + 1)
    torch.testing.assert_close(model[0].weight.detach(), expected)
    torch.testing.assert_close(lookahead.state_dict()["0.weight"], expected)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    lookahead.maybe_update(10)  # d = 0.5 ** 5, then the final copy
    final = lookahead.state_dict()["0.weight"].clone()
    assert torch.equal(model[0].weight, final)
    assert model[1].num_batches_tracked.dtype == torch.int64  # integer buffers left alone
    restored = Lookahead(copy.deepcopy(model), total_steps=10)
    restored.load_state_dict(lookahead.state_dict())
    assert torch.equal(restored.state_dict()["0.weight"], final)


# -- alternating flip -------------------------------------------------------------------


def test_alternating_flips_belong_to_the_image_not_its_batch_position():
    augment = AugmentConfig.for_dataset("cifar10", alternating_flip=True)
    spec = lambda rank: make_spec(  # noqa: E731
        "cifar10", "train", batch_size=4, train=True, augment=augment, device="cpu",
        dtype=torch.float32, data_dir=None, seed=3, rank=rank, world_size=2, num_workers=0,
        drop_last=True)

    def flips(rank, epoch, indices):
        params = epoch_batch_params(spec(rank), [4, 4], epoch, indices=indices, num_samples=20)
        return torch.cat([p.flip for p in params])

    order = torch.arange(8)
    base = flips(0, 0, order)
    assert 0 < base.sum() < 8
    assert torch.equal(flips(0, 1, order), 1 - base) and torch.equal(flips(0, 2, order), base)
    reversed_order = order.flip(0)  # the same images elsewhere in the epoch, on another rank
    assert torch.equal(flips(1, 0, reversed_order), base.flip(0))
    with pytest.raises(ValueError, match="indices"):
        list(epoch_batch_params(spec(0), [4], 0))


def test_backends_without_per_sample_flips_refuse_alternating_flip(tmp_path):
    augment = AugmentConfig.for_dataset("cifar10", alternating_flip=True)
    with pytest.raises(UserError, match="native backend only, not torchvision"):
        create_loader("torchvision", "cifar10", "train", batch_size=8, train=True,
                      augment=augment, data_dir=tmp_path)
    with pytest.raises(UserError, match="alternating_flip needs flip"):
        AugmentConfig.for_dataset("cifar10", alternating_flip=True, flip=False)


# -- evaluation -------------------------------------------------------------------------


def test_tta_level_2_averages_mirror_and_one_pixel_translations():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.LazyLinear(4)).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        mirror = lambda x: 0.5 * (net(x) + net(x.flip(3)))  # noqa: E731
        up_left = torch.cat([images[:, :, 1:2], images[:, :, :31]], dim=2)
        up_left = torch.cat([up_left[:, :, :, 1:2], up_left[:, :, :, :31]], dim=3)
        down_right = torch.cat([images[:, :, 1:], images[:, :, 30:31]], dim=2)
        down_right = torch.cat([down_right[:, :, :, 1:], down_right[:, :, :, 30:31]], dim=3)
        expected = 0.5 * mirror(images) + 0.25 * (mirror(up_left) + mirror(down_right))
        torch.testing.assert_close(predict(net, images, tta=2), expected)
        torch.testing.assert_close(predict(net, images, tta=1), mirror(images))
        with pytest.raises(ValueError, match="tta"):
            predict(net, images, tta=3)


# -- migration --------------------------------------------------------------------------


def test_schema_1_configs_migrate_to_what_they_ran():
    saved = {"schema_version": 1, "model": "airbench94", "tta": True, "epochs": 16}
    migrated = migrate_config(saved)
    assert migrated["model"] == "airbench94_v0" and migrated["tta"] == 1
    assert (migrated["bn_lr_scale"], migrated["whiten_bias_epochs"], migrated["lookahead"]) == \
        (1.0, None, False)
    assert (migrated["crop_padding"], migrated["pad_mode"], migrated["flip_mode"]) == \
        (4, "zero", "random")
    assert migrate_config({"schema_version": 1, "model": "resnet20", "tta": False})["tta"] == 0
    assert migrate_checkpoint({"format": 2, "config_schema": 1}, "x.pt")["lookahead"] is None
    create_model("airbench94_v0")  # the old net is still there to resume with


# -- a whole run --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def airbench_data(tmp_path_factory):
    return prepare_dataset(tmp_path_factory.mktemp("airbench"), 16, 8, seed=4)


@pytest.mark.slow
def test_a_recipe_run_trains_whitens_freezes_and_resumes_exactly(airbench_data, tmp_path,
                                                                 monkeypatch):
    """9.9 epochs of 4 steps (batch 4): 40 steps, 10 epochs, the last one cut to 3 steps;
    the whitening stem set from the data; its bias frozen from epoch 4 on; the lookahead's
    final copy; and a run stopped after epoch 4 resumes to the same weights."""
    options = dict(batch_size=4, data_dir=airbench_data, eval_batch_size=8, progress=False)
    config = airbench_config(tmp_path / "whole", **options)
    lr_scales = []
    epoch_start = loop.Trainer._train_epoch

    def record_scales(self, *args):
        record = epoch_start(self, *args)
        lr_scales.append({g["name"]: g.get("lr_scale") for g in self.optimizer.param_groups})
        return record

    monkeypatch.setattr(loop.Trainer, "_train_epoch", record_scales)
    whole = loop.train(config)
    monkeypatch.setattr(loop.Trainer, "_train_epoch", epoch_start)
    assert (whole["steps"], whole["epochs"]) == (40, 10) and whole["init_seconds"] > 0
    assert [s["whiten_bias"] for s in lr_scales] == [1.0] * 3 + [0.0] * 7
    assert {s["bn"] for s in lr_scales} == {64.0}
    state = load_checkpoint(tmp_path / "whole" / "run" / "checkpoint.pt")
    images, _ = fastcifar.load("cifar10", "train", airbench_data)
    random_stem = create_model("airbench94").whiten.weight
    assert not torch.allclose(state["model"]["whiten.weight"], random_stem)
    for name, slow in state["lookahead"].items():
        assert torch.equal(slow, state["model"][name]), name

    with crash_after_save(lambda trainer: trainer.epoch == 4):
        loop.train(airbench_config(tmp_path / "split", **options))
    resumed = loop.train(resolve_config({"resume": True, "out": str(tmp_path / "split" / "run"),
                                         "progress": False}))
    assert resumed["param_checksums"] == whole["param_checksums"]
    assert resumed["init_seconds"] == 0.0  # the checkpoint held the whitened stem


def test_whitening_from_the_loaders_resident_split_equals_reading_it(airbench_data, tmp_path):
    config = airbench_config(tmp_path, data_dir=airbench_data)
    from_disk = create_model("airbench94")
    resident = copy.deepcopy(from_disk)
    assert init_from_data(config, from_disk, torch.device("cpu")) > 0
    images, _ = fastcifar.load("cifar10", "train", airbench_data)
    init_from_data(config, resident, torch.device("cpu"), torch.from_numpy(images))
    assert torch.equal(resident.whiten.weight, from_disk.whiten.weight)
    assert not torch.equal(resident.whiten.weight, create_model("airbench94").whiten.weight)


def test_build_augment_carries_the_recipes_translate_and_flip(tmp_path):
    augment = build_augment(airbench_config(tmp_path))
    assert (augment.padding, augment.pad_mode, augment.alternating_flip) == (2, "reflect", True)


# -- on a GPU (skipped without one; benchmarks/gpu_suite.sh runs `pytest -m cuda`) --------


@pytest.mark.cuda
def test_cuda_group_lr_scale_written_between_replays_changes_the_update():
    """The scale is read at replay time: freezing a group (scale 0) after capture stops
    its updates, a new scale applies to the next replay, the other group keeps lr."""
    from fastcifar.engine.step import GraphRunner, StepBuffers, TrainStep

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=True), nn.Flatten(), nn.LazyLinear(10))
    model = model.cuda()
    model(torch.zeros(1, 3, 32, 32, device="cuda"))  # materialise the lazy layer
    lr = torch.zeros((), dtype=torch.float32, device="cuda")
    buffers = StepBuffers.allocate(8, 10, soft_targets=False, lr=lr)
    opt = SGD([{"params": [model[0].bias], "name": "whiten_bias", "lr_scale": 1.0},
               {"params": [model[0].weight, model[2].weight, model[2].bias]}],
              lr=lr, momentum=0.0)
    runner = GraphRunner(TrainStep(model, opt, buffers), warmup_steps=2)
    g = torch.Generator(device="cuda").manual_seed(1)
    data = [(torch.randn(8, 3, 32, 32, device="cuda", generator=g).contiguous(
                memory_format=torch.channels_last),
             torch.randint(0, 10, (8,), device="cuda", generator=g)) for _ in range(6)]
    lr.fill_(0.1)
    for x, y in data[:3]:
        runner(x, y)
    assert runner.captured
    bias, weight = model[0].bias, model[2].weight
    for scale, (x, y) in zip((0.0, 2.0, 0.0), data[3:]):
        opt.set_lr_scale("whiten_bias", scale)
        before_bias, before_weight = bias.detach().clone(), weight.detach().clone()
        runner(x, y)
        torch.cuda.synchronize()
        torch.testing.assert_close(bias.detach(), before_bias - 0.1 * scale * bias.grad,
                                   rtol=0, atol=1e-6)
        torch.testing.assert_close(weight.detach(), before_weight - 0.1 * weight.grad,
                                   rtol=0, atol=1e-6)


@pytest.mark.cuda
def test_cuda_airbench94_recipe_run_with_graph(tmp_path):
    """The whole recipe on the GPU path: bf16, captured step, Triton op with reflect
    translate and alternating flip, lookahead, TTA level 2."""
    data_dir = prepare_dataset(tmp_path, 2048, 512, seed=3)
    config = airbench_config(tmp_path, data_dir=data_dir, batch_size=256, progress=False)
    assert config.device == "cuda" and config.graph and config.dtype == "bf16"
    summary = loop.train(config)
    assert summary["steps"] == 80 and summary["test_acc"] >= 0.9
    assert summary["init_seconds"] > 0
