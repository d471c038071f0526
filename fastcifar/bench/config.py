"""What `fastcifar bench` measures: a frozen BenchConfig, resolved and checked once.

"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from fastcifar.backends import BACKEND_NAMES, BASELINE_BACKEND, DEFAULT_BACKEND
from fastcifar.datasets import get_dataset
from fastcifar.errors import UserError
from fastcifar.models import get_builder

SUITES = ("pipeline", "step", "e2e")
HISTORY_ENV = "FASTCIFAR_BENCH_HISTORY"


@dataclass(frozen=True)
class StepVariant:
    """One way to run the training step; `cuda_only` ones are skipped on the CPU."""

    name: str
    dtype: str  # "fp32" | "bf16" | "fp16" (fp16: eager with GradScaler)
    channels_last: bool
    graph: bool = False
    compile: bool = False
    cuda_only: bool = False
    cpu_only: bool = False

    @property
    def train_options(self) -> dict:
        """The `fastcifar train` options this variant stands for."""
        return {"dtype": self.dtype, "channels_last": self.channels_last, "graph": self.graph,
                "compile": self.compile}


BASELINE_STEP = "fp32-nchw"  # plain eager PyTorch: what every other figure is set against
STEP_VARIANTS = {v.name: v for v in (
    StepVariant(BASELINE_STEP, "fp32", channels_last=False),
    StepVariant("fp32-cl", "fp32", channels_last=True),
    StepVariant("bf16-cl", "bf16", channels_last=True),
    StepVariant("fp16-cl-scaler", "fp16", channels_last=True, cuda_only=True),
    StepVariant("bf16-cl-graph", "bf16", channels_last=True, graph=True, cuda_only=True),
    StepVariant("bf16-cl-compile", "bf16", channels_last=True, compile=True, cuda_only=True),
    StepVariant("bf16-cl-compile-graph", "bf16", channels_last=True, graph=True, compile=True,
                cuda_only=True),
    StepVariant("fp32-cl-compile", "fp32", channels_last=True, compile=True, cpu_only=True),
)}

# Defaults per (device type, quick).
DEFAULT_STEP_VARIANTS = {
    ("cuda", False): ("fp32-nchw", "fp32-cl", "bf16-cl", "fp16-cl-scaler", "bf16-cl-graph",
                      "bf16-cl-compile", "bf16-cl-compile-graph"),
    ("cuda", True): ("fp32-nchw", "bf16-cl", "bf16-cl-graph"),
    ("cpu", False): ("fp32-nchw", "fp32-cl", "bf16-cl", "fp32-cl-compile"),
    ("cpu", True): ("fp32-nchw", "fp32-cl", "bf16-cl"),
}
FULL_GPU_MODELS = ("resnet20", "airbench94", "wrn28_10", "resnext29_8x64d", "resnext29_16x64d")
DEFAULT_STEP_MODELS = {
    ("cuda", False): FULL_GPU_MODELS,
    ("cuda", True): ("resnet20",),
    ("cpu", False): ("resnet20", "airbench94"),
    ("cpu", True): ("resnet20",),
}
DEFAULT_E2E_MODELS = {
    ("cuda", False): ("resnet20", "airbench94", "resnext29_16x64d"),
    ("cuda", True): ("resnet20",),
    ("cpu", False): ("resnet20",),
    ("cpu", True): ("resnet20",),
}
DEFAULT_E2E_BACKENDS = (DEFAULT_BACKEND, BASELINE_BACKEND)


@dataclass(frozen=True)
class Budget:
    """How long each measurement runs: repeats of about `repeat_seconds` after warm-up."""

    repeats: int
    repeat_seconds: float
    step_warmup: int  # eager calls before timing (a graph runner adds its own, see step.py)
    e2e_min_steps: int  # per repeat: a real run's steps, not a handful
    augment_seconds: float  # total for one augmentation implementation
    synthetic_train_size: int
    synthetic_test_size: int
    loader_batch_size: int  # pipeline suite
    step_batch_size: int | None  # None: the model's recipe batch (as `fastcifar train`)
    # The op's bandwidth row: a batch large enough to hide the launch cost, gathered from
    # a random uint8 set of CIFAR-10's size.
    augment_large_batch: int = 32768
    augment_dataset_size: int = 50_000


def make_budget(device_type: str, quick: bool) -> Budget:
    if quick:
        cuda = device_type == "cuda"
        return Budget(repeats=5, repeat_seconds=0.5 if cuda else 0.6,
                      step_warmup=3 if cuda else 2, e2e_min_steps=20 if cuda else 2,
                      augment_seconds=1.0, synthetic_train_size=5000, synthetic_test_size=1000,
                      loader_batch_size=512 if cuda else 256,
                      step_batch_size=None if cuda else 64)
    return Budget(repeats=5, repeat_seconds=0.5 if device_type == "cuda" else 2.0,
                  step_warmup=5, e2e_min_steps=100 if device_type == "cuda" else 10,
                  augment_seconds=2.5, synthetic_train_size=50000, synthetic_test_size=10000,
                  loader_batch_size=512, step_batch_size=None)


@dataclass(frozen=True)
class BenchConfig:
    suites: tuple[str, ...]
    device: str  # "cuda" | "cpu" (resolved)
    backends: tuple[str, ...] = ()  # () = every installed backend (pipeline) / the defaults
    models: tuple[str, ...] = ()  # () = the defaults for the device
    step_variants: tuple[str, ...] = ()  # () = the defaults for the device
    recipe: str | None = None  # of the e2e runs; None: the model's default (as `train`)
    batch_size: int | None = None
    dataset: str = "cifar10"
    data_dir: str | None = None
    num_workers: int | None = None  # torchvision/ffcv/dali workers; None: min(8, CPUs)
    quick: bool = False
    json_path: str | None = None
    plot_path: str | None = None
    record: bool = False
    history_path: str | None = None
    seed: int = 0
    repeats: int | None = None  # overrides the budget's number of timed repeats
    timing: Budget | None = None  # None: make_budget(device, quick); tests pass tiny ones

    @property
    def budget(self) -> Budget:
        budget = self.timing or make_budget(self.device, self.quick)
        return replace(budget, repeats=self.repeats) if self.repeats else budget

    @property
    def workers(self) -> int:
        if self.num_workers is not None:
            return self.num_workers
        available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else os.cpu_count() or 1
        return max(1, min(8, available))

    def defaults_key(self) -> tuple[str, bool]:
        return (self.device, self.quick)

    def step_models(self) -> tuple[str, ...]:
        return self.models or DEFAULT_STEP_MODELS[self.defaults_key()]

    def e2e_models(self) -> tuple[str, ...]:
        return self.models or DEFAULT_E2E_MODELS[self.defaults_key()]

    def e2e_backends(self) -> tuple[str, ...]:
        return self.backends or DEFAULT_E2E_BACKENDS

    def pipeline_backends(self) -> tuple[str, ...]:
        """Asked-for backends with the baseline first (every ratio needs it measured)."""
        chosen = self.backends or BACKEND_NAMES
        return (BASELINE_BACKEND,) + tuple(b for b in chosen if b != BASELINE_BACKEND)

    def variants(self) -> tuple[StepVariant, ...]:
        names = self.step_variants or DEFAULT_STEP_VARIANTS[self.defaults_key()]
        names = (BASELINE_STEP,) + tuple(n for n in names if n != BASELINE_STEP)
        return tuple(STEP_VARIANTS[n] for n in names)

    def resolved_history_path(self) -> str:
        return self.history_path or os.environ.get(HISTORY_ENV) or default_history_path()


def default_history_path() -> str:
    """benchmarks/history.jsonl of the source checkout (editable install), else ./benchmarks."""
    checkout = Path(__file__).resolve().parents[2] / "benchmarks"
    folder = checkout if checkout.is_dir() else Path.cwd() / "benchmarks"
    return str(folder / "history.jsonl")


def _choices(kind: str, given, known) -> tuple[str, ...]:
    given = tuple(dict.fromkeys(given or ()))
    unknown = [g for g in given if g not in known]
    if unknown:
        raise UserError(f"unknown {kind} {unknown[0]!r}; choose from: {', '.join(known)}")
    return given


def resolve_bench_config(*, suite: str = "all", backends=(), models=(), step_variants=(),
                         device: str = "auto", cuda_available: bool | None = None,
                         **options) -> BenchConfig:
    """Check the user's choices (one UserError line each) and resolve auto values."""
    if suite != "all" and suite not in SUITES:
        raise UserError(f"unknown suite {suite!r}; choose from: {', '.join(SUITES)}, all")
    suites = SUITES if suite == "all" else (suite,)
    backends = _choices("backend", backends, BACKEND_NAMES)
    variants = _choices("step configuration", step_variants, tuple(STEP_VARIANTS))
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    if device not in ("auto", "cpu", "cuda"):
        raise UserError(f"unknown device {device!r}; choose from: auto, cpu, cuda")
    if device == "auto":
        device = "cuda" if cuda_available else "cpu"
    if device == "cuda" and not cuda_available:
        raise UserError("--device cuda: no CUDA GPU is available (use --device cpu)")
    for name in variants:
        variant = STEP_VARIANTS[name]
        if variant.cuda_only and device != "cuda":
            raise UserError(f"step configuration {name!r} needs CUDA (--device cuda)")
        if variant.cpu_only and device != "cpu":
            raise UserError(f"step configuration {name!r} is the CPU one; on CUDA use "
                            "bf16-cl-compile")
    if models:
        models = tuple(dict.fromkeys(models))
        for name in models:
            get_builder(name)  # a UserError naming close matches
    get_dataset(options.get("dataset", "cifar10"))
    batch_size = options.get("batch_size")
    if batch_size is not None and batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    repeats = options.get("repeats")
    if repeats is not None and repeats < 1:
        raise UserError(f"--repeats must be at least 1, got {repeats}")
    workers = options.get("num_workers")
    if workers is not None and workers < 0:
        raise UserError(f"--num-workers must be >= 0, got {workers}")
    return BenchConfig(suites=suites, device=device, backends=backends, models=tuple(models),
                       step_variants=variants, **options)
