"""The fused augmentation: config, sampler, the torch reference (checked by hand and against
an independent pad/crop/flip), and the numba kernel held to the reference bit for bit.

Triton parity lives in test_augment_triton.py, the FFCV op in test_augment_ffcv.py.
"""

import pytest
import torch
import torch.nn.functional as F

from fastcifar.augment import (
    AugmentConfig,
    AugmentParams,
    augment,
    augment_numba,
    augment_reference,
    identity_params,
    make_lut,
    sample_params,
)
from fastcifar.datasets import CIFAR10
from fastcifar.errors import UserError

CONFIGS = {
    "crop_flip": AugmentConfig.for_dataset("cifar10"),
    "reflect_cutout": AugmentConfig.for_dataset("cifar10", pad_mode="reflect", cutout=16),
    "erasing": AugmentConfig.for_dataset("cifar100", padding=2, erase_prob=1.0),
    "eval": AugmentConfig.none("cifar10"),
    "mix_both_smooth": AugmentConfig.for_dataset("cifar100", erase_prob=0.5, mixup_alpha=1.0,
                                                 cutmix_alpha=1.0, label_smoothing=0.1),
    "mixup": AugmentConfig.for_dataset("cifar10", mixup_alpha=0.4),
    "cutmix": AugmentConfig.for_dataset("cifar10", cutout=8, cutmix_alpha=1.0),
    "smoothing": AugmentConfig.for_dataset("cifar10", label_smoothing=0.2),
}


