"""The FFCV loader: FFCV reads and decodes the .beton, our fused op augments each batch.

Two placements of the op, as FFCV intends them:
- CPU, shuffled, no mixup/cutmix: the op runs *inside* FFCV's compiled pipeline
  (fastcifar/augment/ffcv_op.py, numba), on FFCV's threads, overlapping the training step.
  Its per-batch draws are seeded from (seed, rank) and the batch's sample indices, which
  our order makes a function of (seed, epoch), so epochs stay reproducible.
- CUDA, a fixed order, or any config with mixing: FFCV yields raw uint8 batches (moved to the GPU by
  ToDevice there) and one `augment` launch per batch (Triton on CUDA, numba on CPU)
  follows, with params drawn from (seed, epoch, rank) exactly as the native loader does.

The order is ours (base.epoch_indices) handed to FFCV as a custom TraversalOrder: FFCV's
distributed mode reads rank and world size from an initialised torch.distributed process
group (DistributedSampler), which a loader must not require, and QUASI_RANDOM is refused
there anyway; this way every backend but DALI visits the same samples in the same order.
"""
from __future__ import annotations

import sys
from itertools import repeat

import numba
import numpy as np
import torch

from fastcifar.augment import augment
from fastcifar.augment.ffcv_op import make_ffcv_augment_op
from fastcifar.backends import require_extra
from fastcifar.pipelines.base import (
    AUGMENT_STREAM,
    BaseLoader,
    LoaderSpec,
    batch_sizes,
    copy_images,
    derive_seed,
    epoch_batch_params,
    samples_per_rank,
    skipped_batches,
    spec_epoch_indices,
)
from fastcifar.pipelines.mixing import smoothed_targets
from fastcifar.storage import read_manifest, shard_path
from fastcifar.threads import keep_thread_counts


def _order_factory(epoch_order):
    """A TraversalOrder that visits epoch_order(epoch) (sample indices) in each epoch.

    FFCV's Loader accepts a TraversalOrder *instance* and then calls it with the loader,
    so the instance handed over is a factory for the real order object.
    """
    from ffcv.traversal_order.base import TraversalOrder

    class ShardOrder(TraversalOrder):
        def sample_order(self, epoch: int):
            return epoch_order(epoch).numpy().astype(np.uint64)

    class ShardOrderFactory(TraversalOrder):
        def __init__(self):  # no loader yet; FFCV calls the instance with it
            pass

        def __call__(self, loader):
            return ShardOrder(loader)

        def sample_order(self, epoch: int):
            raise NotImplementedError

    return ShardOrderFactory()


