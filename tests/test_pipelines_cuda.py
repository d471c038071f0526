"""The loaders on a CUDA device: same values as on CPU, device-resident output, streams."""
from __future__ import annotations

import pytest
import torch

from fastcifar.augment import AugmentConfig, augment_reference
from fastcifar.backends import BACKEND_NAMES as BACKENDS
from fastcifar.bench.loader import measure_loader
from fastcifar.pipelines import create_loader
from fastcifar.pipelines.base import (
    AUGMENT_STREAM,
    batch_sizes,
    derive_seed,
    iter_batch_params,
    make_generator,
)
from tests.helpers import identify, normalised, tolerance

pytestmark = pytest.mark.cuda

DATASET = "cifar10"
MIXING = AugmentConfig.for_dataset(DATASET, cutout=16, mixup_alpha=0.4, cutmix_alpha=1.0,
                                   label_smoothing=0.1)


def make(backend, split, data_dir, **kwargs):
    kwargs.setdefault("train", split == "train")
    return create_loader(backend, DATASET, split, device="cuda", data_dir=data_dir,
                         num_workers=2, seed=5, **kwargs)


def gather(loader, epoch=0):
    loader.set_epoch(epoch)
    return [(x.clone(), y.clone()) for x, y in loader]


@pytest.mark.parametrize("backend", BACKENDS)
def test_eval_on_the_gpu_is_the_normalised_source(backend, prepared_data):
    data_dir, truth = prepared_data
    source, labels = truth["test"]
    batches = gather(make(backend, "test", data_dir, batch_size=50))
    for images, targets in batches:
        assert images.is_cuda and targets.is_cuda
        assert images.permute(0, 2, 3, 1).is_contiguous()
    images = torch.cat([b[0] for b in batches]).cpu()
    torch.testing.assert_close(images, normalised(source), **tolerance(backend))
    assert torch.equal(torch.cat([b[1] for b in batches]).cpu(), torch.from_numpy(labels))


@pytest.mark.parametrize("backend", BACKENDS)
def test_train_on_the_gpu_follows_its_announced_order(backend, prepared_data):
    data_dir, truth = prepared_data
    loader = make(backend, "train", data_dir, batch_size=64)
    batches = gather(loader, 1)
    seen = identify(torch.cat([b[0] for b in batches]).cpu(), truth["train"][0])
    assert seen == loader.epoch_indices().tolist()
    assert sorted(seen) == list(range(512))


def test_native_prefetch_on_a_side_stream_changes_nothing(prepared_data):
    data_dir = prepared_data[0]
    ahead = gather(make("native", "train", data_dir, batch_size=64, augment=MIXING), 2)
    inline = gather(make("native", "train", data_dir, batch_size=64, augment=MIXING,
                         prefetch=False), 2)
    for (a, ta), (b, tb) in zip(ahead, inline):
        assert torch.equal(a, b) and torch.equal(ta, tb)


def test_native_batches_survive_being_held(prepared_data):
    """Batches made on the side stream stay intact while later ones are produced."""
    data_dir = prepared_data[0]
    loader = make("native", "train", data_dir, batch_size=64, augment=MIXING)
    held = list(loader)  # no clone: each tensor must stay valid
    loader.set_epoch(0)
    fresh = gather(loader, 0)
    for (a, ta), (b, tb) in zip(held, fresh):
        assert torch.equal(a, b) and torch.equal(ta, tb)


@pytest.mark.parametrize("backend", ["native", "ffcv"])
def test_gpu_batches_are_the_fused_op_over_the_announced_samples(backend, prepared_data):
    data_dir, truth = prepared_data
    images, labels = (torch.from_numpy(a).cuda() for a in truth["train"])
    loader = make(backend, "train", data_dir, batch_size=64, augment=MIXING)
    loader.set_epoch(1)
    order = loader.epoch_indices().cuda()
    generator = make_generator(derive_seed(5, 1, AUGMENT_STREAM, 0), "cuda")
    params = iter_batch_params(MIXING, batch_sizes(len(order), 64), generator, "cuda")
    for k, ((out, targets), p) in enumerate(zip(loader, params)):
        expected, expected_targets = augment_reference(images, labels, p, MIXING,
                                                       indices=order[64 * k:64 * (k + 1)])
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
        torch.testing.assert_close(targets, expected_targets, rtol=0, atol=1e-6)
    assert k + 1 == len(loader)


def test_dali_gpu_graph_is_the_fused_op_spec(prepared_data):
    data_dir, truth = prepared_data
    images, labels = (torch.from_numpy(a) for a in truth["train"])
    config = AugmentConfig.for_dataset(DATASET, cutout=16)
    dali = make("dali", "train", data_dir, batch_size=64, augment=config, expose_params=True)
    dali.set_epoch(0)
    order = dali.epoch_indices()
    for k, (out, _targets) in enumerate(dali):
        expected, _ = augment_reference(images, labels, dali.last_params, config,
                                        indices=order[64 * k:64 * (k + 1)])
        torch.testing.assert_close(out.cpu(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_measure_loader_on_the_gpu(backend, prepared_data):
    loader = make(backend, "train", prepared_data[0], batch_size=64,
                  augment=AugmentConfig.for_dataset(DATASET, cutout=16))
    result = measure_loader(loader, epochs=1)
    assert result["batches"] == 8 and result["images_per_sec"] > 0


def test_dali_gpu_batches_survive_being_held(prepared_data):
    """DALI's iterator reuses its output buffers; batches a caller keeps must not change."""
    loader = make("dali", "train", prepared_data[0], batch_size=64, augment=MIXING)
    loader.set_epoch(0)
    held = list(loader)  # no clones
    fresh = gather(loader, 0)
    for (a, ta), (b, tb) in zip(held, fresh):
        assert torch.equal(a, b) and torch.equal(ta, tb)


def test_dali_gpu_ranks_cover_the_epoch_once(prepared_data):
    data_dir, truth = prepared_data
    seen = []
    for rank in range(2):
        loader = make("dali", "train", data_dir, batch_size=32, rank=rank, world_size=2)
        batches = gather(loader, 1)
        assert len(batches) == len(loader)
        visited = identify(torch.cat([b[0] for b in batches]).cpu(), truth["train"][0])
        assert visited == loader.epoch_indices().tolist()
        seen += visited
    assert len(seen) == len(set(seen)) == 512  # 256 per rank, whole batches of 32


def test_dali_feeds_the_trainer_without_a_host_sync_per_batch(prepared_data, tmp_path):
    """The trainer's per-batch body (loader batch -> captured step) under torch's sync debug
    mode: a host read in the loop (not DALI's own stream work) raises."""
    from fastcifar.engine.dist import DistContext
    from fastcifar.engine.loop import Trainer
    from fastcifar.engine.resolve import resolve_config

    config = resolve_config({"model": "resnet20", "dataset": DATASET, "backend": "dali",
                             "data_dir": str(prepared_data[0]), "out": str(tmp_path / "run"),
                             "device": "cuda", "batch_size": 64, "epochs": 1,
                             "progress": False})
    trainer = Trainer(DistContext.single("cuda"), config)
    trainer.train_loader.set_epoch(0)
    batches = iter(trainer.train_loader)
    for _ in range(trainer.runner.warmup_calls):  # eager warm-up and capture first
        trainer.train_batch(*next(batches))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for images, targets in batches:
            trainer.train_batch(images, targets)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()
    assert torch.isfinite(trainer.buffers.metrics).all()
