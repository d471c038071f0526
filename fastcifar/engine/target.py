"""Time to a target accuracy (--target-acc, --stop-at-target), read off the epoch records.

The figure speedruns compare: the first epoch whose evaluated test accuracy (with the
run's EMA and TTA, as metrics.jsonl records it) reaches the target, and the training
wall time up to the end of that epoch, evaluation excluded (as airbench counts it): the
sum of the epochs' `epoch_seconds`. Both are None when the target was never reached.
"""
from __future__ import annotations

from typing import Iterable, Mapping


def first_reaching(records: Iterable[Mapping], target_acc: float) -> tuple[int, float] | None:
    """(epoch, training seconds up to the end of it) of the first record whose test_acc
    is at least `target_acc`, or None."""
    seconds = 0.0
    for record in records:
        seconds += record["epoch_seconds"]
        if record["test_acc"] >= target_acc:
            return record["epoch"], seconds
    return None


def reached_target(config, records: list[Mapping]) -> bool:
    """Whether the latest record is the one where the run first reached its target."""
    if config.target_acc is None or not records:
        return False
    reached = first_reaching(records, config.target_acc)
    return reached is not None and reached[0] == records[-1]["epoch"]


def target_summary(config, records: list[Mapping]) -> dict:
    """summary.json's target keys (all None without --target-acc)."""
    reached = None if config.target_acc is None else first_reaching(records, config.target_acc)
    return {
        "target_acc": config.target_acc,
        "epoch_to_target": reached[0] if reached else None,
        "time_to_target_s": reached[1] if reached else None,
        "stopped_at_target": bool(config.stop_at_target and reached
                                  and reached[0] == records[-1]["epoch"]
                                  and records[-1]["epoch"] < config.epochs),
    }
