"""Learning-rate schedules as pure functions of the optimizer step.

Step s (0-based) is the s-th update of the run; `lr_at(schedule, s)` is the lr that
update uses. Nothing here touches a tensor: the loop writes the value into the step's
device lr tensor before each (replayed) step.

Warmup (all kinds but triangle): lr rises linearly, peak_lr * (s + 1) / warmup_steps for
s < warmup_steps, so the first update already moves the weights and the last warmup
step reaches peak_lr. After warmup:
  multistep  peak_lr * gamma ** (number of milestones <= s)
  cosine     min_lr + (peak_lr - min_lr) * (1 + cos(pi * t / T)) / 2, t = s - warmup_steps,
             T = total_steps - warmup_steps   (t = T would be min_lr)
  linear     peak_lr + (min_lr - peak_lr) * t / T, reaching min_lr at the end (one-cycle)
  triangle   airbench's: with (start, peak_at, end) = triangle and P = int(peak_at * N),
             N = total_steps, lr / peak_lr runs linearly through start at step 0, 1 at
             step P and end at step N (one past the last update); no separate warmup

A run of fractional epochs (9.9) has ceil(epochs * steps_per_epoch) steps, as airbench
counts them: the last epoch stops early.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

SCHEDULES = ("multistep", "cosine", "linear", "triangle")


@dataclass(frozen=True)
class Schedule:
    kind: str  # one of SCHEDULES
    peak_lr: float
    total_steps: int
    warmup_steps: int = 0
    milestones: tuple[int, ...] = ()  # steps, for multistep
    gamma: float = 0.1
    min_lr: float = 0.0
    triangle: tuple[float, float, float] = (0.2, 0.23, 0.07)  # start, peak_at, end


def lr_at(schedule: Schedule, step: int) -> float:
    s = schedule
    if s.kind == "triangle":
        return s.peak_lr * _triangle(s.triangle, s.total_steps, step)
    if step < s.warmup_steps:
        return s.peak_lr * (step + 1) / s.warmup_steps
    if s.kind == "multistep":
        return s.peak_lr * s.gamma ** bisect.bisect_right(s.milestones, step)
    span = max(s.total_steps - s.warmup_steps, 1)
    progress = min((step - s.warmup_steps) / span, 1.0)
    if s.kind == "cosine":
        return s.min_lr + (s.peak_lr - s.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if s.kind == "linear":
        return s.peak_lr + (s.min_lr - s.peak_lr) * progress
    raise ValueError(f"unknown schedule kind {s.kind!r}")


def _triangle(shape: tuple[float, float, float], total_steps: int, step: int) -> float:
    start, peak_at, end = shape
    peak_step = int(peak_at * total_steps)
    if step < peak_step:
        return start + (1.0 - start) * step / peak_step
    return 1.0 + (end - 1.0) * (step - peak_step) / (total_steps - peak_step)


def run_steps(epochs: float, steps_per_epoch: int) -> int:
    """Updates in a run of `epochs` (fractional: the last epoch is cut short)."""
    return math.ceil(epochs * steps_per_epoch)


def build_schedule(config, steps_per_epoch: int) -> Schedule:
    """The schedule of a TrainConfig, with epochs turned into steps."""
    return Schedule(
        kind=config.schedule,
        peak_lr=config.peak_lr,
        total_steps=run_steps(config.epochs, steps_per_epoch),
        warmup_steps=round(config.warmup_epochs * steps_per_epoch),
        milestones=tuple(round(m * steps_per_epoch) for m in config.milestones),
        gamma=config.gamma,
        min_lr=config.min_lr,
        triangle=tuple(config.triangle),
    )
