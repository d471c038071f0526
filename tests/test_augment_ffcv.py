"""The FFCV op: its numba batch function against the reference, then inside a real Loader."""
import numpy as np
import pytest
import torch
from numba import njit

from fastcifar.augment import AugmentConfig, augment_reference, identity_params
from fastcifar.augment.ffcv_op import (
    batch_seed,
    make_batch_function,
    make_ffcv_augment_op,
    sample_batch_params,
)
from fastcifar.errors import UserError

CONFIG = AugmentConfig.for_dataset("cifar10", pad_mode="reflect", erase_prob=0.7)

pytestmark = pytest.mark.slow  # numba compiles of the FFCV op (and a real Loader)


def expected_batch(config, seed, images, indices):
    """What the op must produce: the reference run on the op's own sampled params."""
    shift, flips, boxes = sample_batch_params(
        len(indices), batch_seed(seed, indices), config.padding, config.flip, config.cutout,
        config.erase_prob, config.erase_area, tuple(np.log(config.erase_ratio)))
    params = identity_params(len(indices))
    params.shift, params.flip = torch.from_numpy(shift), torch.from_numpy(flips)
    params.erase_box = torch.from_numpy(boxes)
    labels = torch.zeros(len(images), dtype=torch.int64)
    out, _ = augment_reference(torch.from_numpy(images), labels, params, config,
                               indices=torch.from_numpy(indices.astype(np.int64)))
    return out, params


def test_batch_function_matches_reference_and_reseeds_per_batch():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (9, 32, 32, 3), dtype=np.uint8)
    # Serial here (FFCV's default of one thread); the parallel loop is numba_cpu's, tested there.
    fused = njit(make_batch_function(CONFIG, seed=3))
    indices = np.array([4, 0, 8, 2, 7], dtype=np.uint64)
    dst = np.full((6, 32, 32, 3), np.nan, np.float32)  # FFCV's buffer may be longer
    result = fused(images[indices.astype(np.int64)], dst, indices)
    expected, params = expected_batch(CONFIG, 3, images, indices)
    assert result.shape == (5, 32, 32, 3) and np.shares_memory(result, dst)
    assert torch.equal(torch.from_numpy(result), expected.permute(0, 2, 3, 1))
    assert (params.erase_box[:, 1] > params.erase_box[:, 0]).any()  # erasing exercised
    again = fused(images[indices.astype(np.int64)], dst.copy(), indices)
    assert np.array_equal(again, result)  # same seed and batch: same output
    other = fused(images[indices[::-1].astype(np.int64)], dst.copy(), indices[::-1])
    assert not np.array_equal(other[::-1], result)  # another batch order: other draws


def test_mixing_configs_are_refused():
    with pytest.raises(UserError, match="mixup"):
        make_batch_function(AugmentConfig.for_dataset("cifar10", mixup_alpha=1.0), seed=0)


def test_op_inside_an_ffcv_loader(tmp_path):
    pytest.importorskip("ffcv")
    from ffcv.fields import IntField, RGBImageField
    from ffcv.fields.decoders import IntDecoder, SimpleRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import ToTensor, ToTorchImage
    from ffcv.writer import DatasetWriter

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    samples = [(images[i], i) for i in range(8)]
    path = str(tmp_path / "tiny.beton")
    DatasetWriter(path, {"image": RGBImageField(write_mode="raw"), "label": IntField()},
                  num_workers=1).from_indexed_dataset(samples)
    loader = Loader(path, batch_size=4, num_workers=1, order=OrderOption.SEQUENTIAL,
                    pipelines={
                        "image": [SimpleRGBImageDecoder(), make_ffcv_augment_op(CONFIG, seed=11),
                                  ToTensor(), ToTorchImage(channels_last=True)],
                        "label": [IntDecoder(), ToTensor()],
                    })
    batches = list(loader)
    assert len(batches) == 2
    for start, (batch, labels) in zip((0, 4), batches):
        indices = np.arange(start, start + 4, dtype=np.uint64)
        assert labels.flatten().tolist() == indices.tolist()
        assert batch.dtype == torch.float32 and batch.shape == (4, 3, 32, 32)
        assert batch.is_contiguous(memory_format=torch.channels_last)
        expected, _ = expected_batch(CONFIG, 11, images, indices)
        assert torch.equal(batch, expected)
