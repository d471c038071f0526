"""The policy sampler against each policy's definition: which ops, how often, at which
magnitude and sign; drawn on the device from the generator passed in."""
import math

import pytest
import torch

from fastcifar.augment import AugmentConfig, sample_params
from fastcifar.augment.policy_sampler import sample_policy
from fastcifar.augment.policy_space import CIFAR10_POLICY, NO_MAGNITUDE, SPACES

N = 40_000


def draw(policy, n=N, seed=5, **options):
    config = AugmentConfig.for_dataset("cifar10", augment_policy=policy, **options)
    return sample_policy(config, n, torch.Generator().manual_seed(seed), "cpu"), config


def decode(policy, entries):
    """(op index, bin, negated) tensors of packed entries."""
    space = SPACES[policy]
    entries = entries.long()
    return entries // 2 // space.num_bins, entries // 2 % space.num_bins, entries % 2


def assert_uniform(counts: torch.Tensor, total: int):
    """Every category within 5 standard deviations of total / len(counts)."""
    p = 1 / len(counts)
    spread = 5 * math.sqrt(total * p * (1 - p))
    assert (counts.float() - total * p).abs().max() < spread, counts


def assert_negated_half_the_time_when_signed(policy, op, negated):
    signed = torch.tensor([SPACES[policy].signed(name) for name in SPACES[policy].ops])[op]
    assert not negated[~signed].any()  # an unsigned op never carries a sign
    rate = negated[signed].float().mean().item()
    assert abs(rate - 0.5) < 5 * math.sqrt(0.25 / signed.sum().item()), rate


def test_autoaugment_follows_the_cifar10_policy():
    """Given its (unrecorded) sub-policy, each step is that sub-policy's op at its bin
    when applied, identity otherwise. Decoded steps must therefore match some sub-policy,
    and the mixture over the 25 must give each (op, bin) pair its expected frequency."""
    entries, _ = draw("autoaugment")
    space = SPACES["autoaugment"]
    op, level, negated = decode("autoaugment", entries)
    assert entries.shape == (N, 2) and entries.dtype == torch.int32
    for step in range(2):
        expected = {}
        for sub in CIFAR10_POLICY:
            name, probability, bin_ = sub[step]
            key = (space.ops.index(name), bin_ or 0)
            expected[key] = expected.get(key, 0.0) + probability / 25
        applied = op[:, step] != 0
        assert (level[~applied, step] == 0).all() and not negated[~applied, step].any()
        seen = {}
        for o, b in zip(op[applied, step].tolist(), level[applied, step].tolist()):
            seen[(o, b)] = seen.get((o, b), 0) + 1
        assert set(seen) <= set(expected)
        for key, p in expected.items():
            assert abs(seen.get(key, 0) / N - p) < 5 * math.sqrt(p * (1 - p) / N) + 1e-9, key
    assert_negated_half_the_time_when_signed("autoaugment", op, negated)


def test_autoaugment_steps_come_from_one_sub_policy():
    """Both steps of a sample come from the same sub-policy: a pair that no sub-policy
    holds (when both steps are applied) never occurs."""
    entries, _ = draw("autoaugment", seed=9)
    space = SPACES["autoaugment"]
    op, level, _ = decode("autoaugment", entries)
    both = (op[:, 0] != 0) & (op[:, 1] != 0)
    pairs = {((space.ops.index(a), ba or 0), (space.ops.index(b), bb or 0))
             for (a, _, ba), (b, _, bb) in CIFAR10_POLICY}
    drawn = set(zip(zip(op[both, 0].tolist(), level[both, 0].tolist()),
                    zip(op[both, 1].tolist(), level[both, 1].tolist())))
    assert drawn <= pairs and len(drawn) > 15


@pytest.mark.parametrize("ra_n,ra_m", [(2, 9), (3, 30), (1, 0)])
def test_randaugment_draws_n_uniform_ops_at_magnitude_m(ra_n, ra_m):
    entries, _ = draw("randaugment", ra_n=ra_n, ra_m=ra_m)
    op, level, negated = decode("randaugment", entries)
    assert entries.shape == (N, ra_n)
    assert (level == ra_m).all()
    assert_uniform(torch.bincount(op.flatten(), minlength=14), N * ra_n)
    assert_negated_half_the_time_when_signed("randaugment", op, negated)
    if ra_n > 1:  # steps are independent: the same op twice as often as chance says
        same = (op[:, 0] == op[:, 1]).float().mean().item()
        assert abs(same - 1 / 14) < 5 * math.sqrt(1 / 14 / N)


def test_trivialaugment_draws_one_uniform_op_at_a_uniform_bin():
    entries, _ = draw("trivialaugment")
    op, level, negated = decode("trivialaugment", entries)
    assert entries.shape == (N, 1)
    assert_uniform(torch.bincount(op.flatten(), minlength=14), N)
    assert_uniform(torch.bincount(level.flatten(), minlength=31), N)
    assert_negated_half_the_time_when_signed("trivialaugment", op, negated)
    space = SPACES["trivialaugment"]
    described = {space.describe(e)[0] for e in entries.flatten().tolist()}
    assert described == set(space.ops) and "Invert" not in described
    assert NO_MAGNITUDE & described == {"Identity", "AutoContrast", "Equalize"}


def test_same_seed_same_draws_and_policy_draws_come_last():
    """sample_params draws the policy after everything else: a config with a policy has
    the same crop/flip/erase/mix draws as without one, so adding a policy to a run changes
    nothing else it draws."""
    with_policy = AugmentConfig.for_dataset("cifar10", cutout=8, mixup_alpha=1.0,
                                            augment_policy="randaugment")
    without = AugmentConfig.for_dataset("cifar10", cutout=8, mixup_alpha=1.0)
    a = sample_params(with_policy, 64, torch.Generator().manual_seed(1), "cpu")
    b = sample_params(with_policy, 64, torch.Generator().manual_seed(1), "cpu")
    c = sample_params(without, 64, torch.Generator().manual_seed(1), "cpu")
    assert torch.equal(a.policy, b.policy) and a.policy.shape == (64, 2)
    assert c.policy.shape == (64, 0)
    for name in ("shift", "flip", "erase_box", "partner", "mix_weight", "target_weight"):
        assert torch.equal(getattr(a, name), getattr(c, name)), name


def test_entries_index_the_policy_table():
    for policy, space in SPACES.items():
        entries, _ = draw(policy, n=2000)
        assert 0 <= entries.min() and entries.max() < space.num_entries


@pytest.mark.cuda
def test_on_the_gpu_sampling_reads_nothing_back():
    config = AugmentConfig.for_dataset("cifar10", augment_policy="autoaugment")
    generator = torch.Generator(device="cuda").manual_seed(0)
    sample_policy(config, 8, generator, "cuda")  # builds the per-device tables (once)
    torch.cuda.set_sync_debug_mode("error")  # any host sync inside raises
    try:
        entries = sample_params(config, 512, generator, "cuda").policy
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert entries.device.type == "cuda" and entries.shape == (512, 2)
