"""Every few steps, all ranks agree whether to go on: stop signals and divergence.

Every `every` steps each rank puts [SIGTERM received, SIGINT received, its running loss
sum, its samples seen] into one small device tensor and all-reduces it (sum), right after
the step. The result is read after the *next* step: on CUDA through pinned memory and an
event recorded behind the all-reduce, so the host waits for one step at most, once per
`every` steps, and never reads the device per step. Every rank reads the same summed
values after the same step, so all of them stop, or all raise TrainingDiverged,
together: no rank is left waiting in a collective that the others have left.

A non-finite sum means some rank's loss became NaN or infinite; a signal on any rank
stops them all. On one process the all-reduce is skipped and the rest is the same.
"""
from __future__ import annotations

import math
import signal
from dataclasses import dataclass

import torch

from fastcifar.engine import dist
from fastcifar.engine.step import LOSS_SUM, SEEN

_TERM, _INT, _LOSS, _SEEN = range(4)


@dataclass(frozen=True)
class Verdict:
    """What every rank decides from one agreed reading."""

    stop_signal: int | None  # SIGTERM (preferred) or SIGINT when any rank received one
    loss: float  # the epoch's running mean train loss over all ranks so far

    @property
    def diverged(self) -> bool:
        return not math.isfinite(self.loss)


class StepChecks:
    """The agreed check of one process, over the step's metric accumulators."""

    def __init__(self, ctx, metrics: torch.Tensor, every: int):
        self.ctx, self.metrics, self.every = ctx, metrics, max(1, int(every))
        device = metrics.device
        self._sent = torch.zeros(4, dtype=torch.float64, device=device)
        cuda = device.type == "cuda"
        self._host = torch.zeros(4, dtype=torch.float64, pin_memory=cuda)
        self._ready = torch.cuda.Event() if cuda else None
        self._pending = False

    def after_step(self, steps_done: int, received: set[int]) -> Verdict | None:
        """Call after every step with the steps taken so far and this rank's signals;
        returns a Verdict after the step that follows each check, else None."""
        verdict = self._read() if self._pending else None
        if steps_done % self.every == 0:
            self._launch(received)
        return verdict

    def now(self, received: set[int]) -> Verdict:
        """Check and read at once (epoch boundaries: the host waits there anyway); a
        check still pending from the epoch's last steps is dropped on every rank."""
        self._launch(received)
        return self._read()

    def discard(self) -> None:
        self._pending = False

    def _launch(self, received: set[int]) -> None:
        sent = self._sent
        # fill_ with a Python number is a kernel argument, copy_ stays on the device:
        # nothing here waits for the GPU.
        sent[_TERM].fill_(float(signal.SIGTERM in received))
        sent[_INT].fill_(float(signal.SIGINT in received))
        sent[_LOSS].copy_(self.metrics[LOSS_SUM])
        sent[_SEEN].copy_(self.metrics[SEEN])
        dist.all_reduce_sum(sent, self.ctx)
        self._host.copy_(sent, non_blocking=True)
        if self._ready is not None:
            self._ready.record()
        self._pending = True

    def _read(self) -> Verdict:
        if self._ready is not None:
            self._ready.synchronize()  # one step old: done, or nearly
        term, interrupt, loss_sum, seen = self._host.tolist()
        self._pending = False
        stop = signal.SIGTERM if term else signal.SIGINT if interrupt else None
        return Verdict(stop_signal=stop, loss=loss_sum / seen if seen else 0.0)
