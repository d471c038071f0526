"""Helpers several test modules share (test modules never import each other)."""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import fastcifar
from fastcifar.augment import AugmentConfig, make_lut, sample_params
from fastcifar.backends import BACKEND_NAMES, missing_extra
from fastcifar.engine import loop
from fastcifar.engine.resolve import resolve_config
from fastcifar.prepare import PrepareConfig, prepare
from tests.cifar_fixtures import make_cifar_archive

NONE = AugmentConfig.none("cifar10")


def installed_backends() -> list[str]:
    return [b for b in BACKEND_NAMES if missing_extra(b) is None]


def prepare_dataset(root: Path, train_size: int, test_size: int, seed: int,
                    formats=("native",)) -> str:
    """A generated, learnable CIFAR-10 archive prepared under root/data; returns that dir."""
    archive, _ = make_cifar_archive(Path(root) / "c10.tar.gz", train_size=train_size,
                                    test_size=test_size, seed=seed, learnable=True)
    data_dir = Path(root) / "data"
    prepare(PrepareConfig(dataset="cifar10", source=str(archive), data_dir=str(data_dir),
                          formats=tuple(formats), checksum=False), log=lambda *_: None)
    return str(data_dir)


def run_epoch(loader, epoch: int):
    loader.set_epoch(epoch)
    return [(images.clone(), targets.clone()) for images, targets in loader]


def normalised(source: np.ndarray) -> torch.Tensor:
    """The LUT normalisation of uint8 NHWC images, as NCHW float32."""
    lut = make_lut(NONE)
    return lut[torch.arange(3), torch.from_numpy(source).long()].permute(0, 3, 1, 2)


def decode(images: torch.Tensor) -> np.ndarray:
    """Normalised NCHW floats back to uint8 NHWC."""
    mean = torch.tensor(NONE.mean)
    std = torch.tensor(NONE.std)
    values = (images.float().permute(0, 2, 3, 1) * std + mean) * 255
    return values.round().clamp(0, 255).to(torch.uint8).numpy()


def identify(images: torch.Tensor, source: np.ndarray) -> list[int]:
    """Index in `source` of each (unaugmented) output image."""
    where = {image.tobytes(): i for i, image in enumerate(source)}
    assert len(where) == len(source), "fixture images must be unique"
    return [where[image.tobytes()] for image in decode(images)]


def check_layout(images: torch.Tensor, targets: torch.Tensor, batch_size: int):
    assert images.shape == (batch_size, 3, 32, 32)
    assert images.dtype == torch.float32
    assert images.permute(0, 2, 3, 1).is_contiguous(), "images must be channels_last"
    assert targets.shape == (batch_size,) and targets.dtype == torch.int64


def tolerance(backend: str) -> dict:
    # DALI multiplies by 1/std: last-bit differences from the LUT.
    return dict(rtol=1e-5, atol=1e-6) if backend == "dali" else dict(rtol=0, atol=1e-6)


class SentinelGraph:
    """Stands in for a captured CUDA graph on the CPU: replays the step eagerly and
    notes its reset() through `note` (callable taking an event name)."""

    def __init__(self, step, note):
        self.step, self.note = step, note

    def replay(self):
        self.step()

    def reset(self):
        self.note("reset")


# ---------------------------------------------------------------- augmentation policies

# The knobs each policy is tested with, and what the fused op does around the policy.
POLICY_OPTIONS = {"autoaugment": {}, "randaugment": {"ra_n": 3, "ra_m": 17},
                  "trivialaugment": {}}
EXTRAS = {
    "crop_flip_cutout": dict(cutout=16),
    "reflect_mixing_erasing": dict(pad_mode="reflect", erase_prob=0.5, mixup_alpha=1.0,
                                   cutmix_alpha=1.0, label_smoothing=0.1),
}


