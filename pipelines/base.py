"""The loader protocol every backend implements, and the ordering/sharding rules they share.

A loader yields (images, targets) on the training device: images [B,3,32,32] channels_last
in the compute dtype, normalised and augmented; targets int64 [B], or float32 [B, K] soft
targets when mixup/cutmix/label smoothing is on. `len(loader)` is batches per epoch and
`set_epoch(e)` makes epoch e's order and augmentation a pure function of (seed, e).
`set_epoch(e, start_batch=k)` starts epoch e at its batch k: iterating then yields exactly
the batches k, k+1, ... that iterating from 0 would have yielded (same samples, same
augmentation), which is how a run stopped mid-epoch resumes. Backends that draw an epoch's
parameters from (seed, epoch, rank) skip by slicing the order and advancing the parameter
streams past the first k batches (skipped_batches below); DALI, whose random state lives
in its pipeline, reads the first k batches and drops them.

Sharding (native, ffcv, torchvision): the epoch order (a permutation drawn from
(seed, epoch), the same on every rank, for training; 0..N-1 for evaluation) is cut into
`world_size` contiguous blocks, block r = order[N*r//W : N*(r+1)//W] (DALI's block
boundaries; DALI itself shards the file, see dali_loader.py). Training keeps the first
(N//W)//B*B samples of the block, so every rank runs the same number of full batches;
evaluation keeps the whole block, so ranks may differ by one sample (and then by one batch).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import islice

import numpy as np
import torch

from fastcifar.augment import AugmentConfig, AugmentParams, identity_params, sample_params
from fastcifar.augment.call import OUTPUT_DTYPES
from fastcifar.augment.params import alternating_flips, sample_base_flips
from fastcifar.datasets import get_dataset
from fastcifar.errors import UserError

# Independent random streams drawn from (seed, epoch): the order is shared by every rank
# (so their blocks are disjoint); augmentation streams also take the rank. (Stream 3 was
# AutoAugment's own; policies now draw from the augment stream, after everything else.)
# The base flips of alternating flip belong to the images: one draw per run (epoch 0,
# rank 0).
ORDER_STREAM = 0
AUGMENT_STREAM = 1
MIX_STREAM = 2
BASE_FLIP_STREAM = 4


@dataclass(frozen=True)
class LoaderSpec:
    """The resolved arguments of create_loader, handed to a backend."""

    dataset: str
    split: str
    batch_size: int
    train: bool
    augment: AugmentConfig
    device: torch.device  # resolved: cuda always carries its index
    dtype: torch.dtype
    data_dir: str | None
    seed: int
    rank: int
    world_size: int
    num_workers: int
    drop_last: bool

    @property
    def shuffle(self) -> bool:
        return self.train


def make_spec(dataset: str, split: str, *, batch_size: int, train: bool,
              augment: AugmentConfig | None, device, dtype: torch.dtype, data_dir, seed: int,
              rank: int, world_size: int, num_workers: int, drop_last: bool | None) -> LoaderSpec:
    """Check the arguments once, with one clear UserError line for each mistake."""
    if int(batch_size) != batch_size or batch_size < 1:
        raise UserError(f"batch_size must be a positive integer, got {batch_size}")
    if int(world_size) != world_size or world_size < 1:
        raise UserError(f"world_size must be a positive integer, got {world_size}")
    if int(rank) != rank or not 0 <= rank < world_size:
        raise UserError(f"rank must be in [0, {world_size - 1}], got {rank}")
    if dtype not in OUTPUT_DTYPES:
        raise UserError(f"dtype must be one of float32, float16, bfloat16, got {dtype}")
    if int(num_workers) != num_workers or num_workers < 0:
        raise UserError(f"num_workers must be >= 0, got {num_workers}")
    num_classes = get_dataset(dataset).num_classes
    if augment is None:
        augment = AugmentConfig.none(dataset)
    elif augment.num_classes != num_classes:
        raise UserError(f"augmentation is set up for {augment.num_classes} classes, "
                        f"{dataset} has {num_classes}")
    return LoaderSpec(dataset=dataset, split=split, batch_size=int(batch_size),
                      train=bool(train), augment=augment, device=resolve_device(device),
                      dtype=dtype, data_dir=None if data_dir is None else str(data_dir),
                      seed=int(seed), rank=int(rank), world_size=int(world_size),
                      num_workers=int(num_workers),
                      drop_last=bool(train) if drop_last is None else bool(drop_last))


def derive_seed(seed: int, epoch: int, stream: int, rank: int = 0) -> int:
    """A 63-bit seed from (seed, epoch, stream, rank); nearby inputs give unrelated seeds."""
    words = np.random.SeedSequence([seed, epoch, stream, rank]).generate_state(2, np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def make_generator(seed: int, device) -> torch.Generator:
    generator = torch.Generator(device=torch.device(device))
    generator.manual_seed(seed)
    return generator


def stream_generator(spec: LoaderSpec, epoch: int, stream: int) -> torch.Generator:
    """The generator of one of this rank's random streams in `epoch`, on spec.device."""
    return make_generator(derive_seed(spec.seed, epoch, stream, spec.rank), spec.device)


