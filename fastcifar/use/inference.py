"""Running a trained model over images the way its run evaluated them.

Images reach the model through the run's own test path: a loader of the run's backend for
the prepared test split, or the native loader over arrays already in memory (test sets
from files, decoded image files); both normalise with the same lookup table, give
channels_last batches in the run's compute dtype, and the logits come from the engine's
`predict` under the run's autocast (with flip TTA when asked). That is what makes
`fastcifar eval` on the prepared split reproduce the run's own test accuracy.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from fastcifar.engine.evaluate import TTA_LEVELS, predict
from fastcifar.engine.runtime import DTYPES
from fastcifar.engine.step import TORCH_DTYPES, autocast_for
from fastcifar.errors import UserError
from fastcifar.pipelines import create_loader
from fastcifar.pipelines.base import make_spec
from fastcifar.pipelines.native import NativeLoader


@dataclass(frozen=True)
class InferenceSettings:
    """How batches are run: the run's choices unless overridden."""

    dtype: str  # compute dtype: "fp32", "bf16" or "fp16"
    tta: int  # test-time augmentation level (engine.evaluate.predict: 0, 1 mirror, 2 + shifts)
    batch_size: int
    channels_last: bool
    progress: bool | None = False  # a bar on stderr; None: when stderr is a terminal

    @classmethod
    def for_run(cls, run, *, dtype: str | None = None, tta: int | None = None,
                batch_size: int | None = None,
                progress: bool | None = False) -> "InferenceSettings":
        config = run.config
        dtype = dtype or config.dtype
        if dtype not in DTYPES:
            raise UserError(f"--dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
        if dtype == "fp16" and run.device.type != "cuda":
            raise UserError("fp16 needs CUDA (this run computed in fp16); on the CPU pass "
                            "--dtype bf16 or --dtype fp32")
        if batch_size is not None and batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, got {batch_size}")
        tta = config.tta if tta is None else int(tta)  # a bool from older callers: 1
        if tta not in TTA_LEVELS:
            raise UserError(f"--tta must be one of {', '.join(map(str, TTA_LEVELS))}, got {tta}")
        return cls(dtype=dtype, tta=tta,
                   batch_size=batch_size or config.eval_batch_size,
                   channels_last=config.channels_last, progress=progress)


def prepared_test_loader(run, settings: InferenceSettings, *, backend: str | None = None,
                         data_dir: str | None = None):
    """The run's test loader over the prepared test split (the run's backend by default)."""
    config = run.config
    return create_loader(backend or config.backend, config.dataset, "test",
                         batch_size=settings.batch_size, train=False, augment=None,
                         device=run.device, dtype=TORCH_DTYPES[settings.dtype],
                         data_dir=data_dir or config.data_dir, seed=config.seed,
                         num_workers=config.num_workers)


def array_loader(run, settings: InferenceSettings, images: np.ndarray,
                 labels: np.ndarray) -> NativeLoader:
    """The native test loader over uint8 [N,32,32,3] images and int64 [N] labels."""
    config = run.config
    spec = make_spec(config.dataset, "test", batch_size=settings.batch_size, train=False,
                     augment=None, device=run.device, dtype=TORCH_DTYPES[settings.dtype],
                     data_dir=None, seed=config.seed, rank=0, world_size=1, num_workers=0,
                     drop_last=False)
    if not images.flags.writeable:  # memory-mapped (a corruption file): this part in memory
        images = np.array(images)
    return NativeLoader(spec, images, np.asarray(labels, dtype=np.int64))


@torch.no_grad()
def iter_logits(model, loader, settings: InferenceSettings, description: str = "eval"):
    """(float32 logits [B, K], targets [B]) per batch, on the loader's device; no host sync.

    As engine.evaluate does it: eval mode, the batch in the run's memory layout, the run's
    autocast, flip TTA when asked.
    """
    layout = torch.channels_last if settings.channels_last else torch.contiguous_format
    was_training = model.training
    model.eval()
    try:
        for images, targets in tqdm(loader, total=len(loader), desc=description, unit="batch",
                                    leave=False,
                                    disable=None if settings.progress is None
                                    else not settings.progress):
            images = images.contiguous(memory_format=layout)
            with autocast_for(images.device, settings.dtype):
                logits = predict(model, images, tta=settings.tta)
            yield logits, targets
    finally:
        model.train(was_training)
