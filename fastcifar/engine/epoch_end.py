"""What a run does after each finished epoch besides metrics.jsonl and the checkpoint.

EpochEnd is called by the loop with the history so far; it writes the epoch to
TensorBoard (--tensorboard, main process) and says when --stop-at-target ends the run.
Every process decides the same: the test accuracy it reads was all-reduced.
"""
from __future__ import annotations

from fastcifar.engine.run_dir import seed_group_of
from fastcifar.engine.target import first_reaching, reached_target
from fastcifar.engine.tensorboard import TensorBoardLog, open_command


class EpochEnd:
    def __init__(self, config, run_dir, schedule, *, is_main: bool, history: list[dict]):
        """`history`: the epochs done before (a resumed run's)."""
        self.config, self.is_main = config, is_main
        self.tensorboard = None
        if config.tensorboard and is_main:
            self.tensorboard = TensorBoardLog(run_dir, schedule, history)
            if seed_group_of(run_dir) is None:  # a group says it once, for all its seeds
                print(f"tensorboard: {open_command(run_dir)}", flush=True)

    def should_stop(self, history: list[dict]) -> bool:
        """--stop-at-target and the latest epoch reached the target (also true right
        after resuming a run that stopped there before writing its summary)."""
        return self.config.stop_at_target and reached_target(self.config, history)

    def __call__(self, history: list[dict]) -> None:
        record = history[-1]
        if self.tensorboard is not None:
            first_step = history[-2]["step"] if len(history) > 1 else 0
            self.tensorboard.write_epoch(record, first_step)
        if self.is_main and reached_target(self.config, history):
            _, seconds = first_reaching(history, self.config.target_acc)
            stopping = "; stopping (--stop-at-target)" if self.should_stop(history) else ""
            print(f"target test_acc {self.config.target_acc:g} reached at epoch "
                  f"{record['epoch']} after {seconds:.1f} s of training{stopping}", flush=True)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