def shard_bounds(num_samples: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, stop) of rank's contiguous block of an epoch's order (as DALI shards)."""
    return num_samples * rank // world_size, num_samples * (rank + 1) // world_size


def samples_per_rank(num_samples: int, rank: int, world_size: int, batch_size: int,
                     drop_last: bool) -> int:
    if drop_last:
        # The smallest block is N // W: cutting every block to that many full batches gives
        # all ranks the same batch count (a captured step needs static shapes).
        return (num_samples // world_size) // batch_size * batch_size
    start, stop = shard_bounds(num_samples, rank, world_size)
    return stop - start


def batches_per_epoch(num_samples: int, rank: int, world_size: int, batch_size: int,
                      drop_last: bool) -> int:
    count = samples_per_rank(num_samples, rank, world_size, batch_size, drop_last)
    return count // batch_size if drop_last else -(-count // batch_size)


def epoch_order(num_samples: int, seed: int, epoch: int, shuffle: bool,
                device="cpu") -> torch.Tensor:
    """The whole epoch's order (identical on every rank), int64 on `device`."""
    device = torch.device(device)
    if not shuffle:
        return torch.arange(num_samples, dtype=torch.int64, device=device)
    generator = make_generator(derive_seed(seed, epoch, ORDER_STREAM), device)
    return torch.randperm(num_samples, generator=generator, device=device)


def epoch_indices(num_samples: int, *, seed: int, epoch: int, shuffle: bool, rank: int,
                  world_size: int, batch_size: int, drop_last: bool,
                  device="cpu") -> torch.Tensor:
    """The sample indices this rank visits in `epoch`, in order (int64 on `device`)."""
    start, _ = shard_bounds(num_samples, rank, world_size)
    count = samples_per_rank(num_samples, rank, world_size, batch_size, drop_last)
    return epoch_order(num_samples, seed, epoch, shuffle, device)[start:start + count]


def spec_epoch_indices(spec: LoaderSpec, num_samples: int, epoch: int,
                       device="cpu") -> torch.Tensor:
    return epoch_indices(num_samples, seed=spec.seed, epoch=epoch, shuffle=spec.shuffle,
                         rank=spec.rank, world_size=spec.world_size,
                         batch_size=spec.batch_size, drop_last=spec.drop_last, device=device)


def epoch_batch_params(spec: LoaderSpec, sizes: list[int], epoch: int,
                       indices: torch.Tensor | None = None, num_samples: int | None = None):
    """AugmentParams per batch of one epoch (policy entries included): the draws of the
    backends that run the fused op (native, ffcv), from (seed, epoch, rank) alone.

    Alternating flip (spec.augment.alternating_flip) needs the epoch's sample `indices`
    (the batches' concatenation) and the split's `num_samples`: a sample's flip is its
    run-long base flip, inverted in odd epochs."""
    generator = stream_generator(spec, epoch, AUGMENT_STREAM)
    params = iter_batch_params(spec.augment, sizes, generator, spec.device)
    if spec.augment.alternating_flip:
        params = _with_alternating_flips(params, spec, epoch, indices, num_samples)
    return params


def _with_alternating_flips(params, spec: LoaderSpec, epoch: int, indices, num_samples):
    if indices is None or num_samples is None:
        raise ValueError("alternating flip needs the epoch's indices and the split's size")
    generator = make_generator(derive_seed(spec.seed, 0, BASE_FLIP_STREAM), spec.device)
    base = sample_base_flips(num_samples, generator, spec.device)
    flips = alternating_flips(base, indices.to(spec.device), epoch)
    start = 0
    for batch in params:
        size = batch.batch_size
        yield replace(batch, flip=flips[start:start + size])
        start += size


