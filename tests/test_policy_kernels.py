"""Policies inside the fused numba kernel: equal to the torch reference bit for bit, with
crop/flip before the policy and normalise/erase/mix after it. Triton: test_policy_triton.py.
"""
import pytest
import torch

from fastcifar.augment import AugmentConfig, augment, augment_reference, sample_params
from fastcifar.augment.policy_space import SPACES
from fastcifar.augment.policy_table import KIND_NAMES, op_coefficients
from tests.helpers import (
    EXTRAS,
    POLICY_OPTIONS,
    assert_same,
    entry_per_sample,
    make_policy_images,
    policy_case,
)

# one torch thread: see tests/conftest.py one_thread
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("policy", list(SPACES))
@pytest.mark.parametrize("extra", list(EXTRAS))
def test_numba_equals_the_reference(policy, extra):
    config, images, labels, indices, params = policy_case(policy, extra, 300, 257, seed=2)
    before = images.clone()
    expected = augment_reference(images, labels, params, config, indices=indices)
    assert_same(augment(images, labels, params, config, indices=indices, impl="numba"),
                expected)
    assert torch.equal(images, before)


@pytest.mark.parametrize("policy", list(SPACES))
def test_numba_runs_every_entry_as_the_reference_does(policy):
    """Every distinct (op, magnitude) of the policy as a first step, on every kind of image,
    followed by drawn steps (the chains the numba kernel shortcuts: pending value tables
    applied before an op that reads pixels, folded into the normalisation after)."""
    space = SPACES[policy]
    seen, entries = set(), []
    for entry in range(space.num_entries):
        if space.describe(entry) not in seen:
            seen.add(space.describe(entry))
            entries.append(entry)
    config = AugmentConfig.for_dataset("cifar10", augment_policy=policy,
                                       **POLICY_OPTIONS[policy])
    images, labels, params = entry_per_sample(config, entries)
    expected = augment_reference(images, labels, params, config)
    assert_same(augment(images, labels, params, config, impl="numba"), expected)


def test_numba_long_chains_equal_the_reference():
    """Ten RandAugment steps per sample: every pair of op kinds follows one another."""
    config = AugmentConfig.for_dataset("cifar10", augment_policy="randaugment", ra_n=10,
                                       ra_m=30, cutout=8)
    images, labels = make_policy_images(400, seed=4)
    params = sample_params(config, 400, torch.Generator().manual_seed(5), "cpu")
    expected = augment_reference(images, labels, params, config)
    assert_same(augment(images, labels, params, config, impl="numba"), expected)


def test_policy_steps_must_match_the_config():
    config = AugmentConfig.for_dataset("cifar10", augment_policy="randaugment", ra_n=3)
    images, labels = make_policy_images(4)
    params = sample_params(AugmentConfig.for_dataset("cifar10"), 4, None, "cpu")
    for impl in ("reference", "numba"):
        with pytest.raises(ValueError, match=r"params.policy must be torch.int32 \[4, 3\]"):
            augment(images, labels, params, config, impl=impl)


def test_every_kind_has_an_entry_in_every_op_table():
    kinds = {op_coefficients(*space.describe(e))[0]
             for space in SPACES.values() for e in range(space.num_entries)}
    assert kinds == set(range(len(KIND_NAMES)))
