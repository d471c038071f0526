"""The loader factory, the shared ordering/sharding rules, mixing, static buffers, bench."""
from __future__ import annotations

import sys
from itertools import islice

import numpy as np
import pytest
import torch

from fastcifar.augment import AugmentConfig, augment_reference, identity_params, sample_params
from fastcifar.errors import MissingExtraError, UserError
from fastcifar.pipelines import create_loader
from fastcifar.pipelines.base import (
    AUGMENT_STREAM,
    batch_sizes,
    batches_per_epoch,
    derive_seed,
    epoch_indices,
    iter_batch_params,
    make_generator,
    samples_per_rank,
    shard_bounds,
)
from fastcifar.pipelines.mixing import mix_batch

DATASET = "cifar10"


@pytest.mark.parametrize("num_samples,world_size", [(512, 1), (512, 2), (50000, 8), (101, 3)])
def test_shard_blocks_partition_the_order(num_samples, world_size):
    blocks = [shard_bounds(num_samples, r, world_size) for r in range(world_size)]
    assert blocks[0][0] == 0 and blocks[-1][1] == num_samples
    assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
    sizes = [stop - start for start, stop in blocks]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("num_samples,world_size,batch_size",
                         [(101, 3, 8), (512, 2, 48), (50000, 8, 512)])
def test_training_shards_are_disjoint_with_equal_full_batches(num_samples, world_size, batch_size):
    for epoch in (0, 1):
        shards = [epoch_indices(num_samples, seed=5, epoch=epoch, shuffle=True, rank=r,
                                world_size=world_size, batch_size=batch_size, drop_last=True)
                  for r in range(world_size)]
        lengths = {len(s) for s in shards}
        assert len(lengths) == 1 and lengths.pop() % batch_size == 0
        every = torch.cat(shards)
        assert len(torch.unique(every)) == len(every), "ranks share no sample"
        assert every.min() >= 0 and every.max() < num_samples
        counts = {batches_per_epoch(num_samples, r, world_size, batch_size, True)
                  for r in range(world_size)}
        assert counts == {len(shards[0]) // batch_size}


def test_eval_shards_cover_everything_in_order():
    shards = [epoch_indices(101, seed=5, epoch=7, shuffle=False, rank=r, world_size=3,
                            batch_size=8, drop_last=False) for r in range(3)]
    assert torch.equal(torch.cat(shards), torch.arange(101))
    assert [batches_per_epoch(101, r, 3, 8, False) for r in range(3)] == [5, 5, 5]
    assert samples_per_rank(101, 2, 3, 8, False) == 34


def test_order_depends_on_seed_and_epoch_only():
    def order(seed, epoch):
        return epoch_indices(1000, seed=seed, epoch=epoch, shuffle=True, rank=0, world_size=1,
                             batch_size=10, drop_last=True)

    assert torch.equal(order(1, 2), order(1, 2))
    assert not torch.equal(order(1, 2), order(1, 3))
    assert not torch.equal(order(1, 2), order(2, 2))
    assert sorted(order(1, 2).tolist()) == list(range(1000))
    seeds = {derive_seed(0, e, s, r) for e in range(20) for s in range(3) for r in range(4)}
    assert len(seeds) == 240


@pytest.mark.parametrize("policy", ["none", "trivialaugment"])
def test_batch_params_without_mixing_are_sliced_from_one_draw(policy):
    config = AugmentConfig.for_dataset(DATASET, cutout=16, augment_policy=policy)
    sizes = batch_sizes(130, 64)
    assert sizes == [64, 64, 2]
    params = list(iter_batch_params(config, sizes, make_generator(1, "cpu"), "cpu"))
    whole = sample_params(config, 130, make_generator(1, "cpu"), "cpu")
    assert torch.equal(torch.cat([p.shift for p in params]), whole.shift)
    assert torch.equal(torch.cat([p.policy for p in params]), whole.policy)
    for p, size in zip(params, sizes):
        p.check(size, torch.device("cpu"), config.policy_steps)  # as the op needs them
        assert torch.equal(p.partner, torch.arange(size))


@pytest.mark.parametrize("mixup,cutmix,smoothing",
                         [(1.0, 0.0, 0.0), (0.0, 1.0, 0.1), (0.4, 1.0, 0.2), (0.0, 0.0, 0.1)])
def test_batch_mixing_matches_the_fused_op_spec(mixup, cutmix, smoothing):
    config = AugmentConfig.for_dataset(DATASET, cutout=8, mixup_alpha=mixup, cutmix_alpha=cutmix,
                                       label_smoothing=smoothing)
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8))
    labels = torch.from_numpy(rng.integers(0, 10, 20))
    params = sample_params(config, 20, make_generator(4, "cpu"), "cpu")
    expected_images, expected_targets = augment_reference(images, labels, params, config)
    # What DALI/torchvision produce per image (no mixing), then mixed as a batch.
    unmixed = AugmentConfig.for_dataset(DATASET, cutout=8)
    single = identity_params(20)
    single.shift, single.flip, single.erase_box = params.shift, params.flip, params.erase_box
    per_image, _ = augment_reference(images, labels, single, unmixed)
    mixed, targets = mix_batch(per_image, labels, params, config)
    torch.testing.assert_close(mixed, expected_images, rtol=0, atol=1e-6)
    torch.testing.assert_close(targets, expected_targets, rtol=0, atol=1e-7)
    assert mixed.permute(0, 2, 3, 1).is_contiguous()


