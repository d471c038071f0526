"""Reading and writing results: the table, the JSON report, benchmarks/history.jsonl.

Report JSON: {"env": {...}, "results": [row, ...], "skipped": [{suite, config, backend,
model, reason}, ...], "failed": [...]}. History: one JSON object per result row with the
env fields merged in (result keys win), appended, so `jq`/pandas read it line by line.
"""
from __future__ import annotations

import json
from pathlib import Path

from fastcifar.atomic import atomic_write

# env fields that identify a run in the history without making each line huge
HISTORY_ENV_FIELDS = (
    "date", "commit", "dirty", "device_name", "cpu_name", "cpu_count", "torch", "cuda",
    "driver", "python", "load_average", "measured_bandwidth_gbs", "measured_matmul_tflops",
    "datasheet_bf16_tflops", "datasheet_bandwidth_gbs", "quick", "command",
)


def format_rate(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def describe(row: dict) -> str:
    """What a row measured, as one short label: suite/config[/model][/backend]."""
    parts = [row["suite"], row["config"]]
    parts += [row[k] for k in ("model", "backend") if row.get(k)]
    return " ".join(parts)


def notes(row: dict) -> str:
    out = []
    if row.get("tflops") is not None:
        peak, datasheet = row.get("peak_fraction"), row.get("datasheet_fraction")
        tflops = row["tflops"]
        rate = f"{tflops:.3g} TFLOP/s" if tflops >= 1 else f"{1e3 * tflops:.3g} GFLOP/s"
        # The datasheet's dense peak is what targets are set against; the measured
        # matmul rate is what this GPU reaches in practice.
        of = ([f"{100 * datasheet:.1f}% of datasheet dense peak"] if datasheet else []) \
            + ([f"{100 * peak:.1f}% of measured matmul"] if peak else [])
        out.append(rate + (f" ({', '.join(of)})" if of else ""))
    if row.get("bytes_per_sec") is not None:
        fraction = row.get("bandwidth_fraction")
        out.append(f"{row['bytes_per_sec'] / 1e9:.3g} GB/s"
                   + (f" ({100 * fraction:.1f}% of copy)" if fraction else ""))
    if row.get("vs_torchvision") is not None and row.get("backend") != "torchvision":
        out.append(f"{row['vs_torchvision']:.2f}x torchvision e2e")
    if row.get("spread", 0) > 0.2:
        out.append(f"noisy: repeats spread {100 * row['spread']:.0f}%")
    if row.get("loss_finite") is False:
        out.append("loss not finite")
    return "; ".join(out)


COLUMNS = ("suite", "config", "model", "backend", "dtype", "batch", "images/s", "vs baseline",
           "notes")


def table_rows(report: dict) -> list[tuple[str, ...]]:
    rows = []
    for r in report["results"]:
        ratio = "-" if r.get("ratio") is None else f"{r['ratio']:.2f}x {r.get('baseline', '')}"
        rows.append((r["suite"], r["config"], r.get("model") or "-", r.get("backend") or "-",
                     r["dtype"], str(r["batch_size"]), format_rate(r["images_per_sec"]), ratio,
                     notes(r)))
    return rows


def format_table(report: dict, markdown: bool = False) -> str:
    rows = table_rows(report)
    if markdown:
        lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    else:
        widths = [max([len(c)] + [len(row[i]) for row in rows]) for i, c in enumerate(COLUMNS)]
        right = {"batch", "images/s"}

        def line(cells):
            return "  ".join(cell.rjust(w) if c in right else cell.ljust(w)
                             for c, cell, w in zip(COLUMNS, cells, widths)).rstrip()

        lines = [line(COLUMNS), line(["-" * w for w in widths])] + [line(r) for r in rows]
    notes_lines = []
    for kind in ("skipped", "failed"):
        for s in report.get(kind, []):
            what = " ".join(str(s[k]) for k in ("suite", "config", "model", "backend") if s.get(k))
            notes_lines.append(f"{'- ' if markdown else ''}{kind}: {what}: {s['reason']}")
    if markdown and notes_lines:
        lines.append("")
    return "\n".join(lines + notes_lines)


def format_env(env: dict) -> str:
    device = env.get("device_name", "?")
    if env.get("device") == "cuda":
        device += f" (CUDA {env.get('cuda', '?')}, driver {env.get('driver', '?')})"
    commit = env.get("commit", "unknown")[:12] + (" +local changes" if env.get("dirty") else "")
    load = env.get("load_average")
    return (f"{env.get('date')}  {device}; CPU {env.get('cpu_name', '?')} x{env.get('cpu_count')}; "
            f"torch {env.get('torch')}, python {env.get('python')}; commit {commit}"
            + (f"; load average {' '.join(map(str, load))}" if load else ""))


def write_json(path, report: dict) -> None:
    """Write atomically: a reader (or a killed run) leaves the old file or the new one."""
    path = Path(path)
    if path.parent != Path(""):
        path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        f.write(json.dumps(report, indent=2, default=str) + "\n")


def history_lines(report: dict) -> list[dict]:
    env = {k: report["env"][k] for k in HISTORY_ENV_FIELDS if k in report["env"]}
    return [{**env, **row} for row in report["results"]]


def append_history(path, report: dict) -> int:
    """Append one line per result; returns how many were written."""
    lines = history_lines(report)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        for line in lines:
            f.write(json.dumps(line, default=str, sort_keys=True) + "\n")
    return len(lines)


def read_history(path) -> list[dict]:
    """Every well-formed line of a history file (a torn last line is skipped)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return []
    entries = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and "images_per_sec" in entry:
            entries.append(entry)
    return entries


def merge_reports(reports: list[dict]) -> dict:
    """One report from several (e.g. the stages of benchmarks/gpu_suite.sh): every row,
    and the union of the envs where the earliest report wins (its date, its commit)."""
    merged = {"env": {}, "results": [], "skipped": [], "failed": []}
    for report in reversed(reports):
        merged["env"].update(report.get("env", {}))
    for report in reports:
        for key in ("results", "skipped", "failed"):
            merged[key].extend(report.get(key, []))
    return merged