def iter_batch_params(config: AugmentConfig, sizes: list[int], generator: torch.Generator,
                      device):
    """AugmentParams for consecutive batches of the given sizes, drawn from `generator`.

    Without mixing, the per-sample draws (shift, flip, erase box, policy entries) of the
    whole epoch are made at once and sliced: one set of ~10 small launches per epoch instead
    of per batch, which keeps the host-side cost of a batch to the augment launch itself.
    """
    if config.mixing:
        # Mix partners are positions inside a batch, so they are drawn batch by batch.
        for size in sizes:
            yield sample_params(config, size, generator, device)
        return
    whole = sample_params(config, sum(sizes), generator, device)
    fixed = identity_params(max(sizes, default=0), device)
    start = 0
    for size in sizes:
        part = slice(start, start + size)
        start += size
        yield AugmentParams(shift=whole.shift[part], flip=whole.flip[part],
                            erase_box=whole.erase_box[part], partner=fixed.partner[:size],
                            mix_weight=fixed.mix_weight[:size], mix_box=fixed.mix_box[:size],
                            target_weight=fixed.target_weight[:size],
                            policy=whole.policy[part])


def skipped_batches(batches, count: int):
    """`batches` (any per-batch sequence or stream) without its first `count` items: the
    items are still drawn, so random streams advance exactly as over a whole epoch."""
    return islice(batches, count, None)


def batch_sizes(count: int, batch_size: int) -> list[int]:
    """Sizes of the batches that cover `count` samples (the last one may be partial)."""
    return [min(batch_size, count - start) for start in range(0, count, batch_size)]


def copy_images(dst: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """dst[...] = src for channels_last batches (any devices and dtypes); returns dst."""
    dst_nhwc, src_nhwc = dst.permute(0, 2, 3, 1), src.permute(0, 2, 3, 1)
    if (dst.device.type == src.device.type == "cpu" and dst.dtype == src.dtype
            and dst.dtype in (torch.float32, torch.float16) and src_nhwc.is_contiguous()):
        # One memcpy on this thread: torch's threaded copy fights the loader's own threads
        # (FFCV, DALI) for the cores and ran 4x slower on 2 cores.
        np.copyto(dst_nhwc.numpy(), src_nhwc.numpy())
    else:
        dst_nhwc.copy_(src_nhwc, non_blocking=True)
    return dst


def resolve_device(device) -> torch.device:
    """cuda -> cuda:<current>, so it compares equal to a tensor's device."""
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError("device cuda was asked for, but no CUDA GPU is available")
        if device.index is None:
            return torch.device("cuda", torch.cuda.current_device())
    return device


class BaseLoader:
    """Epoch bookkeeping shared by every backend.

    Subclasses implement `__iter__` and, if they know it in advance, `epoch_indices`.
    """

    backend = "base"

    def __init__(self, spec: LoaderSpec, num_samples: int):
        self.spec = spec
        self.num_samples = num_samples  # in the whole split, before sharding
        self.epoch = 0
        self.start_batch = 0  # the epoch's first batch to yield (set_epoch)

    @property
    def batch_size(self) -> int:
        return self.spec.batch_size

    @property
    def device(self) -> torch.device:
        return self.spec.device

    def __len__(self) -> int:
        s = self.spec
        return batches_per_epoch(self.num_samples, s.rank, s.world_size, s.batch_size,
                                 s.drop_last)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Epoch e's order and augmentation depend only on (seed, e); iteration yields
        its batches from `start_batch` on (the same batches as from 0, minus the first)."""
        self.epoch = int(epoch)
        self.start_batch = 0
        if not 0 <= start_batch <= len(self):
            raise ValueError(f"start_batch must be in [0, {len(self)}] (batches in epoch "
                             f"{epoch}), got {start_batch}")
        self.start_batch = int(start_batch)

    def epoch_indices(self) -> torch.Tensor:
        """The sample indices this rank visits in the current epoch, in order."""
        return spec_epoch_indices(self.spec, self.num_samples, self.epoch)

    def __repr__(self) -> str:
        s = self.spec
        return (f"{type(self).__name__}({s.dataset}/{s.split}, batch_size={s.batch_size}, "
                f"train={s.train}, device={s.device}, rank={s.rank}/{s.world_size}, "
                f"batches={len(self)})")
