"""AutoAugment (CIFAR-10 policy), batched: each op and the whole policy against torchvision."""
import dataclasses

import pytest
import torch
from torchvision.transforms import InterpolationMode, v2

from fastcifar.augment import AugmentConfig, augment, sample_params
from fastcifar.augment.autoaugment import (
    CIFAR10_POLICY,
    OP_NAMES,
    OPS,
    AutoAugmentParams,
    _apply,
    autoaugment,
    magnitude,
    sample_autoaugment,
)
from fastcifar.augment.reference import augment_reference, crop_flip

TORCHVISION = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)


def torchvision_op(image, name, value):
    """One AutoAugment op as torchvision applies it to a CHW uint8 image."""
    return TORCHVISION._apply_image_or_video_transform(
        image, name, value, interpolation=InterpolationMode.NEAREST, fill=TORCHVISION._fill)


def make_images(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    x[0] = 7  # a constant image: autocontrast and equalize leave it alone
    x[1] = x[1] // 4 + 100  # low contrast
    return x


def test_the_policy_is_the_papers_cifar10_policy():
    assert tuple(tuple(step) for step in CIFAR10_POLICY) == \
        tuple(tuple(step) for step in TORCHVISION._policies)


@pytest.mark.parametrize("name", OP_NAMES)
def test_each_op_at_every_magnitude_equals_torchvision(name):
    x = make_images()
    has_levels = OPS[name][0] is not None or name in ("Posterize", "Solarize")
    for level in (range(10) if has_levels else [None]):
        for sign in ((1, -1) if OPS[name][1] else (1,)):
            value = magnitude(name, level) * sign
            expected = torch.stack([torchvision_op(image, name, value) for image in x])
            got = _apply(x, torch.full((len(x),), OP_NAMES.index(name)),
                         torch.full((len(x),), value, dtype=torch.float64),
                         torch.ones(len(x), dtype=torch.bool))
            assert torch.equal(got, expected), (name, level, sign)


def test_the_batched_policy_equals_torchvision_image_by_image():
    x = make_images(64, seed=1)
    params = sample_autoaugment(64, torch.Generator().manual_seed(3), "cpu")
    before = x.clone()
    got = autoaugment(x.permute(0, 2, 3, 1).contiguous(), params).permute(0, 3, 1, 2)
    assert torch.equal(x, before)  # the input is not modified
    for b in range(64):
        image = x[b]
        for step, (name, _, level) in enumerate(CIFAR10_POLICY[params.policy[b]]):
            if not params.applied[b, step]:
                continue
            value = magnitude(name, level)
            if OPS[name][1] and params.negate[b, step]:
                value = -value
            image = torchvision_op(image, name, value)
        assert torch.equal(got[b], image), b


def test_the_sync_free_way_gives_the_same_batch():
    """The CUDA way (every op on the whole batch, masks pick) equals the CPU way (each op
    on its own samples); checked here on the CPU."""
    x = make_images(128, seed=6).permute(0, 2, 3, 1).contiguous()
    params = sample_autoaugment(128, torch.Generator().manual_seed(8), "cpu")
    assert torch.equal(autoaugment(x, params, sync_free=True),
                       autoaugment(x, params, sync_free=False))


def test_the_sampler_follows_the_policy_probabilities():
    n = 40_000
    a = sample_autoaugment(n, torch.Generator().manual_seed(5), "cpu")
    b = sample_autoaugment(n, torch.Generator().manual_seed(5), "cpu")
    assert all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("policy", "applied", "negate"))
    counts = torch.bincount(a.policy, minlength=len(CIFAR10_POLICY)).float()
    assert counts.min() > 0.8 * n / 25 and counts.max() < 1.2 * n / 25
    probability = torch.tensor([[p for _, p, _ in policy] for policy in CIFAR10_POLICY])
    expected = probability[a.policy].sum(0) / n
    assert torch.allclose(a.applied.float().mean(0), expected, atol=0.01)
    assert abs(a.negate.float().mean().item() - 0.5) < 0.01


def test_augment_runs_autoaugment_between_flip_and_normalisation():
    """augment(config.autoaugment) == crop/flip, AutoAugment, then the op without geometry."""
    config = AugmentConfig.for_dataset("cifar10", autoaugment=True, cutout=16)
    g = torch.Generator().manual_seed(7)
    images = torch.randint(0, 256, (100, 32, 32, 3), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (100,), generator=g)
    indices = torch.randperm(100, generator=g)[:24]
    params = sample_params(config, 24, g, "cpu")
    policy = sample_autoaugment(24, g, "cpu")
    staged = autoaugment(crop_flip(images[indices], params, config), policy)
    no_geometry = dataclasses.replace(params, shift=torch.zeros_like(params.shift),
                                      flip=torch.zeros_like(params.flip))
    expected, expected_targets = augment_reference(staged, labels[indices], no_geometry, config)
    for impl in ("reference", "numba"):
        got, targets = augment(images, labels, params, config, indices=indices, impl=impl,
                               autoaugment_params=policy)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
        assert torch.equal(targets, expected_targets)
    with pytest.raises(ValueError, match="autoaugment_params"):
        augment(images, labels, params, config, indices=indices)


def test_bad_input_is_refused():
    params = AutoAugmentParams(policy=torch.zeros(2, dtype=torch.int64),
                               applied=torch.ones(2, 2, dtype=torch.bool),
                               negate=torch.zeros(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="uint8"):
        autoaugment(torch.zeros(2, 32, 32, 3), params)


@pytest.mark.cuda
def test_on_the_gpu_it_matches_the_cpu():
    """Same draws, same images: the CUDA result equals the CPU one up to +-1 on a few
    pixels (fused multiply-adds may round the blends differently), with no host sync."""
    x = make_images(256, seed=2).permute(0, 2, 3, 1).contiguous()
    params = sample_autoaugment(256, torch.Generator().manual_seed(4), "cpu")
    on_gpu = AutoAugmentParams(**{k: getattr(params, k).cuda()
                                  for k in ("policy", "applied", "negate")})
    x_gpu = x.cuda()
    autoaugment(x_gpu, on_gpu)  # builds the per-device tables (host copies, once)
    torch.cuda.set_sync_debug_mode("error")  # any host sync inside raises
    try:
        got = autoaugment(x_gpu, on_gpu)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    got = got.cpu()
    diff = (got.int() - autoaugment(x, params).int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01
