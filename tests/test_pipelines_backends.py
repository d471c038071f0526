"""Every backend against the loader protocol, on the small prepared CIFAR-10 (CPU).

Samples are identified by content: with augmentation off a batch decodes back to the
uint8 source images, which are unique in the fixture; with augmentation on, each output
is matched against all 9 x 9 shifts x 2 flips of its source (known from epoch_indices)
to recover the shift, flip and cutout box every backend actually applied.
"""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from fastcifar.augment import AugmentConfig, augment, augment_reference, make_lut
from fastcifar.backends import BACKEND_NAMES as BACKENDS
from fastcifar.pipelines import create_loader
from fastcifar.pipelines.base import batch_sizes, epoch_batch_params
from fastcifar.pipelines.torchvision_loader import policy_transform
from tests.helpers import (
    NONE,
    check_layout,
    decode,
    identify,
    installed_backends,
    normalised,
    run_epoch,
    tolerance,
)

DATASET = "cifar10"
CROP_FLIP_CUTOUT = AugmentConfig.for_dataset(DATASET, padding=4, flip=True, cutout=16)
MIXING = AugmentConfig.for_dataset(DATASET, cutout=16, mixup_alpha=0.4, cutmix_alpha=1.0,
                                   label_smoothing=0.1)

# name -> create_loader arguments; built at most once per backend per module.
KINDS = {
    "eval": dict(split="test", batch_size=50, train=False),
    "train": dict(split="train", batch_size=64, train=True),
    "aug": dict(split="train", batch_size=64, train=True, augment=CROP_FLIP_CUTOUT),
    "mix": dict(split="train", batch_size=64, train=True, augment=MIXING),
    "rank0": dict(split="train", batch_size=48, train=True, rank=0, world_size=2),
    "rank1": dict(split="train", batch_size=48, train=True, rank=1, world_size=2),
    "eval_rank0": dict(split="test", batch_size=50, train=False, rank=0, world_size=2),
    "eval_rank1": dict(split="test", batch_size=50, train=False, rank=1, world_size=2),
}


@pytest.fixture(scope="module")
def loader(prepared_data):
    data_dir, _ = prepared_data
    cache = {}

    def get(backend: str, kind: str):
        if (backend, kind) not in cache:
            workers = 0 if backend == "torchvision" else 2  # no process start-up per epoch
            cache[backend, kind] = create_loader(backend, DATASET, **KINDS[kind], seed=3,
                                                 data_dir=data_dir, num_workers=workers)
        return cache[backend, kind]

    return get


