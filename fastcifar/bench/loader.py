"""Loader throughput: images/sec of iterating a loader, warm-up excluded.

`fastcifar bench --suite pipeline` calls `measure_loader`; the loader does all its work
(read, decode, augment, copy to the device) and nothing consumes the batches, so this is
the most images/sec a training step could be fed.
"""
from __future__ import annotations

import time

import torch

from fastcifar.bench.timing import synchronize


def measure_loader(loader, epochs: int = 1, *, max_batches: int | None = None,
                   warmup_epochs: int = 1, warmup_batches: int | None = None,
                   device=None) -> dict:
    """Time `epochs` epochs (or the first `max_batches` batches) after a warm-up.

    The warm-up is `warmup_batches` batches when given, else `warmup_epochs` whole epochs:
    a whole first epoch covers FFCV's compile, DALI's pipeline build, numba/Triton JIT and
    worker start-up. On CUDA the device is synchronised before the clock starts and stops,
    so queued asynchronous work is counted.

    Returns {"images_per_sec", "images", "batches", "seconds", "epochs"}.
    """
    device = torch.device(device if device is not None else getattr(loader, "device", "cpu"))
    epoch = getattr(loader, "epoch", 0)
    if warmup_batches is not None:
        _consume(loader, epoch, warmup_batches)
        epoch += 1
    else:
        for _ in range(warmup_epochs):
            _consume(loader, epoch, None)
            epoch += 1
    synchronize(device)
    images = batches = epochs_run = 0
    started = time.perf_counter()
    while epochs_run < epochs if max_batches is None else batches < max_batches:
        limit = None if max_batches is None else max_batches - batches
        seen, count = _consume(loader, epoch, limit)
        images, batches = images + seen, batches + count
        epochs_run, epoch = epochs_run + 1, epoch + 1
        if count == 0:
            break  # an empty loader would loop forever
    synchronize(device)
    seconds = time.perf_counter() - started
    return {"images_per_sec": images / seconds if seconds > 0 else 0.0, "images": images,
            "batches": batches, "seconds": seconds, "epochs": epochs_run}


def _consume(loader, epoch: int, limit: int | None) -> tuple[int, int]:
    """Iterate one epoch (or its first `limit` batches); return (images, batches)."""
    loader.set_epoch(epoch)
    images = batches = 0
    iterator = iter(loader)
    try:
        for batch_images, _targets in iterator:
            images += batch_images.shape[0]
            batches += 1
            if limit is not None and batches >= limit:
                break
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()  # lets a backend stop its prefetching threads when we stop early
    return images, batches