def make_case(config, num_images=12, batch="random5", seed=0):
    """(images, labels, indices or None, params) for one batch layout."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (num_images, 32, 32, 3), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, config.num_classes, (num_images,), generator=g)
    indices = {
        "random5": torch.randint(0, num_images, (5,), generator=g),  # repeats allowed
        "all": None,  # the batch is the images tensor itself
        "one": torch.tensor([num_images - 1]),
        "last_partial": torch.randperm(num_images, generator=g)[10:],  # 12 = 5 + 5 + 2
    }[batch]
    batch_size = num_images if indices is None else len(indices)
    return images, labels, indices, sample_params(config, batch_size, g, "cpu")


def clone_params(params):
    return AugmentParams(**{k: v.clone() for k, v in vars(params).items()})


def assert_params_equal(a, b):
    for name, tensor in vars(a).items():
        assert torch.equal(tensor, getattr(b, name)), name


# ---------------------------------------------------------------- config and LUT

def test_config_for_dataset_and_eval():
    config = AugmentConfig.for_dataset("cifar100", cutout=8)
    assert config.num_classes == 100 and config.cutout == 8 and config.padding == 4
    assert config.mean == (0.5071, 0.4865, 0.4409)
    evaluation = AugmentConfig.none("cifar10")
    assert (evaluation.padding, evaluation.flip, evaluation.soft_targets) == (0, False, False)
    assert AugmentConfig.for_dataset("cifar10", label_smoothing=0.1).soft_targets
    assert AugmentConfig.for_dataset("cifar10", cutmix_alpha=1.0).soft_targets
    hash(config)  # frozen and hashable: usable as a cache key


@pytest.mark.parametrize("overrides", [
    dict(padding=-1), dict(padding=32), dict(pad_mode="edge"), dict(cutout=33),
    dict(erase_prob=1.5), dict(erase_area=(0.5, 0.2)), dict(erase_ratio=(0.0, 3.0)),
    dict(cutout=8, erase_prob=0.5), dict(mixup_alpha=-1.0), dict(label_smoothing=1.0),
    dict(std=(0.2, 0.0, 0.2)), dict(num_classes=0), dict(no_such_option=1),
])
def test_config_rejects_bad_values_with_one_line(overrides):
    with pytest.raises(UserError) as error:
        AugmentConfig.for_dataset("cifar10", **overrides)
    assert "\n" not in str(error.value)


def test_lut_is_the_normalisation_formula():
    config = CONFIGS["crop_flip"]
    lut = make_lut(config)
    assert lut.shape == (3, 256) and lut.dtype == torch.float32
    for c in range(3):
        for v in (0, 1, 128, 255):
            expected = (v / 255 - CIFAR10.mean[c]) / CIFAR10.std[c]
            assert abs(lut[c, v].item() - expected) < 1e-6
    assert make_lut(config) is lut  # cached
    assert make_lut(config, dtype=torch.bfloat16).dtype == torch.bfloat16


# ---------------------------------------------------------------- the reference itself

def _ramp_image():
    """pixel (y, x, c) = 4y + x + 50c: every pixel of a channel is distinct."""
    y = torch.arange(32)[:, None, None]
    x = torch.arange(32)[None, :, None]
    c = torch.arange(3)[None, None, :]
    return (4 * y + x + 50 * c).to(torch.uint8)[None]


def _normalised(value, c):
    return (value / 255 - CIFAR10.mean[c]) / CIFAR10.std[c]


@pytest.mark.parametrize("pad_mode", ["zero", "reflect"])
def test_reference_hand_computed_shift_and_flip(pad_mode):
    config = AugmentConfig.for_dataset("cifar10", pad_mode=pad_mode)
    params = identity_params(1)
    params.shift[0] = torch.tensor([2, -3], dtype=torch.int32)
    params.flip[0] = 1
    out, targets = augment_reference(_ramp_image(), torch.tensor([4]), params, config)
    # out(y, x) reads source (y + 2, (31 - x) - 3)
    expected = {
        (0, 0): [36 + 50 * c for c in range(3)],  # source (2, 28)
        (29, 5): [147 + 50 * c for c in range(3)],  # source (31, 23)
    }
    if pad_mode == "zero":  # outside: uint8 0, normalised (the mean colour is not 0 here)
        expected[(0, 29)] = [0, 0, 0]  # source column -1
        expected[(30, 5)] = [0, 0, 0]  # source row 32
    else:  # reflected without repeating the edge: -1 -> 1, 32 -> 30
        expected[(0, 29)] = [9 + 50 * c for c in range(3)]  # source (2, 1)
        expected[(30, 5)] = [143 + 50 * c for c in range(3)]  # source (30, 23)
    for (y, x), values in expected.items():
        for c in range(3):
            assert out[0, c, y, x].item() == pytest.approx(_normalised(values[c], c), abs=1e-6)
    assert targets.tolist() == [4]


@pytest.mark.parametrize("pad_mode", ["zero", "reflect"])
def test_reference_matches_independent_pad_crop_flip(pad_mode):
    """Every shift in [-4, 4]^2 with and without flip against F.pad + slice + flip."""
    config = AugmentConfig.for_dataset("cifar10", pad_mode=pad_mode)
    g = torch.Generator().manual_seed(1)
    image = torch.randint(0, 256, (1, 32, 32, 3), dtype=torch.uint8, generator=g)
    cases = [(dy, dx, f) for dy in range(-4, 5) for dx in range(-4, 5) for f in (0, 1)]
    params = identity_params(len(cases))
    params.shift = torch.tensor([[dy, dx] for dy, dx, _ in cases], dtype=torch.int32)
    params.flip = torch.tensor([f for *_, f in cases], dtype=torch.int32)
    indices = torch.zeros(len(cases), dtype=torch.int64)
    out, _ = augment_reference(image, torch.tensor([0]), params, config, indices=indices)

    padded = F.pad(image.permute(0, 3, 1, 2).double(), (4, 4, 4, 4),
                   mode="constant" if pad_mode == "zero" else "reflect")[0]
    mean = torch.tensor(CIFAR10.mean, dtype=torch.float64)[:, None, None]
    std = torch.tensor(CIFAR10.std, dtype=torch.float64)[:, None, None]
    for i, (dy, dx, f) in enumerate(cases):
        crop = padded[:, 4 + dy:36 + dy, 4 + dx:36 + dx]
        crop = crop.flip(-1) if f else crop
        torch.testing.assert_close(out[i].double(), (crop / 255 - mean) / std,
                                   atol=1e-6, rtol=0)


def test_reference_erase_box_fills_zero_after_normalisation():
    config = CONFIGS["crop_flip"]
    image = _ramp_image()
    plain, _ = augment_reference(image, torch.tensor([0]), identity_params(1), config)
    params = identity_params(1)
    params.erase_box[0] = torch.tensor([3, 7, 10, 20], dtype=torch.int32)
    erased, _ = augment_reference(image, torch.tensor([0]), params, config)
    inside = torch.zeros(32, 32, dtype=torch.bool)
    inside[3:7, 10:20] = True
    assert (erased[0][:, inside] == 0).all()
    assert torch.equal(erased[0][:, ~inside], plain[0][:, ~inside])


def test_reference_mixup_and_cutmix_by_hand():
    config = AugmentConfig.for_dataset("cifar10", mixup_alpha=1.0, cutmix_alpha=1.0,
                                       label_smoothing=0.1)
    images = torch.stack([torch.full((32, 32, 3), 10), torch.full((32, 32, 3), 200)]).byte()
    labels = torch.tensor([3, 7])
    params = identity_params(2)
    params.partner = torch.tensor([1, 0])
    params.mix_weight = torch.tensor([0.25, 1.0])  # sample 0: mixup; sample 1: cutmix
    params.target_weight = torch.tensor([0.25, 0.5])
    params.mix_box[1] = torch.tensor([0, 16, 0, 32], dtype=torch.int32)  # top half
    out, targets = augment_reference(images, labels, params, config)
    lut = make_lut(config)
    for c in range(3):
        mixed = 0.25 * lut[c, 10] + 0.75 * lut[c, 200]
        assert torch.allclose(out[0, c], mixed.expand(32, 32), atol=1e-6)
        assert (out[1, c, :16] == lut[c, 10]).all() and (out[1, c, 16:] == lut[c, 200]).all()
    expected = torch.full((2, 10), 0.01)
    expected[0, 3] += 0.9 * 0.25
    expected[0, 7] += 0.9 * 0.75
    expected[1, 7] += 0.9 * 0.5
    expected[1, 3] += 0.9 * 0.5
    torch.testing.assert_close(targets, expected, atol=1e-6, rtol=0)


# ---------------------------------------------------------------- numba against the reference

@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("batch", ["random5", "all", "one", "last_partial"])
def test_numba_matches_reference_exactly(name, batch):
    config = CONFIGS[name]
    images, labels, indices, params = make_case(config, batch=batch)
    expected = augment_reference(images, labels, params, config, indices=indices)
    actual = augment_numba(images, labels, params, config, indices=indices)
    # The same LUT and the same float32 operations in the same order: bit-identical,
    # mixup included.
    assert torch.equal(actual[0], expected[0])
    assert actual[1].dtype == expected[1].dtype and torch.equal(actual[1], expected[1])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_numba_half_outputs(dtype):
    config = CONFIGS["mix_both_smooth"]
    images, labels, indices, params = make_case(config)
    out, _ = augment_numba(images, labels, params, config, indices=indices, dtype=dtype)
    assert out.dtype == dtype and out.is_contiguous(memory_format=torch.channels_last)
    same_dtype, _ = augment_reference(images, labels, params, config, indices=indices,
                                      dtype=dtype)
    assert torch.equal(out, same_dtype)  # both round float32 through torch
    full, _ = augment_reference(images, labels, params, config, indices=indices)
    # Round-to-nearest: within half an ulp (bf16: 8 significant bits, fp16: 11).
    rtol = 2.0 ** -8 if dtype == torch.bfloat16 else 2.0 ** -11
    torch.testing.assert_close(out.float(), full, rtol=rtol, atol=1e-7)


@pytest.mark.parametrize("impl", ["reference", "numba"])
def test_writes_into_given_buffers_and_keeps_inputs(impl):
    config = CONFIGS["mix_both_smooth"]
    images, labels, indices, params = make_case(config)
    before = (images.clone(), labels.clone(), indices.clone(), clone_params(params))
    out = torch.full((5, 3, 32, 32), float("nan")).to(memory_format=torch.channels_last)
    out_targets = torch.full((5, 100), float("nan"))
    result = augment(images, labels, params, config, indices=indices, out=out,
                     out_targets=out_targets, impl=impl)
    assert result[0] is out and result[1] is out_targets
    assert not out.isnan().any() and not out_targets.isnan().any()
    expected = augment_reference(images, labels, params, config, indices=indices)
    assert torch.equal(out, expected[0]) and torch.equal(out_targets, expected[1])
    assert torch.equal(images, before[0]) and torch.equal(labels, before[1])
    assert torch.equal(indices, before[2])
    assert_params_equal(params, before[3])


@pytest.mark.parametrize("impl", ["reference", "numba"])
def test_output_layout_dtype_and_empty_batch(impl):
    config = CONFIGS["crop_flip"]
    images, labels, _, _ = make_case(config)
    for dtype in (torch.float32, torch.bfloat16):
        out, targets = augment(images, labels, identity_params(12), config, dtype=dtype,
                               impl=impl)
        assert out.shape == (12, 3, 32, 32) and out.dtype == dtype
        assert out.is_contiguous(memory_format=torch.channels_last)
        assert targets.dtype == torch.int64 and torch.equal(targets, labels)
    empty = torch.zeros(0, dtype=torch.int64)
    out, targets = augment(images, labels, identity_params(0), config, indices=empty, impl=impl)
    assert out.shape == (0, 3, 32, 32) and targets.shape == (0,)


def test_identity_params_give_the_normalised_images():
    config = CONFIGS["crop_flip"]
    images, labels, _, _ = make_case(config)
    out, _ = augment(images, labels, identity_params(12), config)  # auto: numba on CPU
    lut = make_lut(config)
    expected = lut[torch.arange(3), images.long()].permute(0, 3, 1, 2)
    assert torch.equal(out, expected)


def test_bad_calls_raise_value_error():
    config = CONFIGS["crop_flip"]
    images, labels, indices, params = make_case(config)
    nchw = torch.empty(5, 3, 32, 32)  # contiguous NCHW, not channels_last
    with pytest.raises(ValueError, match="channels_last"):
        augment(images, labels, params, config, indices=indices, out=nchw)
    with pytest.raises(ValueError, match="params.shift"):
        augment(images, labels, identity_params(4), config, indices=indices)
    with pytest.raises(ValueError, match="uint8"):
        augment(images.float(), labels, params, config, indices=indices)
    with pytest.raises(ValueError, match="impl"):
        augment(images, labels, params, config, indices=indices, impl="cuda")


# ---------------------------------------------------------------- the sampler

def _sample(config, batch_size=20000, seed=0):
    return sample_params(config, batch_size, torch.Generator().manual_seed(seed), "cpu")


def test_same_seed_same_params_and_dtypes():
    config = CONFIGS["mix_both_smooth"]
    a, b = _sample(config, 64), _sample(config, 64)
    assert_params_equal(a, b)
    assert not torch.equal(a.shift, _sample(config, 64, seed=1).shift)
    a.check(64, torch.device("cpu"))  # documented dtypes and shapes


def test_flip_and_shift_statistics():
    params = _sample(CONFIGS["crop_flip"])
    assert abs(params.flip.float().mean().item() - 0.5) < 0.015  # ~4.2 sigma at n=20000
    for axis in range(2):
        counts = torch.bincount(params.shift[:, axis] + 4, minlength=9).double()
        assert counts.numel() == 9  # offsets only in [-4, 4]
        expected = params.batch_size / 9
        chi_square = ((counts - expected) ** 2 / expected).sum().item()
        assert chi_square < 26.1  # 8 degrees of freedom, p = 0.001


def test_cutout_boxes():
    params = _sample(CONFIGS["reflect_cutout"])
    box = params.erase_box.long()
    height, width = box[:, 1] - box[:, 0], box[:, 3] - box[:, 2]
    assert (box >= 0).all() and (box <= 32).all()
    assert ((height > 0) & (height <= 16) & (width > 0) & (width <= 16)).all()
    assert (height == 16).float().mean().item() == pytest.approx(17 / 32, abs=0.02)
    centre_y = box[:, 1] - 8  # the unclipped end is centre + 8
    assert abs(centre_y[box[:, 1] < 32].float().mean().item() - 11.5) < 0.5


def test_random_erasing_boxes():
    config = AugmentConfig.for_dataset("cifar10", erase_prob=0.25)
    box = _sample(config).erase_box.long()
    height, width = box[:, 1] - box[:, 0], box[:, 3] - box[:, 2]
    applied = height > 0
    assert abs(applied.float().mean().item() - 0.25) < 0.015
    assert (width[~applied] == 0).all()
    area = (height * width)[applied].float() / 1024
    assert area.min() > 0.01 and area.max() < 0.36  # (0.02, 0.33) up to rounding of sides
    assert (box[applied, 0] >= 0).all() and (box[applied, 1] <= 32).all()
    assert (box[applied, 2] >= 0).all() and (box[applied, 3] <= 32).all()


@pytest.mark.parametrize("alpha", [0.4, 1.0])
def test_mixup_weights_are_beta(alpha):
    params = _sample(AugmentConfig.for_dataset("cifar10", mixup_alpha=alpha))
    lam = params.mix_weight.double()
    assert abs(lam.mean().item() - 0.5) < 0.01
    assert abs(lam.var().item() - 1 / (4 * (2 * alpha + 1))) < 0.01
    assert torch.equal(params.target_weight, params.mix_weight)
    assert (params.mix_box[:, 0] == params.mix_box[:, 1]).all()  # no box
    assert torch.equal(params.partner.sort().values, torch.arange(params.batch_size))


def test_cutmix_target_weight_is_the_kept_area():
    params = _sample(AugmentConfig.for_dataset("cifar10", cutmix_alpha=1.0))
    box = params.mix_box.long()
    area = (box[:, 1] - box[:, 0]) * (box[:, 3] - box[:, 2])
    assert torch.equal(params.target_weight, 1 - area.float() / 1024)
    assert (params.mix_weight == 1).all()
    # Box area fraction before clipping is 1 - lam with lam ~ U(0, 1); clipping only shrinks.
    assert 0.2 < (area.float() / 1024).mean().item() < 0.5


def test_mixup_or_cutmix_per_sample_and_soft_targets():
    config = AugmentConfig.for_dataset("cifar10", mixup_alpha=1.0, cutmix_alpha=1.0)
    params = _sample(config, 4000)
    uses_cutmix = params.mix_weight == 1
    assert abs(uses_cutmix.float().mean().item() - 0.5) < 0.04
    images = torch.zeros(4000, 32, 32, 3, dtype=torch.uint8)
    labels = torch.randint(0, 10, (4000,), generator=torch.Generator().manual_seed(2))
    _, targets = augment(images, labels, params, config)
    torch.testing.assert_close(targets.sum(1), torch.ones(4000), atol=1e-6, rtol=0)
    assert ((targets > 0).sum(1) <= 2).all()  # no smoothing: self and partner only
    rows = torch.arange(4000)
    assert (targets[rows, labels] >= params.target_weight - 1e-6).all()
    assert (targets[rows, labels[params.partner]] >= 1 - params.target_weight - 1e-6).all()


def test_label_smoothing_floor():
    config = AugmentConfig.for_dataset("cifar100", label_smoothing=0.1)
    images, labels, indices, params = make_case(config)
    _, targets = augment(images, labels, params, config, indices=indices)
    assert targets.shape == (5, 100)
    torch.testing.assert_close(targets.min(1).values, torch.full((5,), 0.001))
    torch.testing.assert_close(targets.max(1).values, torch.full((5,), 0.901))
    assert torch.equal(targets.argmax(1), labels[indices])
