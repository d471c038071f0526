"""Schedules, recipes and config resolution (pure Python, fast)."""
import json
import math

import pytest

from fastcifar.engine.config import TrainConfig
from fastcifar.engine.recipes import RECIPES
from fastcifar.engine.resolve import resolve_config
from fastcifar.engine.schedule import Schedule, build_schedule, lr_at
from fastcifar.errors import UserError

MODELS = ["resnet20", "resnet9", "resnext29_16x64d"]


def resolve(**options):
    options.setdefault("model", "resnet20")
    options.setdefault("dataset", "cifar10")
    options.setdefault("out", "/tmp/unused-run")
    return resolve_config(options, cuda_devices=options.pop("cuda", 0), known_models=MODELS)


# -- schedules --------------------------------------------------------------------------


def test_multistep_values():
    s = Schedule("multistep", peak_lr=0.1, total_steps=300, milestones=(150, 225), gamma=0.1)
    assert lr_at(s, 0) == 0.1 and lr_at(s, 149) == 0.1
    assert lr_at(s, 150) == pytest.approx(0.01) and lr_at(s, 224) == pytest.approx(0.01)
    assert lr_at(s, 225) == pytest.approx(0.001) and lr_at(s, 299) == pytest.approx(0.001)


def test_warmup_then_cosine_values():
    s = Schedule("cosine", peak_lr=0.1, total_steps=110, warmup_steps=10, min_lr=1e-6)
    assert lr_at(s, 0) == pytest.approx(0.01)
    assert lr_at(s, 4) == pytest.approx(0.05)
    assert lr_at(s, 9) == pytest.approx(0.1)
    assert lr_at(s, 10) == pytest.approx(0.1)  # cosine starts at the peak
    assert lr_at(s, 60) == pytest.approx(1e-6 + (0.1 - 1e-6) * 0.5)  # half way
    assert lr_at(s, 35) == pytest.approx(1e-6 + (0.1 - 1e-6) * 0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_at(s, 110) == pytest.approx(1e-6)


def test_linear_one_cycle_values():
    s = Schedule("linear", peak_lr=0.4, total_steps=160, warmup_steps=30)
    assert lr_at(s, 29) == pytest.approx(0.4)
    assert lr_at(s, 30) == pytest.approx(0.4)
    assert lr_at(s, 95) == pytest.approx(0.2)
    assert lr_at(s, 159) == pytest.approx(0.4 / 130)


def test_build_schedule_turns_epochs_into_steps():
    config = resolve(recipe="paper", epochs=8, batch_size=128)
    s = build_schedule(config, steps_per_epoch=10)
    assert s.total_steps == 80 and s.milestones == (40, 60)
    assert lr_at(s, 39) == pytest.approx(0.1) and lr_at(s, 40) == pytest.approx(0.01)


# -- recipes and resolution ---------------------------------------------------------------


def test_recipes_hold_the_documented_defaults():
    paper, strong, fast = RECIPES["paper"], RECIPES["strong"], RECIPES["fast"]
    assert (paper.epochs, paper.batch_size, paper.base_lr, paper.milestones, paper.gamma) == \
        (300, 128, 0.1, (150.0, 225.0), 0.1)
    assert (paper.momentum, paper.weight_decay, paper.mixup) == (0.9, 5e-4, 0.0)
    assert (strong.schedule, strong.warmup_epochs, strong.min_lr, strong.epochs) == \
        ("cosine", 20.0, 1e-6, 300)
    assert (strong.mixup, strong.cutmix, strong.erase_prob, strong.label_smoothing) == \
        (1.0, 1.0, 0.25, 0.1)
    assert strong.nesterov and strong.no_decay_bias_bn and strong.zero_init_residual
    assert (strong.augment_policy, paper.augment_policy, fast.augment_policy) == \
        ("autoaugment", "none", "none")
    assert fast.nesterov and fast.ema and fast.tta


@pytest.mark.parametrize("recipe", sorted(RECIPES))
@pytest.mark.parametrize("model", MODELS)
def test_every_recipe_resolves_for_every_model_at_any_length(recipe, model):
    """A recipe's own values pass resolution, also shortened (warmup and milestones
    rescale with --epochs and must stay inside the run)."""
    for epochs in (1, 3, RECIPES[recipe].epochs):
        config = resolve(model=model, recipe=recipe, epochs=epochs)
        assert config.warmup_epochs < config.epochs
        assert all(0 < m < config.epochs for m in config.milestones)


def test_default_recipe_depends_on_the_model():
    assert resolve(model="resnet9").recipe == "fast"
    assert resolve(model="resnet20").recipe == "paper"


def test_linear_lr_scaling_is_applied_and_stated():
    c = resolve(recipe="paper", batch_size=512)
    assert c.peak_lr == pytest.approx(0.4) and c.base_lr == 0.1 and c.reference_batch_size == 128
    assert "0.1 * 512 / 128 = 0.4" in c.lr_rule
    c = resolve(recipe="paper", batch_size=512, base_lr=0.2)  # --lr is the base lr
    assert c.peak_lr == pytest.approx(0.8)
    c = resolve(recipe="paper", batch_size=512, lr_scaling="none")
    assert c.peak_lr == pytest.approx(0.1)
    data = c.to_json()
    json.dumps(data)
    assert data["lr_rule"] == c.lr_rule and data["per_rank_batch_size"] == 512


def test_flags_override_the_recipe_and_epochs_rescale_its_shape():
    c = resolve(recipe="strong", epochs=30, mixup=0.0, weight_decay=1e-4)
    assert c.mixup == 0.0 and c.cutmix == 1.0 and c.weight_decay == 1e-4
    assert c.warmup_epochs == pytest.approx(2.0)  # 20/300 of the run
    c = resolve(recipe="paper", epochs=30)
    assert c.milestones == (15.0, 22.5)
    c = resolve(recipe="paper", epochs=30, milestones=(10, 20))
    assert c.milestones == (10.0, 20.0)


def test_the_recipes_zero_init_applies_only_where_the_model_has_it():
    assert resolve(model="resnext29_16x64d", recipe="strong").zero_init_residual is True
    # resnet9 has no BN at the end of its residual branches: the recipe's trick is off...
    assert resolve(model="resnet9", recipe="strong").zero_init_residual is False
    # ...but asked for by the user it stays on, and building the model refuses it.
    assert resolve(model="resnet9", recipe="strong", zero_init_residual=True).zero_init_residual


def test_execution_defaults_per_device():
    cpu = resolve()
    assert (cpu.device, cpu.dtype, cpu.graph, cpu.channels_last) == ("cpu", "fp32", False, True)
    gpu = resolve(cuda=1)
    assert (gpu.device, gpu.dtype, gpu.graph, gpu.channels_last) == ("cuda", "bf16", True, True)
    fp16 = resolve(cuda=1, dtype="fp16")
    assert fp16.graph is False  # GradScaler: eager only
    assert resolve(cuda=4, gpus=4, batch_size=512).per_rank_batch_size == 128
    assert resolve(device="cpu", nproc=2, batch_size=64).world_size == 2


@pytest.mark.parametrize("options, message", [
    (dict(model="nope"), "unknown model"),
    (dict(dataset="mnist"), "unknown dataset"),
    (dict(recipe="nope"), "unknown recipe"),
    (dict(device="cuda"), "no CUDA device"),
    (dict(gpus=2), "--gpus needs CUDA"),
    (dict(cuda=2, gpus=4), "only 2 CUDA device"),
    (dict(device="cpu", nproc=3, batch_size=64), "divide evenly"),
    (dict(dtype="fp16"), "fp16 needs CUDA"),
    (dict(cuda=1, dtype="fp16", graph=True), "GradScaler"),
    (dict(graph=True), "needs --device cuda"),
    (dict(base_lr=-1.0), "--lr must be"),
    (dict(lr=0.1), "unknown training option"),
    (dict(peak_lr=0.1), "unknown training option"),
    (dict(label_smoothing=1.5), "label-smoothing"),
    (dict(epochs=10, warmup_epochs=10), "warmup"),
    (dict(device="cpu", nproc=2, sync_bn=True), "sync-bn"),
    (dict(resume=True, out=None), "--resume needs --out"),
    (dict(bogus=1), "unknown training option"),
    (dict(epochs=10, milestones=(5, 2)), "increasing order"),
    (dict(gamma=float("nan")), "--gamma"),
    (dict(gamma=-1.0), "--gamma"),
    (dict(amp=True, dtype="fp32"), "--amp contradicts --dtype fp32"),
    (dict(amp=False, dtype="bf16"), "--no-amp contradicts --dtype bf16"),
    (dict(model="resnet2"), "did you mean: resnet20"),
    (dict(augment_policy="autoaug"), "did you mean: autoaugment"),
    (dict(augment_policy="randaugment", ra_n=0), "--ra-n"),
    (dict(augment_policy="randaugment", ra_m=31), r"--ra-m .* \[0, 30\]"),
    (dict(augment_policy="trivialaugment", ra_n=3), "needs? --augment-policy randaugment"),
    # Given flags are refused even at their default values (2, 9).
    (dict(ra_n=2), "--ra-n is a RandAugment setting: it needs --augment-policy randaugment"),
    (dict(recipe="strong", ra_m=9), r"--ra-m .* \(the policy is autoaugment\)"),
    (dict(ra_n=2, ra_m=9), "--ra-n and --ra-m are RandAugment settings"),
    (dict(autoaugment=True, augment_policy="randaugment"),
     "--autoaugment contradicts --augment-policy randaugment"),
    (dict(recipe="strong", autoaugment=False, augment_policy="trivialaugment"),
     "--no-autoaugment contradicts"),
])
def test_bad_options_are_one_line_user_errors(options, message):
    with pytest.raises(UserError, match=message) as info:
        resolve(**options)
    assert "\n" not in str(info.value)


def test_augment_policy_flags_and_the_autoaugment_alias():
    assert resolve(recipe="strong").augment_policy == "autoaugment"
    assert resolve(autoaugment=True).augment_policy == "autoaugment"
    assert resolve(recipe="strong", autoaugment=False).augment_policy == "none"
    assert resolve(autoaugment=True, augment_policy="autoaugment").augment_policy == \
        "autoaugment"
    config = resolve(recipe="strong", augment_policy="randaugment", ra_n=3, ra_m=20)
    assert (config.augment_policy, config.ra_n, config.ra_m) == ("randaugment", 3, 20)
    assert config.to_json()["augment_policy"] == "randaugment"
    assert "autoaugment" not in config.to_json()


def test_amp_means_bf16_autocast_on_either_device():
    assert resolve(amp=True).dtype == "bf16"  # the CPU default is fp32
    assert resolve(cuda=1, amp=True).dtype == "bf16"
    assert resolve(cuda=1, amp=False).dtype == "fp32"
    assert resolve(cuda=1, amp=True, dtype="fp16").dtype == "fp16"


@pytest.mark.parametrize("saved, message", [
    ([], "not an object"),
    ({"model": "resnet20"}, "missing: "),
])
def test_resume_from_a_foreign_config_json_is_one_line(tmp_path, saved, message):
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(UserError, match=message) as info:
        resolve_config({"resume": True, "out": str(tmp_path)}, cuda_devices=0,
                       known_models=MODELS)
    assert "\n" not in str(info.value)


def test_required_model_and_dataset():
    with pytest.raises(UserError, match="--model is required"):
        resolve_config({"dataset": "cifar10"}, cuda_devices=0, known_models=MODELS)


def test_resume_takes_the_saved_config_and_refuses_changes(tmp_path):
    original = resolve(recipe="paper", epochs=12, batch_size=64, out=str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps(original.to_json()))
    resumed = resolve_config({"resume": True, "out": str(tmp_path), "progress": False},
                             cuda_devices=0, known_models=MODELS)
    assert resumed.identity() == original.identity()
    assert resumed.resume and not resumed.progress
    assert TrainConfig.from_json(original.to_json()) == original
    with pytest.raises(UserError, match="epochs"):
        resolve_config({"resume": True, "out": str(tmp_path), "epochs": 20},
                       cuda_devices=0, known_models=MODELS)
    with pytest.raises(UserError, match="holds no run"):
        resolve_config({"resume": True, "out": str(tmp_path / "missing")},
                       cuda_devices=0, known_models=MODELS)
