"""The policy spec against torchvision: every op at every magnitude of every policy, the
policies' definitions, and whole sampled batches image by image (uint8, CPU)."""
import pytest
import torch
from torchvision.transforms import InterpolationMode, v2

from fastcifar.augment import AugmentConfig, sample_params
from fastcifar.augment.policy_reference import apply_policy
from fastcifar.augment.policy_space import CIFAR10_POLICY, NO_MAGNITUDE, SPACES
from fastcifar.augment.policy_table import affine_matrix, op_coefficients, policy_table

# one torch thread: see tests/conftest.py one_thread
pytestmark = pytest.mark.usefixtures("one_thread")

TORCHVISION = {
    "autoaugment": v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10),
    "randaugment": v2.RandAugment(),
    "trivialaugment": v2.TrivialAugmentWide(),
}


def torchvision_op(policy: str, image: torch.Tensor, op: str, magnitude: float):
    """One op as torchvision's transform of `policy` applies it to a CHW uint8 image."""
    transform = TORCHVISION[policy]
    return transform._apply_image_or_video_transform(
        image, op, magnitude, interpolation=InterpolationMode.NEAREST, fill=transform._fill)


def make_images(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    x[0] = 7  # constant: autocontrast and equalize leave it alone
    x[1] = x[1] // 4 + 100  # low contrast
    x[2, 0] = 3  # one flat channel
    x[3] = x[3] // 64 * 64  # four values per channel: equalize's step is small
    return x


def distinct_entries(policy: str, levels=None) -> list[int]:
    """One entry per distinct (op, signed magnitude) of the policy (at the given bins)."""
    space, seen, entries = SPACES[policy], set(), []
    for entry in range(space.num_entries):
        level = (entry // 2) % space.num_bins
        if levels is not None and level not in levels:
            continue
        if space.describe(entry) not in seen:
            seen.add(space.describe(entry))
            entries.append(entry)
    return entries


def check_entries(policy: str, entries: list[int], images: torch.Tensor):
    table = policy_table(policy)
    tiles = images.permute(0, 2, 3, 1).contiguous()
    for entry in entries:
        op, magnitude = SPACES[policy].describe(entry)
        steps = torch.full((len(images), 1), entry, dtype=torch.int32)
        got = apply_policy(tiles, steps, table).permute(0, 3, 1, 2)
        expected = torch.stack([torchvision_op(policy, image, op, magnitude)
                                for image in images])
        assert torch.equal(got, expected), (policy, op, magnitude)


@pytest.mark.parametrize("policy", list(SPACES))
def test_each_op_at_its_extreme_and_middle_magnitudes_equals_torchvision(policy):
    """The fast subset: bins 0 and the last, both signs, and one where shears put output
    pixels exactly half-way between two sources (a shear of 0.2: bin 6 of AutoAugment's,
    20 of RandAugment's) or, for TrivialAugment, bin 20 (a quarter turn, which torchvision
    does with rot90, not a grid)."""
    last = SPACES[policy].num_bins - 1
    levels = {0, last, 6 if policy == "autoaugment" else 20}
    check_entries(policy, distinct_entries(policy, levels), make_images(5))


@pytest.mark.slow
@pytest.mark.parametrize("policy", list(SPACES))
def test_every_entry_of_every_policy_equals_torchvision(policy):
    check_entries(policy, distinct_entries(policy), make_images(16, seed=3))


@pytest.mark.parametrize("policy", list(SPACES))
def test_a_sampled_batch_equals_torchvision_image_by_image(policy):
    config = AugmentConfig.for_dataset("cifar10", augment_policy=policy,
                                       **({"ra_n": 3, "ra_m": 21} if policy == "randaugment"
                                          else {}))
    images = make_images(48, seed=1)
    steps = sample_params(config, 48, torch.Generator().manual_seed(2), "cpu").policy
    tiles = images.permute(0, 2, 3, 1).contiguous()
    before = tiles.clone()
    got = apply_policy(tiles, steps, policy_table(policy)).permute(0, 3, 1, 2)
    assert torch.equal(tiles, before)  # the input is not modified
    for b, image in enumerate(images):
        for entry in steps[b].tolist():
            image = torchvision_op(policy, image, *SPACES[policy].describe(entry))
        assert torch.equal(got[b], image), b


@pytest.mark.parametrize("policy", list(SPACES))
def test_the_spaces_are_torchvisions(policy):
    """Same ops, signs and magnitude bins as torchvision's transform (for 32x32 images)."""
    space, transform = SPACES[policy], TORCHVISION[policy]
    expected_ops = set(transform._AUGMENTATION_SPACE) | {"Identity"}
    assert set(space.ops) == expected_ops and space.ops[0] == "Identity"
    for op, (bins, signed) in transform._AUGMENTATION_SPACE.items():
        magnitudes = bins(space.num_bins, 32, 32)
        assert space.signed(op) == signed, op
        for level in range(space.num_bins):
            expected = 0.0 if magnitudes is None else float(magnitudes[level])
            assert space.describe(space.entry(op, level)) == (op, expected), (op, level)
    assert space.num_bins == getattr(transform, "num_magnitude_bins", 10)  # AutoAugment: 10


def test_the_autoaugment_policy_is_the_papers_cifar10_policy():
    assert tuple(tuple(step) for step in CIFAR10_POLICY) == \
        tuple(tuple(step) for step in TORCHVISION["autoaugment"]._policies)


def test_entries_pack_op_bin_and_sign():
    space = SPACES["trivialaugment"]
    assert space.entry("Identity", 0) == 0 and space.describe(0) == ("Identity", 0.0)
    entry = space.entry("Rotate", 30, negated=True)
    assert space.describe(entry) == ("Rotate", -135.0)
    assert space.describe(space.entry("Equalize", 7, negated=True)) == ("Equalize", 0.0)
    assert all(op in NO_MAGNITUDE or op in space.ranges or op in ("Posterize", "Solarize")
               for op in space.ops)


def test_quarter_turns_use_exact_matrices():
    """rotate() turns by 90/180/270 degrees with rot90: exact cos and sin, no 6e-17."""
    assert affine_matrix("Rotate", 90.0) == [0.0, -1.0, 0.0, 1.0, 0.0, 0.0]
    assert affine_matrix("Rotate", -90.0) == [0.0, 1.0, 0.0, -1.0, 0.0, 0.0]
    _, coefficients = op_coefficients("Rotate", 0.0)
    assert coefficients == [1 / 16, 0.0, 0.0, 0.0, 1 / 16, 0.0]