@pytest.mark.parametrize("backend", BACKENDS)
def test_eval_yields_the_normalised_source_in_order(backend, loader, prepared_data):
    source, labels = prepared_data[1]["test"]
    eval_loader = loader(backend, "eval")
    batches = run_epoch(eval_loader, 0)
    assert len(eval_loader) == len(batches) == 3  # 50 + 50 + 28: the partial batch is kept
    for (images, targets), size in zip(batches, (50, 50, 28)):
        check_layout(images, targets, size)
    images = torch.cat([b[0] for b in batches])
    targets = torch.cat([b[1] for b in batches])
    torch.testing.assert_close(images, normalised(source), **tolerance(backend))
    if backend in ("native", "ffcv"):
        assert torch.equal(images, normalised(source)), "the fused op is exact"
    assert torch.equal(targets, torch.from_numpy(labels))
    assert torch.equal(eval_loader.epoch_indices(), torch.arange(len(labels)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_train_epoch_visits_each_sample_once_in_the_announced_order(backend, loader,
                                                                   prepared_data):
    source, labels = prepared_data[1]["train"]
    train_loader = loader(backend, "train")
    batches = run_epoch(train_loader, 0)
    assert len(train_loader) == len(batches) == 512 // 64
    for images, targets in batches:
        check_layout(images, targets, 64)
    seen = identify(torch.cat([b[0] for b in batches]), source)
    assert sorted(seen) == list(range(512))
    assert seen != list(range(512)), "training shuffles"
    assert seen == train_loader.epoch_indices().tolist()
    assert torch.equal(torch.cat([b[1] for b in batches]), torch.from_numpy(labels[seen]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_order_is_a_function_of_seed_and_epoch(backend, loader, prepared_data):
    source = prepared_data[1]["train"][0]
    train_loader = loader(backend, "train")
    order = {}
    for epoch in (1, 2, 1):
        train_loader.set_epoch(epoch)
        announced = train_loader.epoch_indices().tolist()
        seen = identify(torch.cat([b[0] for b in run_epoch(train_loader, epoch)]), source)
        assert seen == announced
        assert order.setdefault(epoch, seen) == seen
    assert order[1] != order[2]


@pytest.mark.parametrize("kind", ["aug", "mix"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_an_epoch_started_at_a_later_batch_yields_the_rest_of_it(backend, kind, loader):
    """A run resumed mid-epoch relies on this: set_epoch(e, start_batch=k) yields batches
    k, k+1, ... of epoch e exactly (same samples, augmentation and mixing draws)."""
    epoch_loader = loader(backend, kind)
    whole = run_epoch(epoch_loader, 1)
    epoch_loader.set_epoch(1, start_batch=3)
    rest = [(images.clone(), targets.clone()) for images, targets in epoch_loader]
    assert len(rest) == len(whole) - 3 == len(epoch_loader) - 3
    for (images, targets), (want_images, want_targets) in zip(rest, whole[3:]):
        assert torch.equal(images, want_images) and torch.equal(targets, want_targets)
    assert len(run_epoch(epoch_loader, 2)) == len(epoch_loader)  # the next epoch is whole
    with pytest.raises(ValueError, match="start_batch"):
        epoch_loader.set_epoch(1, start_batch=len(epoch_loader) + 1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_iterating_leaves_the_global_random_state_alone(backend, loader):
    """The model's drop-path draws from torch's global RNG, which a checkpoint saves
    mid-epoch: a loader that drew from it when an epoch starts would shift those draws
    in a resumed run."""
    train_loader = loader(backend, "mix")
    before = torch.get_rng_state()
    train_loader.set_epoch(0, start_batch=1)
    next(iter(train_loader))
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.slow  # starts worker processes
def test_torchvision_workers_outlive_the_signals_the_trainer_handles(prepared_data):
    """A scheduler signals every process of the job: the DataLoader workers must keep
    serving batches while the trainer stops at its agreed step."""
    data_dir, _ = prepared_data
    workers = create_loader("torchvision", DATASET, split="train", batch_size=64, train=True,
                            seed=3, data_dir=data_dir, num_workers=2)
    workers.set_epoch(0)
    batches = iter(workers.data_loader)
    next(batches), next(batches)  # one from each worker: both have started
    for worker in batches._workers:
        os.kill(worker.pid, signal.SIGTERM)
        os.kill(worker.pid, signal.SIGINT)
    assert len(list(batches)) == len(workers) - 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_ranks_see_disjoint_shards_with_equal_batch_counts(backend, loader, prepared_data):
    source = prepared_data[1]["train"][0]
    ranks = [loader(backend, "rank0"), loader(backend, "rank1")]
    assert len(ranks[0]) == len(ranks[1]) == (512 // 2) // 48
    for epoch in (0, 1):
        shards = []
        for rank_loader in ranks:
            batches = run_epoch(rank_loader, epoch)
            assert len(batches) == len(rank_loader)
            seen = identify(torch.cat([b[0] for b in batches]), source)
            assert seen == rank_loader.epoch_indices().tolist()
            shards.append(set(seen))
        assert len(shards[0]) == len(shards[1]) == 5 * 48
        assert not shards[0] & shards[1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_eval_ranks_split_the_whole_split(backend, loader, prepared_data):
    source = prepared_data[1]["test"][0]
    shards = []
    for kind in ("eval_rank0", "eval_rank1"):
        batches = run_epoch(loader(backend, kind), 0)
        shards.append(identify(torch.cat([b[0] for b in batches]), source))
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(128))
    assert shards[0] == sorted(shards[0]), "evaluation does not shuffle"


@pytest.mark.parametrize("backend", BACKENDS)
def test_augmentation_is_reproducible_from_seed_and_epoch(backend, loader):
    aug_loader = loader(backend, "aug")
    first, again = run_epoch(aug_loader, 0), run_epoch(aug_loader, 0)
    other = run_epoch(aug_loader, 1)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not torch.equal(first[0][0], other[0][0])


def recover_params(outputs: torch.Tensor, source: np.ndarray, atol: float):
    """For each output, the (dy, dx, flip) whose crop of its source matches it outside a
    zeroed box, and that box: (shift [B,2], flip [B], box [B,4] y0,y1,x0,x1)."""
    lut = make_lut(NONE)
    values = lut[torch.arange(3), torch.from_numpy(source).long()]  # [B,32,32,3]
    pad_value = lut[:, 0]
    padded = pad_value.expand(len(source), 40, 40, 3).clone()
    padded[:, 4:36, 4:36] = values
    mirrored = padded.flip(2)  # output x reads padded 35 - x + dx: in mirrored, 4 + x - dx
    out = outputs.float().permute(0, 2, 3, 1)
    best = torch.full((len(source),), 10**9)
    shift = torch.zeros(len(source), 2, dtype=torch.int64)
    flip = torch.zeros(len(source), dtype=torch.int64)
    for f, base in ((0, padded), (1, mirrored)):
        for dy in range(-4, 5):
            for dx in range(-4, 5):
                x0 = 4 + dx if f == 0 else 4 - dx
                candidate = base[:, 4 + dy:36 + dy, x0:x0 + 32]
                wrong = ((out - candidate).abs() > atol).any(-1).sum((1, 2))
                better = wrong < best
                best = torch.where(better, wrong, best)
                shift[better] = torch.tensor([dy, dx])
                flip[better] = f
    assert int(best.max()) <= 16 * 16, "every output is a crop of its source but a box"
    zero = (out == 0).all(-1)  # erased pixels (a LUT value is never exactly 0)
    rows, cols = zero.any(2), zero.any(1)
    boxes = []
    for b in range(len(source)):
        ys, xs = rows[b].nonzero()[:, 0], cols[b].nonzero()[:, 0]
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        assert int(zero[b].sum()) == (y1 - y0) * (x1 - x0), "the zeroed region is a box"
        boxes.append((y0, y1, x0, x1))
    return shift, flip, torch.tensor(boxes)


def cutout_side_distribution(side: int = 16) -> dict:
    """Exact distribution of the clipped box length along one axis (centre uniform 0..31)."""
    lengths = [min(c - side // 2 + side, 32) - max(c - side // 2, 0) for c in range(32)]
    return {n: lengths.count(n) / 32 for n in set(lengths)}


@pytest.mark.parametrize("backend", BACKENDS)
def test_crop_flip_cutout_have_the_specified_distribution(backend, loader, prepared_data):
    source = prepared_data[1]["train"][0]
    aug_loader = loader(backend, "aug")
    aug_loader.set_epoch(0)
    order = aug_loader.epoch_indices().numpy()
    outputs = torch.cat([b[0] for b in run_epoch(aug_loader, 0)])
    shift, flip, box = recover_params(outputs, source[order], atol=1e-4)
    n = len(order)
    assert 0.4 < flip.float().mean() < 0.6
    for axis in (0, 1):
        counts = torch.bincount(shift[:, axis] + 4, minlength=9).float() / n
        assert counts.min() > 0.05 and counts.max() < 0.18, counts  # 1/9 each
        assert abs(float(shift[:, axis].float().mean())) < 0.5
    expected = cutout_side_distribution()
    mean_length = sum(length * p for length, p in expected.items())
    for lo in (0, 2):
        lengths = box[:, lo + 1] - box[:, lo]
        assert set(lengths.tolist()) <= set(expected)
        assert abs(float(lengths.float().mean()) - mean_length) < 0.8
    full = ((box[:, 1] - box[:, 0] == 16) & (box[:, 3] - box[:, 2] == 16)).float().mean()
    assert abs(float(full) - (17 / 32) ** 2) < 0.08


@pytest.mark.slow
def test_backends_agree_on_augmentation_statistics(loader, prepared_data):
    """Mean and std per channel of one augmented epoch agree across backends."""
    stats = {}
    for backend in installed_backends():
        images = torch.cat([b[0] for b in run_epoch(loader(backend, "aug"), 0)])
        stats[backend] = (images.mean((0, 2, 3)), images.std((0, 2, 3)))
    mean, std = stats["native"]
    for other_mean, other_std in stats.values():
        torch.testing.assert_close(other_mean, mean, atol=0.03, rtol=0)
        torch.testing.assert_close(other_std, std, atol=0.03, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mixing_gives_soft_targets(backend, loader, prepared_data):
    labels = prepared_data[1]["train"][1]
    mix_loader = loader(backend, "mix")
    mix_loader.set_epoch(0)
    order = mix_loader.epoch_indices().numpy()
    batches = run_epoch(mix_loader, 0)
    assert len(batches) == len(mix_loader) == 8
    targets = torch.cat([b[1] for b in batches])
    assert targets.dtype == torch.float32 and targets.shape == (512, 10)
    torch.testing.assert_close(targets.sum(1), torch.ones(512))
    assert float(targets.min()) >= 0.1 / 10 - 1e-7  # label smoothing's floor
    # Each sample's own label keeps at least the smoothing floor plus its own share.
    own = targets[torch.arange(512), torch.from_numpy(labels[order])]
    assert float(own.min()) > 0.01
    mixed = targets.max(1).values < 0.9  # a pure smoothed one-hot peaks at 0.91
    assert 0.3 < float(mixed.float().mean()) < 1.0, "most samples are mixed, not all"
    for images, _ in batches:
        assert images.permute(0, 2, 3, 1).is_contiguous()


def test_ffcv_and_native_give_bitwise_identical_augmented_batches(loader):
    """Same order helper, same parameter streams, same fused op: the same batches."""
    native, ffcv = run_epoch(loader("native", "mix"), 2), run_epoch(loader("ffcv", "mix"), 2)
    for (a, ta), (b, tb) in zip(native, ffcv):
        assert torch.equal(a, b) and torch.equal(ta, tb)


@pytest.mark.parametrize("kind", ["eval", "train"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_batches_held_by_the_caller_keep_their_values(backend, kind, loader, prepared_data):
    """list(loader) without copies: no backend may hand out memory it reuses later."""
    split = KINDS[kind]["split"]
    source, labels = prepared_data[1][split]
    held_loader = loader(backend, kind)
    held_loader.set_epoch(0)
    batches = list(held_loader)
    order = held_loader.epoch_indices()
    images = torch.cat([b[0] for b in batches])
    targets = torch.cat([b[1] for b in batches])
    assert identify(images, source) == order.tolist()
    assert torch.equal(targets, torch.from_numpy(labels)[order])


DALI_CONFIGS = {
    "zero-pad, cutout": CROP_FLIP_CUTOUT,
    "reflect-pad, cutout": AugmentConfig.for_dataset(DATASET, pad_mode="reflect", cutout=16),
    "erasing, mixup/cutmix": AugmentConfig.for_dataset(
        DATASET, cutout=0, erase_prob=0.5, mixup_alpha=1.0, cutmix_alpha=1.0,
        label_smoothing=0.1),
}


@pytest.mark.parametrize("name", DALI_CONFIGS)
def test_dali_graph_is_the_fused_op_spec(name, prepared_data):
    """DALI's sampled shift/flip/box and the batch step's erase box and mixing, replayed
    through the reference op, give its output."""
    config = DALI_CONFIGS[name]
    data_dir, truth = prepared_data
    images, labels = (torch.from_numpy(a) for a in truth["train"])
    dali = create_loader("dali", DATASET, "train", batch_size=64, train=True,
                         augment=config, data_dir=data_dir, seed=9, expose_params=True)
    dali.set_epoch(1)
    order = dali.epoch_indices()
    erased = 0
    for k, (out, targets) in enumerate(dali):
        batch = order[64 * k:64 * (k + 1)]
        params = dali.last_params
        expected, expected_targets = augment_reference(images, labels, params, config,
                                                       indices=batch)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(targets, expected_targets)
        erased += int((params.erase_box[:, 1] > params.erase_box[:, 0]).sum())
    assert k + 1 == len(dali)
    if config.erase_prob > 0:  # about half of the images carry an erased box
        assert 0.3 < erased / (len(dali) * 64) < 0.7


def test_torchvision_batches_do_not_depend_on_the_workers(loader, prepared_data):
    with_workers = create_loader("torchvision", DATASET, "train", batch_size=64, train=True,
                                 augment=CROP_FLIP_CUTOUT, seed=3, num_workers=2,
                                 data_dir=prepared_data[0])
    without = run_epoch(loader("torchvision", "aug"), 0)
    for (a, ta), (b, tb) in zip(run_epoch(with_workers, 0), without):
        assert torch.equal(a, b) and torch.equal(ta, tb)


def test_ffcv_leaves_torch_thread_count_alone(loader, prepared_data):
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # FFCV would set 2 (its num_workers) on build and per epoch
    try:
        fresh = create_loader("ffcv", DATASET, "test", batch_size=64, train=False,
                              num_workers=2, data_dir=prepared_data[0])
        assert torch.get_num_threads() == 1
        run_epoch(fresh, 0)
        run_epoch(loader("ffcv", "train"), 5)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("backend", BACKENDS)
def test_label_smoothing_alone_gives_smoothed_one_hot_targets(backend, prepared_data):
    data_dir, truth = prepared_data
    source, labels = truth["test"]
    config = AugmentConfig.for_dataset(DATASET, padding=0, flip=False, label_smoothing=0.1)
    smoothing = create_loader(backend, DATASET, "test", batch_size=64, train=False,
                              augment=config, data_dir=data_dir, num_workers=0)
    batches = run_epoch(smoothing, 0)
    targets = torch.cat([b[1] for b in batches])
    expected = torch.nn.functional.one_hot(torch.from_numpy(labels), 10) * 0.9 + 0.01
    torch.testing.assert_close(targets, expected.float(), rtol=0, atol=1e-7)
    images = torch.cat([b[0] for b in batches])
    torch.testing.assert_close(images, normalised(source), **tolerance(backend))


@pytest.mark.parametrize("backend,policy", [
    ("native", "autoaugment"), ("ffcv", "randaugment"),
    pytest.param("native", "randaugment", marks=pytest.mark.slow),
    pytest.param("native", "trivialaugment", marks=pytest.mark.slow),
])
def test_policy_batches_replay_the_shared_parameter_stream(backend, policy, prepared_data):
    """native and ffcv run policies inside the same `augment` call, with the same draws
    (the reference rebuilds the first batches; every batch is counted)."""
    data_dir, truth = prepared_data
    images, labels = (torch.from_numpy(a) for a in truth["train"])
    config = AugmentConfig.for_dataset(DATASET, augment_policy=policy, cutout=16,
                                       **({"ra_n": 3, "ra_m": 14} if policy == "randaugment"
                                          else {}))
    loader = create_loader(backend, DATASET, "train", batch_size=64, train=True,
                           augment=config, data_dir=data_dir, seed=4)
    loader.set_epoch(2)
    order = loader.epoch_indices()
    expected_stream = epoch_batch_params(loader.spec, batch_sizes(len(order), 64), 2)
    count = 0
    for k, ((out, targets), params) in enumerate(zip(loader, expected_stream)):
        count += 1
        assert params.policy.shape == (64, config.policy_steps)
        if k >= 2:
            continue
        batch = order[64 * k:64 * (k + 1)]
        expected, expected_targets = augment(images, labels, params, config, indices=batch,
                                             impl="reference")
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
        assert torch.equal(targets, expected_targets)
    assert count == len(loader) > 2


# P(an image changes): about 0.7 for AutoAugment with the paper's probabilities; nearly
# always for RandAugment (2 ops, 1 in 14 the identity); TrivialAugment's identity and
# bin-0 draws leave about 1 in 10 alone.
CHANGED = {"autoaugment": (0.4, 0.95), "randaugment": (0.85, 1.0),
           "trivialaugment": (0.7, 1.0)}


@pytest.mark.parametrize("policy", [
    "autoaugment",  # the strong recipe's; the others take seconds each as well
    pytest.param("randaugment", marks=pytest.mark.slow),
    pytest.param("trivialaugment", marks=pytest.mark.slow),
])
def test_policies_in_the_torchvision_baseline(policy, prepared_data):
    """torchvision's own transform per image (no crop/flip here): about as many images
    change as the policy says; without a policy none would."""
    data_dir, truth = prepared_data
    config = AugmentConfig.for_dataset(DATASET, padding=0, flip=False, augment_policy=policy)
    loader = create_loader("torchvision", DATASET, "train", batch_size=64, train=True,
                           augment=config, data_dir=data_dir, seed=4, num_workers=0)
    batches = run_epoch(loader, 0)
    check_layout(*batches[0], 64)
    outputs = torch.cat([images for images, _ in batches])
    source = truth["train"][0][loader.epoch_indices().numpy()]
    changed = (decode(outputs) != source).reshape(len(outputs), -1).any(axis=1).mean()
    low, high = CHANGED[policy]
    assert low < changed <= high, changed


def test_torchvision_baseline_builds_torchvisions_policy_transforms():
    def transform(policy, **options):
        config = AugmentConfig.for_dataset(DATASET, augment_policy=policy, **options)
        return policy_transform(config)

    assert transform("autoaugment").policy == v2.AutoAugmentPolicy.CIFAR10
    randaugment = transform("randaugment", ra_n=4, ra_m=20)
    assert isinstance(randaugment, v2.RandAugment)
    assert (randaugment.num_ops, randaugment.magnitude) == (4, 20)
    assert isinstance(transform("trivialaugment"), v2.TrivialAugmentWide)


@pytest.mark.parametrize("policy", list(CHANGED))
def test_dali_runs_its_own_policies(policy, prepared_data):
    """DALI's own policy (no crop/flip/cutout here): about as many images change as the
    policy says, and the same seed gives the same epoch."""
    data_dir, truth = prepared_data
    config = AugmentConfig.for_dataset(DATASET, padding=0, flip=False, augment_policy=policy)
    dali = create_loader("dali", DATASET, "train", batch_size=64, train=True,
                         augment=config, data_dir=data_dir, seed=5)
    dali.set_epoch(0)
    order = dali.epoch_indices().numpy()
    first = run_epoch(dali, 0)
    outputs = torch.cat([images for images, _ in first])
    check_layout(*first[0], 64)
    source = truth["train"][0][order[:len(outputs)]]
    changed = (decode(outputs) != source).reshape(len(outputs), -1).any(axis=1).mean()
    low, high = CHANGED[policy]
    assert low < changed <= high, changed
    again = torch.cat([images for images, _ in run_epoch(dali, 0)])
    assert torch.equal(outputs, again)


@pytest.mark.parametrize("backend", BACKENDS)
def test_uneven_rank_blocks_without_drop_last_cover_the_epoch(backend, prepared_data):
    """512 samples over 3 ranks (blocks of 170/171/171), train order, partial batches kept:
    every epoch visits each sample once, with no empty batch, as len() announced."""
    data_dir = prepared_data[0]
    source = prepared_data[1]["train"][0]
    # Batches of 34: a block of 170 makes 5, one of 171 makes 6.
    ranks = [create_loader(backend, DATASET, "train", batch_size=34, train=True,
                           drop_last=False, rank=r, world_size=3, seed=5, data_dir=data_dir,
                           num_workers=0 if backend == "torchvision" else 2)
             for r in range(3)]
    for epoch in (0, 1):
        seen = []
        for rank_loader in ranks:
            batches = run_epoch(rank_loader, epoch)
            assert len(batches) == len(rank_loader)
            assert all(len(targets) > 0 for _, targets in batches)
            visited = identify(torch.cat([b[0] for b in batches]), source)
            assert visited == rank_loader.epoch_indices().tolist()
            seen += visited
        assert sorted(seen) == list(range(512))


def test_ffcv_fixed_order_augmentation_changes_with_the_epoch(prepared_data):
    """An unshuffled loader with augmentation (TTA-style) reseeds it with set_epoch."""
    pytest.importorskip("ffcv")
    fixed = create_loader("ffcv", DATASET, "test", batch_size=64, train=False,
                          augment=CROP_FLIP_CUTOUT, seed=3, data_dir=prepared_data[0])
    first, again, other = run_epoch(fixed, 0), run_epoch(fixed, 0), run_epoch(fixed, 1)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again))
    assert not torch.equal(first[0][0], other[0][0])
