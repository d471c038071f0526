"""The model zoo: every registered model runs forward and backward in channels_last,
published parameter counts and FLOPs, the registry's errors, and the shared tricks."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fastcifar.errors import UserError
from fastcifar.models import (
    DropPath,
    create_model,
    format_model_table,
    get_builder,
    list_models,
    model_info,
    model_options,
    param_groups,
    register_model,
)
from fastcifar.models.layers import drop_path_rates
from fastcifar.models.resnet_cifar import ZeroPadShortcut

ALL_MODELS = list_models()
# 16x64d (and its alias) and 8x64d take tens of seconds on two CPU threads; the meta
# device tests below still build and run them.
LARGEST = {"resnext29", "resnext29_16x64d", "resnext29_8x64d"}


@pytest.fixture(autouse=True, scope="module")
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def channels_last_batch(batch_size=2, device="cpu"):
    return torch.randn(batch_size, 3, 32, 32, device=device).to(memory_format=torch.channels_last)


def test_registry_lists_every_family():
    expected = {
        "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
        "preact_resnet18", "preact_resnet20", "wrn28_10", "wrn16_8", "wrn28_2",
        "resnext29", "resnext29_1x64d", "resnext29_2x64d", "resnext29_4x64d",
        "resnext29_8x64d", "resnext29_16x64d", "resnext29_32x4d",
        "resnet50_cifar", "resnet9", "airbench94", "airbench94_v0",
    }  # fmt: skip
    assert set(ALL_MODELS) == expected


@pytest.mark.parametrize("name", [name for name in ALL_MODELS if name not in LARGEST])
def test_forward_backward_channels_last(name):
    torch.manual_seed(0)
    model = create_model(name).to(memory_format=torch.channels_last).train()
    images = channels_last_batch()
    original = images.clone()
    logits = model(images)
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()
    F.cross_entropy(logits, torch.tensor([3, 7])).backward()
    assert torch.equal(images, original), "the forward pass modified its input"
    for param_name, param in model.named_parameters():
        if not param.requires_grad:  # frozen by design (airbench94's whitening, BN weights)
            assert param.grad is None, f"{param_name} is frozen but got a gradient"
            continue
        assert param.grad is not None, f"{param_name} got no gradient"
        assert torch.isfinite(param.grad).all(), param_name
        assert param.grad.abs().sum() > 0, f"{param_name} got an all-zero gradient"


@pytest.mark.parametrize("name", ALL_MODELS)
@pytest.mark.parametrize("num_classes", [10, pytest.param(100, marks=pytest.mark.slow)])
def test_output_shape_on_meta(name, num_classes):
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes)
    logits = model(channels_last_batch(device="meta"))
    assert logits.shape == (2, num_classes)


def test_bf16_autocast_forward_backward():
    torch.manual_seed(0)
    model = create_model("resnet20").to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(channels_last_batch())
    assert logits.dtype == torch.bfloat16
    F.cross_entropy(logits.float(), torch.tensor([1, 2])).backward()
    for param in model.parameters():
        assert param.dtype == torch.float32 and torch.isfinite(param.grad).all()


def test_zero_pad_shortcut_keeps_channels_last():
    x = torch.randn(2, 16, 8, 8).to(memory_format=torch.channels_last)
    out = ZeroPadShortcut(32, 2)(x)
    assert out.shape == (2, 32, 4, 4)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out[:, :16], x[:, :, ::2, ::2])
    assert not out[:, 16:].any()


# (name, published millions, tolerance in millions), 10-class heads.
PUBLISHED_PARAMS = [
    ("resnet20", 0.27, 0.005),
    ("resnet32", 0.46, 0.005),
    ("resnet44", 0.66, 0.005),
    ("resnet56", 0.85, 0.005),
    ("resnet110", 1.7, 0.05),
    ("preact_resnet18", 11.2, 0.05),
    ("wrn28_10", 36.5, 0.05),
    ("resnext29_8x64d", 34.4, 0.05),
    # 68.155M with BN, 68.055M conv + linear weights alone: the paper's 68.1M is within 0.1M.
    ("resnext29_16x64d", 68.1, 0.1),
    ("resnext29", 68.1, 0.1),
]


@pytest.mark.parametrize("name,millions,tolerance", PUBLISHED_PARAMS)
def test_parameter_counts_match_the_papers(name, millions, tolerance):
    assert abs(model_info(name)["params"] / 1e6 - millions) <= tolerance


def test_resnext29_16x64d_gflops():
    info = model_info("resnext29_16x64d")
    assert info["name"] == "resnext29_16x64d"
    # 2 FLOPs per multiply-add: 10.69 G multiply-adds.
    assert info["gflops"] == pytest.approx(21.4, rel=0.02)


def test_model_info_follows_num_classes():
    ten, hundred = model_info("resnet20"), model_info("resnet20", num_classes=100)
    assert hundred["params"] - ten["params"] == 90 * (64 + 1)
    assert hundred["gflops"] > ten["gflops"]


def test_format_model_table_has_a_row_per_model():
    table = format_model_table(["resnet20", "wrn28_10"])
    lines = table.splitlines()
    assert lines[0].split() == ["model", "params", "(M)", "GFLOPs"]
    assert lines[1].split()[:2] == ["resnet20", "0.27"]
    assert lines[2].split()[:2] == ["wrn28_10", "36.48"]


def test_unknown_model_names_close_matches():
    with pytest.raises(UserError, match="resnet20") as caught:
        create_model("resnet21")
    assert "unknown model 'resnet21'" in str(caught.value)
    with pytest.raises(UserError, match="resnext29_16x64d"):
        create_model("resnxt29_16x64d")


def test_unknown_model_without_close_matches_lists_all():
    with pytest.raises(UserError, match="airbench94"):
        create_model("zzzz")


def test_duplicate_registration_is_refused():
    builder = get_builder("resnet20")

    def resnet20(num_classes=10):
        return nn.Linear(1, num_classes)

    with pytest.raises(ValueError, match="'resnet20' is already registered"):
        register_model(resnet20)
    assert get_builder("resnet20") is builder
    assert list_models() == ALL_MODELS


def test_list_models_pattern_and_order():
    assert list_models("resnext29_*") == [
        "resnext29_1x64d", "resnext29_2x64d", "resnext29_4x64d",
        "resnext29_8x64d", "resnext29_16x64d", "resnext29_32x4d",
    ]  # fmt: skip
    assert list_models("resnet[0-9]*") == [
        "resnet9", "resnet20", "resnet32", "resnet44", "resnet50_cifar", "resnet56", "resnet110",
    ]  # fmt: skip
    assert list_models("nothing*") == []


def test_model_options_name_what_each_model_takes():
    assert model_options("resnet20") == {"drop_path", "zero_init_residual"}
    assert "zero_init_residual" not in model_options("airbench94")
    assert {"dropout", "zero_init_residual"} <= model_options("wrn28_10")
    for name in list_models():  # every builder's options resolve to its family's
        assert "num_classes" not in model_options(name)


def test_bad_options_are_user_errors():
    with pytest.raises(UserError, match="does not take the option 'zero_init_residual'"):
        create_model("airbench94", zero_init_residual=True)
    with pytest.raises(UserError, match="num_classes"):
        create_model("resnet20", num_classes=0)
    with pytest.raises(UserError, match="drop_path"):
        create_model("resnet20", drop_path=1.5)
    with pytest.raises(UserError, match="does not take the option 'depth'"):
        create_model("resnet20", depth=56)  # the variant's name fixes it


# Blocks per model, and whether the zeroed weight is the last BN gamma (post-activation
# blocks) or the last conv (pre-activation blocks, where a zero gamma feeding a ReLU
# would get no gradient ever again).
ZERO_INIT_MODELS = [
    ("resnet20", 9, nn.BatchNorm2d),
    ("resnext29_32x4d", 9, nn.BatchNorm2d),
    ("resnet50_cifar", 16, nn.BatchNorm2d),
    ("preact_resnet20", 9, nn.Conv2d),
    ("wrn28_2", 12, nn.Conv2d),
]


def residual_blocks(model):
    return [module for module in model.modules() if hasattr(module, "zero_init_target")]


def last_in_branch(block, kind):
    """The last ``kind`` module of a block's residual branch (shortcut excluded)."""
    return [
        module
        for name, module in block.named_modules()
        if isinstance(module, kind) and not name.startswith("shortcut")
    ][-1]


