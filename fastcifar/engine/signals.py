"""SIGTERM and SIGINT (a scheduler's preemption, Ctrl-C) during a training run.

StopSignals installs handlers for the life of one process's run and restores the previous
ones afterwards. It has two modes:

- before the run trains (building the model, loading data), a signal stops the process at
  once, as it would without fastcifar: the handler raises StopRequested;
- once the trainer calls `defer()`, a signal is only recorded. The trainer looks at
  `received` at step boundaries (checks.py agrees on it across ranks), saves a checkpoint
  and stops. The handler never raises in this mode, so a second signal while the
  checkpoint is being written cannot interrupt the write.
"""
from __future__ import annotations

import signal
import threading

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def exit_status(signum: int) -> int:
    """What a shell reports for a process ended by `signum`: 143 for SIGTERM, 130 SIGINT."""
    return 128 + int(signum)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class StopRequested(BaseException):
    """A signal arrived before the run had anything to save.

    A BaseException, like KeyboardInterrupt, so that no `except Exception` on the way up
    swallows it.
    """

    def __init__(self, signum: int):
        super().__init__(signal_name(signum))
        self.signum = signum


class StopSignals:
    """Context manager: SIGTERM/SIGINT handlers for one run (main thread only)."""

    def __init__(self):
        self.received: set[int] = set()
        self.deferring = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        # Python runs handlers in the main thread only and refuses to install them from
        # another one; a run started from a thread keeps the process's handlers.
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def defer(self) -> None:
        """From now on a signal is a request to stop at the next agreed step boundary."""
        self.deferring = True

    def _handle(self, signum, frame) -> None:
        self.received.add(signum)
        if not self.deferring:
            raise StopRequested(signum)

    @property
    def stop_signal(self) -> int | None:
        """The signal to stop for (SIGTERM before SIGINT), or None."""
        return next((s for s in STOP_SIGNALS if s in self.received), None)