@pytest.mark.parametrize("kwargs,message", [
    (dict(backend="nope"), "unknown backend"),
    (dict(batch_size=0), "batch_size"),
    (dict(rank=2, world_size=2), "rank"),
    (dict(dtype=torch.int32), "dtype"),
    (dict(augment=AugmentConfig.for_dataset("cifar100")), "100 classes"),
    (dict(dataset="mnist"), "unknown dataset"),
])
def test_factory_rejects_bad_arguments_with_one_line(kwargs, message, tmp_path):
    arguments = dict(backend="native", dataset=DATASET, split="train", batch_size=8, train=True,
                     data_dir=tmp_path)
    arguments.update(kwargs)
    backend, dataset, split = (arguments.pop(k) for k in ("backend", "dataset", "split"))
    with pytest.raises(UserError, match=message):
        create_loader(backend, dataset, split, **arguments)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_a_gpu_is_a_user_error(prepared_data):
    with pytest.raises(UserError, match="no CUDA GPU"):
        create_loader("native", DATASET, "test", batch_size=8, train=False, device="cuda",
                      data_dir=prepared_data[0])


def test_unprepared_data_names_the_prepare_command(tmp_path):
    with pytest.raises(UserError, match="fastcifar prepare"):
        create_loader("native", DATASET, "train", batch_size=8, train=True, data_dir=tmp_path)


@pytest.mark.parametrize("backend,module,package,extra", [
    ("ffcv", "ffcv", "ffcv", "ffcv"),
    ("dali", "nvidia.dali", "dali", "dali"),
])
def test_missing_optional_backend_says_how_to_install_it(backend, module, package, extra,
                                                         monkeypatch, prepared_data):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(MissingExtraError, match=rf"pip install 'fastcifar\[{extra}\]'") as error:
        create_loader(backend, DATASET, "test", batch_size=8, train=False,
                      data_dir=prepared_data[0])
    assert str(error.value).startswith(package)


def test_native_batches_are_the_fused_op_over_the_announced_samples(prepared_data):
    data_dir, truth = prepared_data
    images, labels = (torch.from_numpy(a) for a in truth["train"])
    config = AugmentConfig.for_dataset(DATASET, cutout=16, mixup_alpha=0.4, cutmix_alpha=1.0,
                                       label_smoothing=0.1)
    loader = create_loader("native", DATASET, "train", batch_size=64, train=True, augment=config,
                           seed=11, rank=1, world_size=2, data_dir=data_dir)
    loader.set_epoch(3)
    order = loader.epoch_indices()
    generator = make_generator(derive_seed(11, 3, AUGMENT_STREAM, 1), "cpu")
    params = iter_batch_params(config, batch_sizes(len(order), 64), generator, "cpu")
    batches = list(loader)
    assert len(batches) == len(loader) == 4
    for k, ((out, targets), p) in enumerate(zip(batches, params)):
        expected, expected_targets = augment_reference(images, labels, p, config,
                                                       indices=order[64 * k:64 * (k + 1)])
        assert torch.equal(out, expected)
        assert targets.dtype == torch.float32 and targets.shape == (64, 10)
        torch.testing.assert_close(targets, expected_targets, rtol=0, atol=1e-7)
        torch.testing.assert_close(targets.sum(1), torch.ones(64))


@pytest.mark.parametrize("policy", ["autoaugment", "randaugment"])
def test_native_policy_epoch_started_later_continues_it(policy, prepared_data):
    """A policy's entries are drawn with mixing batch by batch: starting at batch k
    advances that stream too (the fused op's own draws are covered for every backend
    elsewhere)."""
    data_dir, _ = prepared_data
    config = AugmentConfig.for_dataset(DATASET, cutout=8, augment_policy=policy,
                                       mixup_alpha=0.5)
    native = create_loader("native", DATASET, "train", batch_size=16, train=True,
                           augment=config, data_dir=data_dir, seed=1)
    native.set_epoch(4)
    whole = [(images.clone(), targets.clone()) for images, targets in islice(native, 6)]
    native.set_epoch(4, start_batch=4)
    rest = list(islice(native, 2))
    for (images, targets), (want_images, want_targets) in zip(rest, whole[4:], strict=True):
        assert torch.equal(images, want_images) and torch.equal(targets, want_targets)


@pytest.mark.parametrize("backend", ["native", "torchvision"])
def test_low_precision_output_keeps_channels_last(backend, prepared_data):
    loader = create_loader(backend, DATASET, "test", batch_size=32, train=False,
                           dtype=torch.bfloat16, data_dir=prepared_data[0], num_workers=0)
    images, targets = next(iter(loader))
    assert images.dtype == torch.bfloat16 and images.permute(0, 2, 3, 1).is_contiguous()
    reference = create_loader(backend, DATASET, "test", batch_size=32, train=False,
                              data_dir=prepared_data[0], num_workers=0)
    assert torch.equal(images, next(iter(reference))[0].to(torch.bfloat16))