@pytest.mark.parametrize("name,num_blocks,kind", ZERO_INIT_MODELS)
def test_zero_init_residual(name, num_blocks, kind):
    torch.manual_seed(0)
    model = create_model(name, zero_init_residual=True)
    blocks = residual_blocks(model)
    assert len(blocks) == num_blocks
    for block in blocks:
        assert block.zero_init_target() is last_in_branch(block, kind).weight
        assert not block.zero_init_target().any()
    # The zeroed weights still learn: the branch is off, not dead.
    F.cross_entropy(model(channels_last_batch()), torch.tensor([0, 1])).backward()
    for block in blocks:
        assert block.zero_init_target().grad.abs().sum() > 0
    for block in residual_blocks(create_model(name, zero_init_residual=False)):
        assert block.zero_init_target().abs().sum() > 0


@pytest.mark.parametrize("name", ALL_MODELS)
def test_param_groups_split_decay_and_no_decay(name):
    with torch.device("meta"):
        model = create_model(name)
    decay, no_decay = param_groups(model, weight_decay=5e-4)
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    decay_ids = {id(p) for p in decay["params"]}
    no_decay_ids = {id(p) for p in no_decay["params"]}
    all_ids = [id(p) for p in model.parameters() if p.requires_grad]  # frozen ones left out
    assert len(decay["params"]) + len(no_decay["params"]) == len(all_ids)
    assert decay_ids | no_decay_ids == set(all_ids) and not decay_ids & no_decay_ids
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            assert id(module.weight) in decay_ids or not module.weight.requires_grad
        if isinstance(module, nn.BatchNorm2d):
            assert {id(p) for p in module.parameters() if p.requires_grad} <= no_decay_ids
        if getattr(module, "bias", None) is not None:
            assert id(module.bias) in no_decay_ids


