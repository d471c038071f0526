"""The torchvision baseline: a Dataset, a DataLoader with workers, per-image transforms v2.

What most CIFAR training scripts do today, kept as the reference every benchmark compares
against: each worker process pads-crops, flips, normalises and cuts out one image at a
time; batches are collated, pinned (on CUDA) and copied to the device. Same augmentation
semantics as the fused op; mixup/cutmix and label smoothing happen on the collated batch
with the op's parameter sampler (mixing.py).

Reproducibility: each sample gets its own seed drawn from (seed, epoch, rank), and its
transforms run under that seed, so a batch does not depend on which worker made it (or
on num_workers); an epoch started at batch k slices the (index, seed) pairs and advances
the batch mixer past k batches.
"""
from __future__ import annotations

import signal

import numpy as np
import torch
from torchvision.transforms import v2

from fastcifar.augment import AugmentConfig
from fastcifar.augment.config import IMAGE_SIZE
from fastcifar.pipelines.base import (
    AUGMENT_STREAM,
    MIX_STREAM,
    BaseLoader,
    LoaderSpec,
    derive_seed,
    samples_per_rank,
    stream_generator,
)
from fastcifar.pipelines.mixing import BatchMixer
from fastcifar.storage import load


class Cutout(torch.nn.Module):
    """Zero a side x side square (clipped at the border) centred uniformly in the image,
    after normalisation: the op's cutout (fastcifar/augment/params.py)."""

    def __init__(self, side: int):
        super().__init__()
        self.side = side

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        cy, cx = torch.randint(0, IMAGE_SIZE, (2,)).tolist()
        y0, x0 = max(cy - self.side // 2, 0), max(cx - self.side // 2, 0)
        y1 = min(cy - self.side // 2 + self.side, IMAGE_SIZE)
        x1 = min(cx - self.side // 2 + self.side, IMAGE_SIZE)
        image = image.clone()
        image[..., y0:y1, x0:x1] = 0.0
        return image


def make_transform(config: AugmentConfig):
    """Per-image transforms v2 for a CHW uint8 tensor -> normalised float32 CHW."""
    steps = []
    if config.padding > 0:
        mode = "reflect" if config.pad_mode == "reflect" else "constant"
        steps.append(v2.RandomCrop(IMAGE_SIZE, padding=config.padding, padding_mode=mode, fill=0))
    if config.flip:
        steps.append(v2.RandomHorizontalFlip())
    if config.augment_policy != "none":
        steps.append(policy_transform(config))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(config.mean, config.std)]
    if config.cutout > 0:
        steps.append(Cutout(config.cutout))
    elif config.erase_prob > 0:
        steps.append(v2.RandomErasing(config.erase_prob, scale=config.erase_area,
                                      ratio=config.erase_ratio, value=0))
    return v2.Compose(steps)


def policy_transform(config: AugmentConfig):
    """torchvision's own transform for config.augment_policy (nearest, fill 0: defaults)."""
    if config.augment_policy == "autoaugment":
        return v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)
    if config.augment_policy == "randaugment":
        return v2.RandAugment(num_ops=config.ra_n, magnitude=config.ra_m)
    if config.augment_policy == "trivialaugment":
        return v2.TrivialAugmentWide()
    raise ValueError(f"no transform for augment_policy={config.augment_policy!r}")


class SeededImages(torch.utils.data.Dataset):
    """Item (index, seed) -> (normalised float32 HWC image, label), transformed under seed."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, item):
        index, seed = item
        image = torch.from_numpy(self.images[index]).permute(2, 0, 1)  # HWC -> CHW view
        rng = torch.default_generator  # what the v2 transforms draw from
        # Saving and restoring the CPU state (4 us) instead of torch.random.fork_rng (200 us).
        saved = rng.get_state()  # a DataLoader with num_workers=0 runs this in the caller
        rng.manual_seed(seed)
        try:
            image = self.transform(image)
        finally:
            rng.set_state(saved)
        # HWC here (in the workers, in parallel), so the collated batch is channels_last.
        return image.permute(1, 2, 0).contiguous(), int(self.labels[index])


class EpochSampler(torch.utils.data.Sampler):
    """Yields (index, seed) for the loader's current epoch; read at each DataLoader iter."""

    def __init__(self, loader: "TorchvisionLoader"):
        self.loader = loader

    def __len__(self) -> int:
        loader, s = self.loader, self.loader.spec
        count = samples_per_rank(loader.num_samples, s.rank, s.world_size, s.batch_size,
                                 s.drop_last)
        return max(0, count - loader.start_batch * s.batch_size)

    def __iter__(self):
        loader = self.loader
        indices = loader.epoch_indices().tolist()
        s = loader.spec
        rng = np.random.default_rng(derive_seed(s.seed, loader.epoch, AUGMENT_STREAM, s.rank))
        seeds = rng.integers(0, 1 << 62, size=len(indices)).tolist()
        skip = loader.start_batch * s.batch_size
        return iter(zip(indices[skip:], seeds[skip:]))


def ignore_stop_signals(worker_id: int) -> None:
    """In each DataLoader worker: SIGINT and SIGTERM are the training process's to act on.

    A Ctrl-C reaches every process of the terminal's group and a cluster scheduler
    signals every process of the job; a worker ended by it would fail the run before the
    trainer's agreed stop could save a checkpoint. Workers still end with the loader
    (and when the training process dies: torch's worker watchdog).
    """
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


class TorchvisionLoader(BaseLoader):
    backend = "torchvision"

    def __init__(self, spec: LoaderSpec, images: np.ndarray, labels: np.ndarray,
                 persistent_workers: bool = False):
        super().__init__(spec, num_samples=len(labels))
        on_cuda = spec.device.type == "cuda"
        self.data_loader = torch.utils.data.DataLoader(
            SeededImages(images, labels, make_transform(spec.augment)),
            batch_size=spec.batch_size, sampler=EpochSampler(self),
            drop_last=False,  # epoch_indices already holds whole batches when training
            num_workers=spec.num_workers, pin_memory=on_cuda,
            persistent_workers=persistent_workers and spec.num_workers > 0,
            # Its own generator for the DataLoader's per-epoch base seed (unused: every
            # sample is reseeded), which would otherwise come from torch's global RNG,
            # the one drop-path draws from and a mid-epoch checkpoint saves.
            generator=torch.Generator().manual_seed(spec.seed),
            worker_init_fn=ignore_stop_signals)

    def __iter__(self):
        s = self.spec
        mix = BatchMixer(s.augment, stream_generator(s, self.epoch, MIX_STREAM), s.device)
        mix.skip(self.start_batch, s.batch_size)
        for images, labels in self.data_loader:
            images = images.permute(0, 3, 1, 2)  # NHWC storage seen as NCHW channels_last
            images = images.to(s.device, s.dtype, non_blocking=True)
            targets = labels.to(s.device, non_blocking=True)
            yield mix(images, targets)


def build(spec: LoaderSpec, *, persistent_workers: bool = False) -> TorchvisionLoader:
    images, labels = load(spec.dataset, spec.split, spec.data_dir)
    return TorchvisionLoader(spec, images, labels, persistent_workers=persistent_workers)
