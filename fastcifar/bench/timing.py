"""Median-of-repeats timing with the warm-up left out.

    timing = time_repeats(run, repeats=5, warmup=3, device=device, items_per_call=batch_size)
    timing.items_per_sec   # batch_size * calls_per_repeat / median repeat time

On CUDA each repeat is bracketed by CUDA events recorded on the current stream and read
after one synchronize at the end, so the host never stalls the queue between repeats and
the time is what the device timeline took (including any gap while the host was the
bottleneck). On the CPU the clock is time.perf_counter with torch.cpu.synchronize around
each repeat. `clock` replaces the clock (and turns events off) for tests.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class Timing:
    """Seconds of each timed repeat (warm-up excluded) and how much work each did."""

    seconds: tuple[float, ...]
    calls_per_repeat: int = 1
    items_per_call: int = 1
    warmup_calls: int = 0

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.seconds)

    @property
    def items_per_repeat(self) -> int:
        return self.calls_per_repeat * self.items_per_call

    @property
    def items_per_sec(self) -> float:
        median = self.median_seconds
        return self.items_per_repeat / median if median > 0 else float("inf")

    @property
    def spread(self) -> float:
        """(slowest - fastest) / median: how much the repeats disagree."""
        median = self.median_seconds
        return (max(self.seconds) - min(self.seconds)) / median if median > 0 else 0.0

    def to_json(self) -> dict:
        return {"seconds_median": self.median_seconds, "seconds": list(self.seconds),
                "repeats": len(self.seconds), "calls_per_repeat": self.calls_per_repeat,
                "warmup_calls": self.warmup_calls, "spread": self.spread}


def synchronize(device: torch.device | str | None) -> None:
    device = torch.device(device or "cpu")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    else:
        torch.cpu.synchronize()


def time_repeats(run: Callable[[], object], *, repeats: int, warmup: int = 1,
                 calls_per_repeat: int = 1, repeat_seconds: float | None = None,
                 items_per_call: int = 1, device=None,
                 clock: Callable[[], float] | None = None) -> Timing:
    """Call `run` `warmup` times untimed, then time `repeats` repeats of `calls_per_repeat`
    calls each; return every repeat's seconds (the median is the figure to report).

    With `repeat_seconds`, one more untimed call after the warm-up sizes the repeats to
    about that long (`calls_per_repeat` is then the minimum).
    """
    if repeats < 1 or calls_per_repeat < 1 or warmup < 0:
        raise ValueError("repeats and calls_per_repeat must be >= 1, warmup >= 0")
    device = torch.device(device or "cpu")
    for _ in range(warmup):
        run()
    synchronize(device)
    if repeat_seconds is not None:
        calls = calls_for(run, repeat_seconds, device=device, clock=clock)
        calls_per_repeat, warmup = max(calls_per_repeat, calls), warmup + 1
    if device.type == "cuda" and clock is None:
        seconds = _time_with_events(run, repeats, calls_per_repeat)
    else:
        seconds = _time_with_clock(run, repeats, calls_per_repeat, device,
                                   clock or time.perf_counter)
    return Timing(seconds=tuple(seconds), calls_per_repeat=calls_per_repeat,
                  items_per_call=items_per_call, warmup_calls=warmup)


def _time_with_clock(run, repeats, calls, device, clock) -> list[float]:
    seconds = []
    for _ in range(repeats):
        synchronize(device)
        started = clock()
        for _ in range(calls):
            run()
        synchronize(device)
        seconds.append(clock() - started)
    return seconds


def _time_with_events(run, repeats, calls) -> list[float]:
    # Back-to-back repeats: the end event of one repeat is the start of the next, so the
    # queue never drains between them; one synchronize at the end reads them all.
    events = [torch.cuda.Event(enable_timing=True) for _ in range(repeats + 1)]
    events[0].record()
    for r in range(repeats):
        for _ in range(calls):
            run()
        events[r + 1].record()
    events[-1].synchronize()
    return [events[r].elapsed_time(events[r + 1]) / 1e3 for r in range(repeats)]


def calls_for(run: Callable[[], object], target_seconds: float, *, device=None,
              max_calls: int = 10_000, clock: Callable[[], float] | None = None) -> int:
    """How many calls of an already warmed-up `run` make one repeat of about
    `target_seconds` (at least 1): one probe call is timed and the rest extrapolated."""
    device = torch.device(device or "cpu")
    clock = clock or time.perf_counter
    synchronize(device)
    started = clock()
    run()
    synchronize(device)
    elapsed = clock() - started
    if elapsed <= 0:
        return max_calls
    return max(1, min(max_calls, round(target_seconds / elapsed)))