def make_policy_images(n, seed=0):
    """Random images, and the cases the ops branch on: constant, flat channel, low
    contrast, few levels (equalize's small step), saturated."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 32, 32, 3), dtype=torch.uint8, generator=g)
    images[0::7] = 7
    images[1::7, :, :, 1] = 200
    images[2::7] = images[2::7] // 4 + 100
    images[3::7] = images[3::7] // 64 * 64
    images[4::7] = images[4::7] // 128 * 255
    return images, torch.randint(0, 10, (n,), generator=g)


def policy_case(policy: str, extra: str, num_images: int, batch: int, seed: int):
    """(config, images, labels, indices, params): a batch of `policy` with the EXTRAS
    `extra`, drawn on the CPU (images from `seed`, the draws from `seed + 1`)."""
    config = AugmentConfig.for_dataset("cifar10", augment_policy=policy,
                                       **POLICY_OPTIONS[policy], **EXTRAS[extra])
    images, labels = make_policy_images(num_images, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    indices = torch.randint(0, num_images, (batch,), generator=g)
    return config, images, labels, indices, sample_params(config, batch, g, "cpu")


def assert_same(got, expected):
    assert torch.equal(got[0], expected[0])
    assert got[1].dtype == expected[1].dtype and torch.equal(got[1], expected[1])


def entry_per_sample(config: AugmentConfig, entries: list[int], seed=1):
    """(images, labels, params) with sample i's first step set to entries[i], the rest
    drawn."""
    images, labels = make_policy_images(len(entries), seed)
    params = sample_params(config, len(entries), torch.Generator().manual_seed(seed), "cpu")
    params.policy[:, 0] = torch.tensor(entries, dtype=torch.int32)
    return images, labels, params


# ---------------------------------------------------------------- training runs

TIMING_KEYS = {"images_per_sec", "epoch_seconds", "eval_seconds"}


def cpu_run_config(data_dir, out, **options):
    """The TrainConfig of a small resnet20 CPU run into `out` (options override)."""
    base = dict(model="resnet20", dataset="cifar10", data_dir=data_dir, out=str(out),
                device="cpu", progress=False)
    return resolve_config({**base, **options})


class CrashAfterSave(Exception):
    """A crash right after a checkpoint was written (crash_after_save)."""


@contextlib.contextmanager
def crash_after_save(when):
    """Training inside the block dies right after the first checkpoint written by a
    trainer for which `when(trainer)` is true, as a killed process would; the block
    must end that way."""
    save = loop.Trainer._save

    def save_then_crash(self):
        save(self)
        if when(self):
            raise CrashAfterSave()

    loop.Trainer._save = save_then_crash
    try:
        with pytest.raises(CrashAfterSave):
            yield
    finally:
        loop.Trainer._save = save


def read_metrics(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def without_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


# ---------------------------------------------------------------- Triton's interpreter

def triton_in_fresh_interpreter(config_source: str, batch_size: int, timeout: int = 600) -> str:
    """Run the Triton op and the reference on a random batch in a new process with
    TRITON_INTERPRET=1 set before any import (the documented way to run Triton on the
    CPU); returns what it printed: "True" when both agree bit for bit."""
    code = "\n".join([
        "import torch",
        "from fastcifar.augment import AugmentConfig, augment, sample_params",
        f"config = {config_source}",
        "g = torch.Generator().manual_seed(0)",
        f"images = torch.randint(0, 256, ({batch_size}, 32, 32, 3), dtype=torch.uint8,"
        " generator=g)",
        f"labels = torch.randint(0, 10, ({batch_size},), generator=g)",
        f"params = sample_params(config, {batch_size}, g, 'cpu')",
        "a = augment(images, labels, params, config, impl='triton')",
        "b = augment(images, labels, params, config, impl='reference')",
        "print(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]))",
    ])
    env = {**os.environ, "TRITON_INTERPRET": "1",
           "PYTHONPATH": str(Path(fastcifar.__file__).parents[1])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=timeout)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


def redraw_into(params, config, generator) -> None:
    """New draws for a captured graph: sampled, then copied into `params`' tensors (the
    addresses the graph reads)."""
    fresh = sample_params(config, params.batch_size, generator, params.device)
    for name, tensor in vars(fresh).items():
        getattr(params, name).copy_(tensor)


def capture_graph(step) -> torch.cuda.CUDAGraph:
    """Run `step` once on a side stream (compiles kernels, caches tables), then capture it."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph


def ptx_for_sm90(source) -> str:
    """The PTX of a Triton kernel source compiled for an H100/H200 (sm_90) on any machine
    (ptxas ships with triton); the test is skipped where this triton build cannot."""
    import triton
    from triton.backends.compiler import GPUTarget

    from fastcifar.augment.triton_gpu import LAUNCH_OPTIONS

    try:
        compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32),
                                  options=dict(LAUNCH_OPTIONS))
    except RuntimeError as error:  # e.g. no ptxas in this triton build
        if "ptxas" in str(error).lower():
            pytest.skip(f"cannot compile for sm_90 here: {error}")
        raise
    return compiled.asm["ptx"]
