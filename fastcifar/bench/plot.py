"""The benchmark plot: images/s per configuration of this run, and the history over time.

matplotlib is imported here, on use, with the Agg backend (no display needed); without
it the caller gets a MissingPlotLibrary with a one-line install hint.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from fastcifar.bench.report import describe
from fastcifar.errors import UserError

SUITE_COLOURS = {"pipeline": "tab:blue", "step": "tab:orange", "e2e": "tab:green"}
MAX_SERIES = 12


class MissingPlotLibrary(UserError):
    def __init__(self):
        super().__init__("plot skipped: matplotlib is not installed "
                         "(pip install 'fastcifar[plot]')")


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise MissingPlotLibrary() from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def series_key(row: dict) -> tuple:
    return (row.get("suite"), row.get("config"), row.get("model"), row.get("backend"),
            row.get("device_name"), row.get("dtype"), row.get("batch_size"))


def _parse_date(text: str):
    """A naive UTC datetime (history lines may or may not carry an offset), or None."""
    for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"):
        try:
            parsed = datetime.strptime(text, fmt)
        except (TypeError, ValueError):
            continue
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
        return parsed
    return None


def draw(path, report: dict, history: list[dict] | None = None) -> None:
    """Write a PNG: bars of this run's images/s (log scale, ratio to the baseline on each
    bar), and below them images/s over time for the history's series of this machine."""
    plt = _pyplot()
    rows = report["results"]
    history = history or []
    fig, (bars, timeline) = plt.subplots(
        2, 1, figsize=(11, 2.5 + 0.32 * max(len(rows), 1) + 3.5),
        gridspec_kw={"height_ratios": [max(len(rows), 1) * 0.32 + 1, 3.5]})
    try:
        _draw_bars(bars, rows, report.get("env", {}))
        _draw_history(timeline, history, report.get("env", {}))
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


def _draw_bars(ax, rows: list[dict], env: dict) -> None:
    if not rows:
        ax.text(0.5, 0.5, "no results", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    labels = [describe(r) for r in rows]
    values = [r["images_per_sec"] for r in rows]
    colours = [SUITE_COLOURS.get(r["suite"], "tab:gray") for r in rows]
    positions = range(len(rows))
    ax.barh(list(positions), values, color=colours)
    ax.set_yticks(list(positions), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("images/s (log scale)")
    for y, row in zip(positions, rows):
        text = f" {row['images_per_sec']:,.0f}"
        if row.get("ratio") is not None:
            text += f"  ({row['ratio']:.2f}x {row.get('baseline')})"
        ax.text(row["images_per_sec"], y, text, va="center", fontsize=7)
    ax.set_title(f"fastcifar bench: {env.get('device_name', '?')}, {env.get('date', '')[:10]}, "
                 f"commit {str(env.get('commit', '?'))[:8]}", fontsize=10)
    ax.margins(x=0.5)


def _draw_history(ax, history: list[dict], env: dict) -> None:
    machine = env.get("device_name")
    entries = [h for h in history if h.get("device_name") == machine and _parse_date(h.get("date"))]
    series: dict[tuple, list] = {}
    for h in entries:
        series.setdefault(series_key(h), []).append((_parse_date(h["date"]), h["images_per_sec"]))
    if not series:
        ax.text(0.5, 0.5, "no history for this device yet (fastcifar bench --record)",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    # The most recently measured series first; more than MAX_SERIES lines are unreadable.
    ordered = sorted(series.items(), key=lambda kv: max(d for d, _ in kv[1]), reverse=True)
    for key, points in ordered[:MAX_SERIES]:
        points.sort()
        label = " ".join(str(k) for k in key[:4] if k)
        ax.plot([d for d, _ in points], [v for _, v in points], marker="o", label=label)
    dates = [d for _, points in ordered[:MAX_SERIES] for d, _ in points]
    if max(dates) - min(dates) < timedelta(hours=1):  # one run: a day around it, not years
        ax.set_xlim(min(dates) - timedelta(hours=12), max(dates) + timedelta(hours=12))
    ax.set_yscale("log")
    ax.set_ylabel("images/s")
    ax.set_title(f"history on {machine} ({len(entries)} records)", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    ax.tick_params(axis="x", labelsize=7, rotation=20)