def test_param_groups_feed_an_optimizer():
    model = create_model("resnet20")
    optimizer = torch.optim.SGD(param_groups(model, 5e-4), lr=0.1, momentum=0.9)
    assert [group["weight_decay"] for group in optimizer.param_groups] == [5e-4, 0.0]


def test_drop_path_module():
    torch.manual_seed(0)
    drop = DropPath(0.5)
    x = torch.randn(64, 4, 3, 3)
    assert drop.eval()(x) is x
    out = drop.train()(x)
    kept = (out != 0).flatten(1).any(1)
    assert torch.allclose(out[kept], x[kept] * 2)
    assert not out[~kept].any()
    assert 0 < kept.sum() < 64
    assert drop_path_rates(4, 0.2) == pytest.approx([0.05, 0.1, 0.15, 0.2])


def test_drop_path_in_a_model():
    torch.manual_seed(0)
    with torch.device("meta"):
        resnet50 = create_model("resnet50_cifar", drop_path=0.2)
    rates = [module.p for module in resnet50.modules() if isinstance(module, DropPath)]
    assert rates == pytest.approx(drop_path_rates(16, 0.2))

    dropping = create_model("resnet20", drop_path=0.5)
    plain = create_model("resnet20")
    plain.load_state_dict(dropping.state_dict())
    images = channels_last_batch(8)
    with torch.no_grad():
        assert torch.equal(dropping.eval()(images), plain.eval()(images))
        assert not torch.allclose(dropping.train()(images), plain.train()(images))


def test_wide_resnet_dropout_option():
    with torch.device("meta"):
        default = create_model("wrn28_10")
        dropping = create_model("wrn28_10", dropout=0.3)
    assert not any(isinstance(module, nn.Dropout) for module in default.modules())
    rates = [module.p for module in dropping.modules() if isinstance(module, nn.Dropout)]
    assert rates == [0.3] * 12
