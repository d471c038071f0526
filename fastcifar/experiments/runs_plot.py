"""`fastcifar runs --plot OUT.png`: test accuracy per epoch of the listed runs, one figure.

A run is one line; a seed group is the mean over its seeds with a band from the lowest
to the highest seed at each epoch, up to the last epoch every seed reached; beyond it
(seeds stopped at their target, or still running) each longer seed goes on as a thin
dashed line, so that the mean never jumps when a seed drops out. More than MAX_LINES
lines are unreadable: only the most recently modified runs are drawn then, and the
caller says so.
"""
from __future__ import annotations

import os

from fastcifar.atomic import atomic_write
from fastcifar.errors import UserError
from fastcifar.extras import require_module

MAX_LINES = 10


def select_for_plot(rows: list[dict]) -> list[dict]:
    """The runs to draw: those with at least one epoch, the MAX_LINES most recent."""
    drawable = [row for row in rows if _curves(row)]
    drawable.sort(key=lambda row: os.path.getmtime(row["path"]), reverse=True)
    return drawable[:MAX_LINES]


def _curves(row: dict) -> list[list[float]]:
    curves = row["test_acc_per_epoch"]
    curves = list(curves.values()) if isinstance(curves, dict) else [curves]
    return [curve for curve in curves if curve]


def _band(curves: list[list[float]]) -> tuple[list[float], list[float], list[float]]:
    """(mean, min, max) per epoch over all curves, up to the shortest curve's end."""
    length = min(len(c) for c in curves)
    columns = [[c[i] for c in curves] for i in range(length)]
    return ([sum(col) / len(col) for col in columns], [min(col) for col in columns],
            [max(col) for col in columns])


def _label(row: dict) -> str:
    label = row["name"]
    if row["test_acc"] is not None:
        label += f"  {row['test_acc']:.4f}"
        if row["test_acc_std"] is not None:
            label += f" +- {row['test_acc_std']:.4f}"
    if row["seeds"] is not None:
        label += f"  ({row['seeds']['total']} seeds)"
    return label


def draw_runs(rows: list[dict], path: str) -> None:
    """Write the PNG for `rows` (already selected: at most MAX_LINES)."""
    if not rows:
        raise UserError("--plot: no run has a finished epoch to draw")
    matplotlib = require_module("matplotlib", "plot")
    matplotlib.use("Agg", force=True)
    plt = require_module("matplotlib.pyplot", "plot", package="matplotlib")
    ticker = require_module("matplotlib.ticker", "plot", package="matplotlib")
    fig, ax = plt.subplots(figsize=(10, 5.5))
    try:
        for row in rows:
            curves = _curves(row)
            mean, low, high = _band(curves)
            epochs = list(range(1, len(mean) + 1))
            (line,) = ax.plot(epochs, mean, marker="o" if len(mean) < 30 else None,
                              markersize=3, label=_label(row))
            if len(curves) > 1:
                ax.fill_between(epochs, low, high, color=line.get_color(), alpha=0.2)
            for curve in curves:  # past the common epochs: the seeds that went on
                if len(curve) > len(mean):
                    ax.plot(range(len(mean), len(curve) + 1), curve[len(mean) - 1:],
                            linestyle="--", linewidth=0.8, color=line.get_color())
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy")
        ax.set_title("test accuracy per epoch (seed groups: mean, band from min to max)")
        ax.grid(alpha=0.3)
        # Outside the axes: curves that all end near the top would hide under it.
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        with atomic_write(path, "wb") as f:  # never a half-written PNG
            fig.savefig(f, format="png", dpi=110)
    except OSError as exc:
        raise UserError(f"--plot: cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