class FFCVLoader(BaseLoader):
    backend = "ffcv"

    def __init__(self, spec: LoaderSpec, path, num_samples: int, batches_ahead: int = 3,
                 os_cache: bool = True, impl: str = "auto"):
        super().__init__(spec, num_samples)
        self.path = path
        self.impl = impl
        self.compiled = False
        # The FFCV Operation is the fused op without mixing or a policy: batch mixing and
        # augmentation policies take the after-the-loader path (the fused op runs the
        # policy there). Its draws follow the batch's sample indices, so a fixed order
        # would repeat them every epoch: that case also takes the after-the-loader path,
        # which reseeds with set_epoch.
        self.op_in_pipeline = (spec.device.type == "cpu" and not spec.augment.mixing
                               and not spec.augment.policy_steps and spec.shuffle)
        with keep_thread_counts():
            self.ffcv_loader = self._make_ffcv_loader(batches_ahead, os_cache)

    def _make_ffcv_loader(self, batches_ahead: int, os_cache: bool):
        from ffcv.fields.basics import IntDecoder
        from ffcv.fields.ndarray import NDArrayDecoder
        from ffcv.loader import Loader
        from ffcv.transforms import ToDevice, ToTensor

        spec = self.spec
        image_ops, label_ops = [NDArrayDecoder(), ToTensor()], [IntDecoder(), ToTensor()]
        if self.op_in_pipeline:
            seed = derive_seed(spec.seed, 0, AUGMENT_STREAM, spec.rank)
            # Runs on FFCV's threads while the consumer trains on the previous batch.
            image_ops.insert(1, make_ffcv_augment_op(spec.augment, seed))
        if spec.device.type == "cuda":
            # Raw uint8 crosses PCIe (4x fewer bytes than float32); augmenting runs there.
            image_ops.append(ToDevice(spec.device, non_blocking=True))
            label_ops.append(ToDevice(spec.device, non_blocking=True))
        # numba refuses more threads than it started with (one per core).
        workers = min(spec.num_workers or numba.config.NUMBA_NUM_THREADS,
                      numba.config.NUMBA_NUM_THREADS)
        return Loader(str(self.path), batch_size=spec.batch_size, num_workers=workers,
                      os_cache=os_cache, order=_order_factory(self._epoch_order),
                      seed=spec.seed, drop_last=spec.drop_last, batches_ahead=batches_ahead,
                      pipelines={"image": image_ops, "label": label_ops})

    def _epoch_order(self, epoch: int):
        """The indices FFCV visits in `epoch`: base.epoch_indices, from start_batch on in
        the current epoch (FFCV takes a shorter order as a shorter epoch). The in-pipeline
        op draws from each batch's indices, so its draws do not move; the after-the-loader
        path skips its parameter stream (_batch_params)."""
        indices = spec_epoch_indices(self.spec, self.num_samples, epoch)
        if epoch == self.epoch:
            indices = indices[self.start_batch * self.spec.batch_size:]
        return indices

    def __len__(self) -> int:
        return len(self.ffcv_loader)

    def __iter__(self):
        if not self.compiled:
            print("ffcv: compiling the loading pipeline for the first epoch "
                  "(10-40 s, once per loader)", file=sys.stderr)
            self.compiled = True
        self.ffcv_loader.next_epoch = self.epoch  # FFCV asks its order for this epoch
        params = repeat(None) if self.op_in_pipeline else self._batch_params()
        with keep_thread_counts():
            batches = iter(self.ffcv_loader)
            # FFCV's worker thread resets torch's thread count when it starts; by the time
            # the first batch arrives it has, so the restore above is not undone.
            first = next(batches, None)
        if first is None:
            return
        finish = self._finish_augmented if self.op_in_pipeline else self._augment
        try:
            for (images, labels), batch_params in zip(_chain(first, batches), params):
                # FFCV recycles its label slots too: a held batch must keep its targets.
                labels = labels.view(-1).to(torch.int64, copy=True)
                yield finish(images, labels, batch_params)
        finally:
            batches.close()  # stops FFCV's thread if the caller stops early

    def _batch_params(self):
        """The native loader's parameter stream for this epoch (same seeds, same draws)."""
        spec = self.spec
        count = samples_per_rank(self.num_samples, spec.rank, spec.world_size, spec.batch_size,
                                 spec.drop_last)
        sizes = batch_sizes(count, spec.batch_size)
        return skipped_batches(epoch_batch_params(spec, sizes, self.epoch), self.start_batch)

    def _augment(self, images, labels, params):
        """Raw uint8 [B,32,32,3] from FFCV -> one fused op launch (policy included)."""
        return augment(images, labels, params, self.spec.augment, dtype=self.spec.dtype,
                       impl=self.impl)

    def _finish_augmented(self, images, labels, _params):
        """float32 [B,32,32,3] already augmented by the in-pipeline op."""
        spec = self.spec
        if spec.augment.soft_targets:  # label smoothing alone: targets only
            labels = smoothed_targets(labels, spec.augment)
        # FFCV recycles its output memory a few batches later: hand out our own copy.
        own = torch.empty(images.shape, dtype=spec.dtype).permute(0, 3, 1, 2)
        return copy_images(own, images.permute(0, 3, 1, 2)), labels


def _chain(first, rest):
    yield first
    yield from rest


def build(spec: LoaderSpec, *, batches_ahead: int = 3, os_cache: bool = True,
          impl: str = "auto") -> FFCVLoader:
    with keep_thread_counts():  # importing ffcv sets torch's thread count to 1
        require_extra("ffcv")
    path = shard_path(spec.dataset, "ffcv", spec.split, spec.data_dir)
    num_samples = read_manifest(spec.dataset, spec.data_dir)["counts"][spec.split]
    return FFCVLoader(spec, path, num_samples, batches_ahead=batches_ahead, os_cache=os_cache,
                      impl=impl)
