"""Statistics over the seeds of a group: what summary.json records and the console shows.

std is the sample standard deviation (n - 1 in the denominator), as papers and
airbench report the spread of repeated runs; it is None for fewer than two values. A
seed whose value is None (a target it never reached) is listed but not counted.
"""
from __future__ import annotations

import math
import statistics
from typing import Mapping


def describe(values: Mapping[str, float | None]) -> dict:
    """{mean, std, min, max, n, values} over the values that are not None."""
    counted = [v for v in values.values() if v is not None]
    return {
        "mean": statistics.fmean(counted) if counted else None,
        "std": statistics.stdev(counted) if len(counted) > 1 else None,
        "min": min(counted) if counted else None,
        "max": max(counted) if counted else None,
        "n": len(counted),
        "values": dict(values),
    }


def format_line(name: str, stats: Mapping, digits: int = 4) -> str:
    """`test_acc 0.9401 +- 0.0013 (n=5, min 0.9382, max 0.9421)`."""
    if not stats["n"]:
        return f"{name} - (n=0)"
    spread = "" if stats["std"] is None or math.isnan(stats["std"]) \
        else f" +- {stats['std']:.{digits}f}"
    return (f"{name} {stats['mean']:.{digits}f}{spread} (n={stats['n']}, "
            f"min {stats['min']:.{digits}f}, max {stats['max']:.{digits}f})")


def summarize_seeds(seed_summaries: Mapping[int, Mapping], target_acc: float | None) -> dict:
    """The statistics of a group from its seeds' summary.json objects ({seed: summary}):
    test_acc, best_test_acc, images_per_sec, train_seconds and, with a target,
    time_to_target_s and epoch_to_target (n then counts the seeds that reached it)."""
    def over_seeds(key: str) -> dict:
        return describe({str(seed): s.get(key) for seed, s in seed_summaries.items()})

    keys = ["test_acc", "best_test_acc", "images_per_sec", "train_seconds"]
    stats = {key: over_seeds(key) for key in keys}
    for key in ("time_to_target_s", "epoch_to_target"):
        stats[key] = over_seeds(key) if target_acc is not None else None
    return stats
