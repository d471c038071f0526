"""Throughput of one augmentation implementation (the pipeline suite's op rows).

Times `augment` alone (parameters are sampled before the timed region) on a random
uint8 dataset of CIFAR's size held on the device, gathering a random batch each call.
Bytes count the uint8 pixels read plus the output written.
"""
from __future__ import annotations

import torch

from fastcifar.augment import AugmentConfig, augment, sample_params
from fastcifar.bench.timing import time_repeats

REPEATS = 5
WARMUP_CALLS = 3


def measure_augment(impl: str, batch_size: int, device: torch.device | str = "cpu",
                    dtype: torch.dtype = torch.float32, seconds: float = 2.0,
                    config: AugmentConfig | None = None, dataset_size: int = 50_000) -> dict:
    """Median images/s and bytes/s over REPEATS timed runs of about seconds/REPEATS each."""
    device = torch.device(device)
    config = config or AugmentConfig.for_dataset("cifar10")
    generator = torch.Generator(device=device).manual_seed(0)
    images = torch.randint(0, 256, (dataset_size, 32, 32, 3), dtype=torch.uint8,
                           device=device, generator=generator)
    labels = torch.randint(0, config.num_classes, (dataset_size,), device=device,
                           generator=generator)
    indices = torch.randint(0, dataset_size, (batch_size,), device=device, generator=generator)
    params = sample_params(config, batch_size, generator, device)
    out = torch.empty((batch_size, 3, 32, 32), dtype=dtype, device=device,
                      memory_format=torch.channels_last)
    out_targets = None

    def step():
        nonlocal out_targets
        _, out_targets = augment(images, labels, params, config, indices=indices, out=out,
                                 out_targets=out_targets, dtype=dtype, impl=impl)

    # The warm-up compiles numba/Triton and fills caches (excluded).
    timing = time_repeats(step, repeats=REPEATS, warmup=WARMUP_CALLS,
                          repeat_seconds=seconds / REPEATS, items_per_call=batch_size,
                          device=device)
    images_per_sec = timing.items_per_sec
    bytes_per_image = 32 * 32 * 3 * (1 + out.element_size())
    return {"impl": impl, "device": str(device), "dtype": str(dtype).replace("torch.", ""),
            "batch_size": batch_size, "calls_per_repeat": timing.calls_per_repeat,
            "repeats": REPEATS, "images_per_sec": images_per_sec,
            "bytes_per_sec": images_per_sec * bytes_per_image}
