"""Data loaders behind one protocol; `create_loader` builds any backend by name.

    loader = create_loader("native", "cifar10", "train", batch_size=512, train=True,
                           augment=AugmentConfig.for_dataset("cifar10", cutout=16),
                           device="cuda", seed=0, rank=rank, world_size=world_size)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for images, targets in loader:   # on the device, channels_last, normalised
            ...

Backends are listed in fastcifar/backends.py (native, the default; the optional ffcv and
dali; the torchvision baseline). See base.py for the protocol and the sharding rule.
"""
from __future__ import annotations

import importlib

import torch

from fastcifar.backends import check_flip_support, get_backend
from fastcifar.pipelines.base import BaseLoader, LoaderSpec, make_spec

__all__ = ["BaseLoader", "LoaderSpec", "create_loader"]


def create_loader(backend: str, dataset: str, split: str, *, batch_size: int, train: bool,
                  augment=None, device="cpu", dtype: torch.dtype = torch.float32,
                  data_dir=None, seed: int = 0, rank: int = 0, world_size: int = 1,
                  num_workers: int = 2, drop_last: bool | None = None,
                  **backend_options) -> BaseLoader:
    """Build a loader; `augment` None means normalise only; `drop_last` None means `train`.

    backend_options go to the backend's build(): native takes impl ("auto", "numba",
    "triton", "reference") and prefetch; ffcv takes batches_ahead and os_cache; dali takes
    prefetch_queue_depth and record_indices; torchvision takes persistent_workers.
    """
    loader_module = get_backend(backend).loader_module
    check_flip_support(backend, augment is not None and augment.alternating_flip)
    spec = make_spec(dataset, split, batch_size=batch_size, train=train, augment=augment,
                     device=device, dtype=dtype, data_dir=data_dir, seed=seed, rank=rank,
                     world_size=world_size, num_workers=num_workers, drop_last=drop_last)
    # Loader modules are imported when built: the optional ones need their extra.
    return importlib.import_module(loader_module).build(spec, **backend_options)
