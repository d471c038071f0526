"""What the user sees while a run trains: a tqdm bar per epoch and one line per epoch.

The bar's loss comes from the step's device accumulators through LaggedReader: it asks
for a copy into pinned host memory without waiting and shows the last copy that has
finished, so the display never stalls the GPU queue.
"""
from __future__ import annotations

import math
import time

import torch
from tqdm import tqdm

from fastcifar.engine.step import CORRECT, LOSS_SUM, SEEN


class LaggedReader:
    """Non-blocking reads of a small device tensor (values lag by one request on CUDA)."""

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor
        cuda = tensor.device.type == "cuda"
        self._host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=cuda)
        self._event = torch.cuda.Event() if cuda else None
        self._pending = False

    def request(self) -> None:
        if self._pending:
            return
        self._host.copy_(self.tensor, non_blocking=True)
        if self._event is not None:
            self._event.record()
        self._pending = True

    def poll(self) -> list | None:
        """The values of the latest finished copy, or None when none has finished."""
        if not self._pending or (self._event is not None and not self._event.query()):
            return None
        self._pending = False
        return self._host.tolist()


class EpochProgress:
    """tqdm bar over one epoch's batches showing epoch, batch, loss, lr and img/s."""

    def __init__(self, *, epoch: int, epochs: int, steps: int, metrics: torch.Tensor,
                 images_per_step: int, log_every: int, enabled: bool, first_batch: int = 0):
        self.epoch, self.epochs = epoch, epochs
        self.log_every = log_every
        self.images_per_step = images_per_step
        self.first_batch = first_batch  # > 0 in an epoch resumed mid-way
        self.reader = LaggedReader(metrics)
        self.last_loss = math.nan
        self._start = time.perf_counter()
        self._bar = None
        if enabled:
            self._bar = tqdm(total=steps, initial=first_batch, desc=f"epoch {epoch + 1}/{epochs}",
                             unit="batch", leave=False, dynamic_ncols=True)

    def step(self, index: int, lr: float) -> None:
        """Call after batch `index` (0-based): every log_every batches the bar shows the
        latest running loss that has arrived. (Divergence and stops are checks.py's.)"""
        if self._bar is None or (index + 1) % self.log_every:
            return
        values = self.reader.poll()
        self.reader.request()
        if values is None:
            values = self.reader.poll()  # on the CPU the copy has already finished
        if values is None or values[SEEN] == 0:
            return
        self.last_loss = values[LOSS_SUM] / values[SEEN]
        seconds = time.perf_counter() - self._start
        rate = (index + 1 - self.first_batch) * self.images_per_step / max(seconds, 1e-9)
        self._bar.set_postfix_str(
            f"loss {self.last_loss:.4f} lr {lr:.4g} {rate:,.0f} img/s", refresh=False
        )
        self._bar.update(index + 1 - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def epoch_line(record: dict, epochs: int) -> str:
    return (
        f"epoch {record['epoch']}/{epochs}  "
        f"train loss {record['train_loss']:.4f} acc {100 * record['train_acc']:.2f}%  "
        f"test loss {record['test_loss']:.4f} acc {100 * record['test_acc']:.2f}%  "
        f"lr {record['lr']:.4g}  {record['images_per_sec']:,.0f} img/s  "
        f"{record['epoch_seconds']:.1f} s"
    )


def rates(metrics: list[float]) -> tuple[float, float]:
    """(mean loss, accuracy) from summed [loss, correct, seen]."""
    seen = max(metrics[SEEN], 1.0)
    return metrics[LOSS_SUM] / seen, metrics[CORRECT] / seen
