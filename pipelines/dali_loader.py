"""The DALI loader: DALI reads the webdataset shard and augments with its own operators.

One pipeline per epoch, seeded from (seed, epoch): DALI's random state only moves
forward, so building afresh is what makes `set_epoch(e)` reproducible on its own (a
CPU pipeline builds in milliseconds; the tar index is cached, see dali_index.py).
Operators run on the GPU when the loader's device is CUDA, on DALI's CPU threads
otherwise: pad-crop (zero or reflect padding), the augmentation policy (DALI's own, see
policy_graph), flip, normalisation and cutout. Random erasing (a box from ten
rejection-sampled tries, which DALI's per-sample arithmetic cannot select),
mixup/cutmix and label smoothing are applied to the batch afterwards (mixing.py) with
the same parameter sampler as the fused op.

Sharding is DALI's own: rank r reads the contiguous block (r + epoch) % W of the archive
(blocks rotate between epochs, as DALI does without stick_to_shard) and shuffles it in a
buffer as large as the block, i.e. a full shuffle of that block. Training cuts every rank
to the same number of full batches, as base.py does.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from fastcifar.augment import AugmentConfig, identity_params
from fastcifar.augment.config import IMAGE_SIZE
from fastcifar.backends import require_extra
from fastcifar.pipelines.base import (
    AUGMENT_STREAM,
    MIX_STREAM,
    ORDER_STREAM,
    BaseLoader,
    LoaderSpec,
    batches_per_epoch,
    derive_seed,
    samples_per_rank,
    shard_bounds,
    stream_generator,
)
from fastcifar.pipelines.dali_index import cached_index
from fastcifar.pipelines.mixing import BatchMixer
from fastcifar.storage import dataset_dir, read_manifest, shard_names, shard_path

MAX_SHUFFLE_BUFFER = 1 << 16  # samples; CIFAR's 50k train split (150 MB) fits whole
_DALI_SEED_MOD = 1 << 31  # DALI seeds are C ints


def augment_graph(images, config: AugmentConfig, expose_params: bool = False):
    """uint8 HWC images -> normalised float32 HWC, augmented as `config` says.

    A plain function of a DataNode, separate from the reader, so one graph serves any
    source. Returns (images, params) where params holds the sampled shift, flip and
    erase box as DataNodes when expose_params (for tests), else {}.
    """
    from nvidia.dali import fn, types
    from nvidia.dali import math as dmath

    params = {}
    if config.padding > 0:
        p = config.padding
        # Output (y, x) reads source (y + dy, x + dx); outside reads uint8 0 or the
        # mirrored pixel, as the op.
        shift = fn.random.uniform(values=[float(v) for v in range(-p, p + 1)], shape=[2],
                                  dtype=types.INT32)
        if config.pad_mode == "reflect":
            images = fn.slice(reflect_pad(images, p), start=shift + p,
                              shape=[IMAGE_SIZE, IMAGE_SIZE], axis_names="HW")
        else:
            images = fn.slice(images, start=shift, shape=[IMAGE_SIZE, IMAGE_SIZE],
                              axis_names="HW", out_of_bounds_policy="pad", fill_values=0)
        params["shift"] = shift
    if config.augment_policy != "none":
        images = policy_graph(images, config)
    mirror = fn.random.coin_flip(probability=0.5, dtype=types.INT32) if config.flip else 0
    if config.flip:
        params["flip"] = mirror
    # Flip after the crop is the op's x' = 31 - x then + dx; normalising with mean/std
    # scaled to 0..255 (DALI multiplies by 1/std: last-bit differences from the LUT).
    images = fn.crop_mirror_normalize(
        images, mirror=mirror, dtype=types.FLOAT, output_layout="HWC",
        mean=[255.0 * m for m in config.mean], std=[255.0 * s for s in config.std])
    if config.cutout > 0:
        centre = fn.random.uniform(values=[float(v) for v in range(IMAGE_SIZE)], shape=[2],
                                   dtype=types.INT32)
        start = centre - config.cutout // 2
        low = dmath.max(start, 0)
        high = dmath.min(start + config.cutout, IMAGE_SIZE)
        # Cutout sets the box to 0 after normalisation (the dataset mean colour).
        images = fn.erase(images, anchor=fn.cast(low, dtype=types.FLOAT),
                          shape=fn.cast(high - low, dtype=types.FLOAT), axis_names="HW",
                          fill_value=0.0)
        params["erase_low"], params["erase_high"] = low, high
    return images, (params if expose_params else {})


def policy_graph(images, config: AugmentConfig):
    """DALI's own AutoAugment, RandAugment or TrivialAugmentWide, set up like ours where
    DALI lets it: nearest interpolation, fill 0, torchvision's translation ranges (150/331
    of the side; the whole side for TrivialAugmentWide). DALI's magnitudes follow the
    papers' code rather than torchvision's: AutoAugment's "reduced_cifar10" has 11 bins
    and unsigned enhance factors in 0.1..1.9 (torchvision: 10 bins, 1 +- 0.9), and its
    RandAugment and TrivialAugment op suites and ranges differ in details, so the
    distributions are close to the other backends', not equal. Flip comes after the policy
    here (before it elsewhere): every geometric op's sign is drawn 50/50, so the order
    does not change the distribution."""
    from nvidia.dali import types
    from nvidia.dali.auto_aug import auto_augment, rand_augment, trivial_augment

    common = dict(shape=(IMAGE_SIZE, IMAGE_SIZE), fill_value=0, interp_type=types.INTERP_NN)
    # DALI 2.4's auto_aug still calls fn.experimental aliases it has deprecated, and
    # forces those warnings on: recorded here and dropped (nothing a user can act on);
    # any other warning goes on.
    with warnings.catch_warnings(record=True) as caught:
        if config.augment_policy == "autoaugment":
            images = auto_augment.auto_augment(images, policy_name="reduced_cifar10",
                                               max_translate_rel=150 / 331, **common)
        elif config.augment_policy == "randaugment":
            images = rand_augment.rand_augment(images, n=config.ra_n, m=config.ra_m,
                                               max_translate_rel=150 / 331, **common)
        else:
            images = trivial_augment.trivial_augment_wide(images, max_translate_rel=1.0,
                                                          **common)
    for w in caught:
        if not (issubclass(w.category, DeprecationWarning)
                and "nvidia.dali.fn.experimental." in str(w.message)):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return images


def reflect_pad(images, p: int):
    """HWC images padded by `p` on each side with their mirror image, edge pixel not
    repeated (torch's and numpy's "reflect"): DALI has no reflect padding, so the four
    bands are sliced from the image, flipped and concatenated."""
    from nvidia.dali import fn

    def mirrored_band(node, axis: str, start: int):
        band = fn.slice(node, start=[start], shape=[p], axis_names=axis)
        return fn.flip(band, horizontal=int(axis == "W"), vertical=int(axis == "H"))

    last = IMAGE_SIZE - 1 - p  # the band before the last row/column, mirrored
    tall = fn.cat(mirrored_band(images, "H", 1), images, mirrored_band(images, "H", last),
                  axis_name="H")
    return fn.cat(mirrored_band(tall, "W", 1), tall, mirrored_band(tall, "W", last),
                  axis_name="W")


class DALILoader(BaseLoader):
    backend = "dali"

    def __init__(self, spec: LoaderSpec, tar_path: Path, index_path: Path, num_samples: int,
                 prefetch_queue_depth: int = 2, expose_params: bool = False):
        super().__init__(spec, num_samples)
        self.tar_path, self.index_path = tar_path, index_path
        self.prefetch_queue_depth = prefetch_queue_depth
        self.expose_params = expose_params
        self.last_params = None  # AugmentParams of the last batch when expose_params
        self.param_names: list[str] = []  # extra pipeline outputs (set by _pipeline)

    def _shard_id(self, epoch: int) -> int:
        s = self.spec
        return (s.rank + epoch) % s.world_size if s.shuffle else s.rank

    def __len__(self) -> int:
        # The block this rank reads rotates with the epoch, and blocks differ by one sample
        # when N is not a multiple of W: count the block actually read.
        s = self.spec
        return batches_per_epoch(self.num_samples, self._shard_id(self.epoch), s.world_size,
                                 s.batch_size, s.drop_last)

    def _reader(self, epoch: int):
        from nvidia.dali import fn, types

        s = self.spec
        start, stop = shard_bounds(self.num_samples, self._shard_id(epoch), s.world_size)
        buffer = max(1, min(stop - start, MAX_SHUFFLE_BUFFER))
        shuffle = dict(random_shuffle=True, initial_fill=buffer)
        return fn.readers.webdataset(
            paths=[str(self.tar_path)], index_paths=[str(self.index_path)], ext=["rgb", "cls"],
            dtypes=[types.UINT8, types.INT64], name="reader",
            shard_id=self._shard_id(epoch), num_shards=s.world_size,
            seed=derive_seed(s.seed, epoch, ORDER_STREAM) % _DALI_SEED_MOD,
            **(shuffle if s.shuffle else {}))

    def _pipeline(self, epoch: int, reader_only: bool = False):
        from nvidia.dali import fn, pipeline_def

        s = self.spec
        on_gpu = s.device.type == "cuda"

        # DALI's policies branch per sample: they need the pipeline's conditionals, which
        # only a pipeline_def function gets.
        @pipeline_def(enable_conditionals=s.augment.augment_policy != "none"
                      and not reader_only)
        def graph():
            raw, labels = self._reader(epoch)
            if reader_only:
                return fn.get_property(raw, key="source_info")
            images = fn.reshape(raw, shape=[IMAGE_SIZE, IMAGE_SIZE, 3], layout="HWC")
            if on_gpu:
                # Raw uint8 goes to the GPU (4x fewer bytes than float32); ops run there.
                images, labels = images.gpu(), labels.gpu()
            images, params = augment_graph(images, s.augment, self.expose_params)
            self.param_names = sorted(params)
            return (images, labels, *(params[name] for name in self.param_names))

        return graph(batch_size=s.batch_size, num_threads=max(1, s.num_workers),
                     device_id=s.device.index if on_gpu else None,
                     seed=derive_seed(s.seed, epoch, AUGMENT_STREAM, s.rank) % _DALI_SEED_MOD,
                     prefetch_queue_depth=self.prefetch_queue_depth)

    def epoch_indices(self) -> torch.Tensor:
        """The indices of this epoch, found by running the reader alone (reads the shard)."""
        pipe = self._pipeline(self.epoch, reader_only=True)
        pipe.build()
        s = self.spec
        count = samples_per_rank(self.num_samples, self._shard_id(self.epoch), s.world_size,
                                 s.batch_size, s.drop_last)
        found = []
        while len(found) < count:
            (info,) = pipe.run()
            found += [_sample_number(np.array(info[i])) for i in range(len(info))]
        return torch.tensor(found[:count], dtype=torch.int64)

    def __iter__(self):
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

        s = self.spec
        pipe = self._pipeline(self.epoch)
        policy = LastBatchPolicy.DROP if s.drop_last else LastBatchPolicy.PARTIAL
        batches = DALIGenericIterator([pipe], ["images", "labels", *self.param_names],
                                      reader_name="reader", last_batch_policy=policy,
                                      auto_reset=False)
        mix = BatchMixer(s.augment, stream_generator(s, self.epoch, MIX_STREAM), s.device,
                         erase=True)
        # Capped at len(self): with drop_last every rank runs the same number of full
        # batches, although rotating blocks may hold one sample more than another. The
        # pipeline's random state only moves forward: an epoch started at a later batch
        # reads the batches before it and drops them (the mixer skips their draws).
        for number, (data,) in zip(range(len(self)), batches):
            if number < self.start_batch:
                mix.skip(1, data["images"].shape[0])
                continue
            images = data["images"].permute(0, 3, 1, 2)  # HWC storage is NCHW channels_last
            images = images.to(s.device, s.dtype, non_blocking=True)
            targets = data["labels"].view(-1).to(s.device, non_blocking=True)
            images, targets = mix(images, targets)
            if self.expose_params:
                self.last_params = _params_from(data, mix.last_params, s.augment,
                                                images.shape[0])
            yield images, targets


def _sample_number(source_info: np.ndarray) -> int:
    """'path/to.tar:offset:000123.rgb' -> 123 (the writer names sample i {i:06d})."""
    member = bytes(source_info).decode().rsplit(":", 1)[-1]
    return int(member.rsplit("/", 1)[-1].split(".", 1)[0])


def _params_from(data: dict, batch_params, config: AugmentConfig, batch_size: int):
    """The parameters of one batch: DALI's sampled shift/flip/cutout (pipeline outputs)
    and the batch step's erase box and mixing (mixing.BatchMixer), on the CPU."""
    params = identity_params(batch_size)
    if batch_params is not None:
        batch_params = batch_params.to("cpu")
        if config.erase_prob > 0:
            params.erase_box = batch_params.erase_box
        if config.mixing:
            for name in ("partner", "mix_weight", "mix_box", "target_weight"):
                setattr(params, name, getattr(batch_params, name))
    if "shift" in data:
        params.shift = data["shift"].cpu().int().contiguous()
    if "flip" in data:
        params.flip = data["flip"].cpu().int().view(-1).contiguous()
    if "erase_low" in data:
        low, high = data["erase_low"].cpu().int(), data["erase_high"].cpu().int()
        params.erase_box = torch.stack([low[:, 0], high[:, 0], low[:, 1], high[:, 1]], 1)
    return params


def build(spec: LoaderSpec, *, prefetch_queue_depth: int = 2,
          expose_params: bool = False) -> DALILoader:
    require_extra("dali")
    tar_path = shard_path(spec.dataset, "dali", spec.split, spec.data_dir)
    manifest = read_manifest(spec.dataset, spec.data_dir)
    sha256 = manifest["shards"][shard_names("dali", spec.split)[0]]
    index_path = cached_index(tar_path, sha256, dataset_dir(spec.dataset, spec.data_dir).parent)
    return DALILoader(spec, tar_path, index_path, manifest["counts"][spec.split],
                      prefetch_queue_depth=prefetch_queue_depth, expose_params=expose_params)
