"""`fastcifar runs` as text: one row per run or seed group, columns padded to fit."""
from __future__ import annotations

COLUMNS = ("name", "model", "dataset", "recipe", "epochs", "seeds", "test_acc", "img/s",
           "time", "to target", "state")


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _test_acc(row: dict) -> str:
    if row["test_acc"] is None:
        return "-"
    if row["test_acc_std"] is None:
        return f"{row['test_acc']:.4f}"
    return f"{row['test_acc']:.4f} +- {row['test_acc_std']:.4f}"


def _to_target(row: dict) -> str:
    """'-' without a target; the time (and epoch) reached; for a group the mean time and
    how many of its finished seeds reached it."""
    if row["target_acc"] is None:
        return "-"
    if row["seeds"] is not None:
        finished = row["seeds"]["finished"]
        if row["time_to_target_s"] is None:
            return f"not reached (0/{finished})"
        return f"{format_seconds(row['time_to_target_s'])} ({row['targets_reached']}/{finished})"
    if row["time_to_target_s"] is None:
        return "not reached"
    return f"{format_seconds(row['time_to_target_s'])} @{row['epoch_to_target']}"


def _epochs(row: dict) -> str:
    """done/planned; for a group, over all its seeds, with the epochs each seed plans."""
    cell = f"{row['epochs_done']:g}/{row['epochs_planned']:g}"
    if row["seeds"] is not None and row["seeds"]["total"]:
        cell += f" ({row['epochs_planned'] / row['seeds']['total']:g}/seed)"
    return cell


def _cells(row: dict) -> tuple[str, ...]:
    seeds = row["seeds"]
    return (
        row["name"], row["model"], row["dataset"], row["recipe"],
        _epochs(row),
        "-" if seeds is None else f"{seeds['finished']}/{seeds['total']}",
        _test_acc(row),
        "-" if row["images_per_sec"] is None else f"{row['images_per_sec']:,.0f}",
        format_seconds(row["time_s"]) if row["epochs_done"] else "-",
        _to_target(row),
        row["state"],
    )


def format_table(rows: list[dict]) -> str:
    lines = [COLUMNS] + [_cells(row) for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
                     for line in lines)
