"""What eval and predict show: plain-text tables for the terminal, JSON files."""
from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

from fastcifar.atomic import atomic_write, check_writable
from fastcifar.errors import UserError
from fastcifar.use.testsets import SEVERITIES

CONFUSION_MAX_CLASSES = 10  # larger matrices only go to --json and --plot


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _setting(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def format_eval(report: dict) -> str:
    metrics = report["metrics"]
    test_set = report["test_set"]
    where = (f"{report['dataset']} test split ({test_set['backend']} loader)"
             if test_set["kind"] == "prepared" else f"{test_set['kind']} {test_set['path']}")
    lines = [
        f"{report['model']} ({report['run']}, {report['checkpoint']}, "
        f"{'EMA' if report['weights'] == 'ema' else 'model'} weights) on {where}: "
        f"{test_set['num_images']} images, TTA {report['tta']}, "
        f"{report['device']} {report['dtype']}",
        f"accuracy {_percent(metrics['accuracy'])}  loss {metrics['loss']:.4f}  "
        f"ECE {metrics['ece']:.4f} (15 bins)",
    ]
    recorded = report.get("recorded")
    if recorded and recorded["test_acc"] is not None:
        differences = ", ".join(f"{k} {_setting(v)}" for k, v in recorded["run_settings"].items())
        same = (f"other settings (the run's: {differences})" if differences
                else "the same TTA, dtype, loader and device")
        lines.append(f"the run recorded test_acc {_percent(recorded['test_acc'])} after epoch "
                     f"{recorded['epoch']}, with {same}")
    elif recorded and report.get("checkpoint_batch"):
        lines.append("the run recorded no test accuracy for these weights (saved mid-epoch)")
    if "corruptions" in report:
        lines += _corruption_table(report)
    lines += _per_class_table(metrics)
    if len(metrics["per_class"]) <= CONFUSION_MAX_CLASSES:
        lines += _confusion_table(metrics)
    return "\n".join(lines)


def _corruption_table(report: dict) -> list[str]:
    table = report["corruptions"]
    width = max(len("corruption"), *(len(name) for name in table))
    header = "".join(f"{f's{s}':>9}" for s in range(1, SEVERITIES + 1))
    lines = ["", f"{'corruption':<{width}}{header}{'mean':>9}"]
    for name, accuracies in table.items():
        cells = "".join(f"{_percent(a):>9}" for a in accuracies)
        lines.append(f"{name:<{width}}{cells}{_percent(sum(accuracies) / len(accuracies)):>9}")
    lines.append(f"mean corruption accuracy {_percent(report['mean_corruption_accuracy'])} "
                 f"({len(table)} corruptions x {SEVERITIES} severities)")
    return lines


def _per_class_table(metrics: dict) -> list[str]:
    rows = metrics["per_class"]
    width = max(len("class"), *(len(r["class"]) for r in rows))
    lines = ["", f"{'class':<{width}}  {'images':>7}  {'accuracy':>8}"]
    lines += [f"{r['class']:<{width}}  {r['count']:>7}  {_percent(r['accuracy']):>8}"
              for r in rows]
    return lines


def _confusion_table(metrics: dict) -> list[str]:
    names = [r["class"] for r in metrics["per_class"]]
    matrix = metrics["confusion_matrix"]
    cell = max(6, *(len(str(v)) + 1 for row in matrix for v in row))
    width = max(len(n) for n in names)
    lines = ["", "confusion matrix (rows: true class, columns: predicted, in class order)"]
    lines.append(" " * width + "".join(f"{i:>{cell}}" for i in range(len(names))))
    lines += [f"{name:<{width}}" + "".join(f"{v:>{cell}}" for v in row)
              for name, row in zip(names, matrix)]
    return lines


def format_predictions(predictions: list[dict]) -> str:
    if not predictions:
        return ""
    top_k = len(predictions[0]["top"])
    width = max(len("file"), *(len(p["file"]) for p in predictions))
    cells = [[f"{t['class']} {_percent(t['probability'])}" for t in p["top"]]
             for p in predictions]
    cell = max(len("top-1"), *(len(c) for row in cells for c in row)) + 2
    lines = [f"{'file':<{width}}" + "".join(f"  {f'top-{i + 1}':<{cell}}"
                                           for i in range(top_k)).rstrip()]
    lines += [f"{p['file']:<{width}}" + "".join(f"  {c:<{cell}}" for c in row).rstrip()
              for p, row in zip(predictions, cells)]
    return "\n".join(lines)


def check_output_path(path: str | None, flag: str) -> None:
    """Refuse, before any work, an output file whose folder does not exist ("-" is stdout)."""
    if path is None or path == "-":
        return
    target = Path(path)
    if target.is_dir():
        raise UserError(f"{flag} {path} is a folder; give a file name")
    if not target.parent.is_dir():
        raise UserError(f"{flag} {path}: the folder {target.parent} does not exist")
    try:
        check_writable(target)
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot write there ({exc.strerror or exc})") from None


@contextlib.contextmanager
def written(path):
    """An OSError while writing `path` (a full disk) becomes one UserError line."""
    try:
        yield
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_json(path: str, data: dict) -> None:
    """The report as JSON to a file (atomically) or, for "-", to stdout."""
    text = json.dumps(data, indent=2) + "\n"
    if path == "-":
        sys.stdout.write(text)
        return
    with written(path), atomic_write(path) as f:
        f.write(text)
